//! Rules of `[cluster]`.

use super::Validator;
use crate::model::Config;

impl Validator {
    pub(super) fn cluster(&mut self, cfg: &Config) {
        let Some(c) = &cfg.cluster else { return };
        if c.etcd_endpoints.is_empty() {
            self.err(
                "cluster.etcd_endpoints",
                "must name at least one etcd endpoint",
            );
        }
        let mut tls = false;
        for (i, e) in c.etcd_endpoints.iter().enumerate() {
            let path = format!("cluster.etcd_endpoints[{i}]");
            match e.split_once("://") {
                Some(("http", rest)) | Some(("https", rest)) if !rest.is_empty() => {
                    tls |= e.starts_with("https://");
                }
                _ => self.err(
                    path,
                    format!("`{e}`: use http://host:port or https://host:port"),
                ),
            }
        }
        if !c.prefix.starts_with('/') || c.prefix.len() < 2 || c.prefix.ends_with('/') {
            self.err(
                "cluster.prefix",
                "must start with `/`, name something and not end with `/` (e.g. /switchyard/prod)",
            );
        }
        if c.etcd_cert.is_some() != c.etcd_key.is_some() {
            self.err("cluster.etcd_cert", "etcd_cert and etcd_key go together");
        }
        if !tls && (c.etcd_ca.is_some() || c.etcd_cert.is_some()) {
            self.err(
                "cluster.etcd_ca",
                "TLS settings need https:// endpoints in etcd_endpoints",
            );
        }
        if c.etcd_user_env.is_some() != c.etcd_password_env.is_some() {
            self.err(
                "cluster.etcd_user_env",
                "etcd_user_env and etcd_password_env go together",
            );
        }
        for (key, v) in [
            ("cache_path", &c.cache_path),
            ("etcd_ca", &c.etcd_ca),
            ("etcd_cert", &c.etcd_cert),
            ("etcd_key", &c.etcd_key),
            ("etcd_user_env", &c.etcd_user_env),
            ("etcd_password_env", &c.etcd_password_env),
        ] {
            if let Some(v) = v {
                self.non_empty(format!("cluster.{key}"), v);
            }
        }
    }
}
