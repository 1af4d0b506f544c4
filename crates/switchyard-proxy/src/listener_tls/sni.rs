//! Choosing a listener's certificate by SNI: [`SniResolver`], a rustls [`ResolvesServerCert`]
//! over a fixed table of names (a reload builds a new one).
//!
//! Rules (those of NGINX's `server_name` and HAProxy's `crt-list`, as DESIGN fixes them): names
//! come from each certificate's SAN DNS entries; matching is case-insensitive and ignores a
//! trailing dot; an exact name beats a wildcard; a wildcard `*.example.com` covers exactly one
//! label (`a.example.com`, not `example.com` nor `a.b.example.com`); when two certificates list
//! the same name the first listed wins (the default `cert` counts as the first); no SNI or an
//! unknown name gets the default certificate.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// A fixed SNI table: names to certificates, and the default.
#[derive(Debug)]
pub struct SniResolver {
    /// Certificates in configuration order; `[0]` is the default.
    certs: Vec<Arc<CertifiedKey>>,
    /// Exact names (lower-case) to an index into `certs`.
    exact: HashMap<Box<str>, usize>,
    /// Wildcards by the part after `*.` (lower-case) to an index into `certs`.
    wildcard: HashMap<Box<str>, usize>,
}

impl SniResolver {
    /// A table over `certs` (the default first), each with its names (lower-case; wildcards as
    /// `*.example.com`). Returns, for each certificate, the names it is chosen for (a name
    /// listed earlier belongs to the earlier certificate).
    pub fn new(certs: Vec<(Arc<CertifiedKey>, &[String])>) -> (SniResolver, Vec<Vec<String>>) {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut served = Vec::with_capacity(certs.len());
        let mut keys = Vec::with_capacity(certs.len());
        for (i, (key, names)) in certs.into_iter().enumerate() {
            let mut mine = Vec::new();
            for name in names {
                let (table, k) = match name.strip_prefix("*.") {
                    Some(parent) => (&mut wildcard, parent),
                    None => (&mut exact, name.as_str()),
                };
                if !table.contains_key(k) {
                    table.insert(Box::from(k), i);
                    mine.push(name.clone());
                }
            }
            served.push(mine);
            keys.push(key);
        }
        (
            SniResolver {
                certs: keys,
                exact,
                wildcard,
            },
            served,
        )
    }

    /// The index of the certificate served for SNI `name` (`None`: no SNI): the exact name, else
    /// the wildcard of its parent, else the default (`0`).
    pub fn pick(&self, name: Option<&str>) -> usize {
        let Some(name) = name else {
            return 0;
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            self.pick_lower(&name.to_ascii_lowercase())
        } else {
            self.pick_lower(name)
        }
    }

    fn pick_lower(&self, name: &str) -> usize {
        if let Some(&i) = self.exact.get(name) {
            return i;
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent).copied())
            .unwrap_or(0)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.certs.get(self.pick(hello.server_name())).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Arc<CertifiedKey> {
        let k = rcgen::KeyPair::generate().unwrap();
        let der = rustls::pki_types::PrivateKeyDer::Pkcs8(k.serialize_der().into());
        let signing = rustls::crypto::ring::sign::any_supported_type(&der).unwrap();
        Arc::new(CertifiedKey::new(Vec::new(), signing))
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn exact_beats_wildcard_which_covers_one_label() {
        let default = names(&["default.test"]);
        let wild = names(&["*.example.com"]);
        let api = names(&["api.example.com", "*.api.example.com"]);
        let (r, _) = SniResolver::new(vec![(key(), &default), (key(), &wild), (key(), &api)]);
        assert_eq!(r.pick(Some("api.example.com")), 2);
        assert_eq!(r.pick(Some("API.Example.COM.")), 2);
        assert_eq!(r.pick(Some("www.example.com")), 1);
        assert_eq!(r.pick(Some("v1.api.example.com")), 2);
        assert_eq!(r.pick(Some("a.b.example.com")), 0);
        assert_eq!(r.pick(Some("example.com")), 0);
        assert_eq!(r.pick(Some("default.test")), 0);
        assert_eq!(r.pick(Some("unknown.test")), 0);
        assert_eq!(r.pick(None), 0);
    }

    #[test]
    fn the_first_listed_wins_a_shared_name() {
        let a = names(&["shared.test", "a.test"]);
        let b = names(&["shared.test", "b.test", "*.w.test"]);
        let c = names(&["*.w.test"]);
        let (r, served) =
            SniResolver::new(vec![(key(), &[]), (key(), &a), (key(), &b), (key(), &c)]);
        assert_eq!(r.pick(Some("shared.test")), 1);
        assert_eq!(r.pick(Some("b.test")), 2);
        assert_eq!(r.pick(Some("x.w.test")), 2);
        assert_eq!(
            served,
            vec![
                Vec::<String>::new(),
                names(&["shared.test", "a.test"]),
                names(&["b.test", "*.w.test"]),
                Vec::new()
            ]
        );
    }
}
