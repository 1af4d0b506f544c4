//! Rules of `[[upstreams]]`: the algorithm's keys, TLS, and the calls into the rules of its
//! sub-tables (sticky, groups, health).

use std::collections::HashMap;

use super::syntax::check_dns_name;
use super::Validator;
use crate::model::{Algorithm, Config, UpstreamConfig};

impl Validator {
    pub(super) fn upstreams(&mut self, cfg: &Config) {
        let mut names = HashMap::new();
        for (i, u) in cfg.upstreams.iter().enumerate() {
            let p = format!("upstreams[{i}]");
            self.name("upstream", format!("{p}.name"), &u.name, &mut names);
            self.upstream(cfg, &p, u);
        }
    }

    fn upstream(&mut self, cfg: &Config, p: &str, u: &UpstreamConfig) {
        if u.hash_on.is_some() && u.algorithm != Algorithm::ConsistentHash {
            self.err(
                format!("{p}.hash_on"),
                format!(
                    "`hash_on` is only used with algorithm = \"consistent_hash\" (this upstream uses \"{}\")",
                    u.algorithm.as_str()
                ),
            );
        }
        if u.hash_ring.is_some() && !u.algorithm.is_hashing() {
            self.err(
                format!("{p}.hash_ring"),
                format!(
                    "`hash_ring` is only used by the hashing algorithms (consistent_hash, \
                     source_ip_hash, uri_hash); this upstream uses \"{}\"",
                    u.algorithm.as_str()
                ),
            );
        }
        if let Some(tls) = &u.tls {
            match (&tls.client_cert, &tls.client_key) {
                (Some(_), None) => self.err(
                    format!("{p}.tls.client_key"),
                    "`client_cert` needs `client_key` (two-way TLS needs both)",
                ),
                (None, Some(_)) => self.err(
                    format!("{p}.tls.client_cert"),
                    "`client_key` needs `client_cert` (two-way TLS needs both)",
                ),
                _ => {}
            }
            for (key, val) in [
                ("ca", &tls.ca),
                ("client_cert", &tls.client_cert),
                ("client_key", &tls.client_key),
            ] {
                if let Some(v) = val {
                    self.non_empty(format!("{p}.tls.{key}"), v);
                }
            }
            if let Some(sni) = &tls.sni {
                if let Err(msg) = check_dns_name(sni) {
                    self.err(format!("{p}.tls.sni"), msg);
                }
            }
        }
        if u.cascade && cfg.cascade.is_none() {
            self.err(
                format!("{p}.cascade"),
                "`cascade = true` needs a [cascade] table (key_env holds the shared secret)",
            );
        }
        self.positive(format!("{p}.resolve_interval_ms"), u.resolve_interval_ms);
        self.positive(
            format!("{p}.max_concurrent_streams"),
            u64::from(u.max_concurrent_streams),
        );
        if let Some(sticky) = &u.sticky {
            self.sticky(&format!("{p}.sticky"), sticky);
        }
        self.groups(p, u);
        if let Some(a) = &u.health.active {
            self.active(&format!("{p}.health.active"), a, u);
        }
        if let Some(ps) = &u.health.passive {
            self.passive(&format!("{p}.health.passive"), ps);
        }
    }
}
