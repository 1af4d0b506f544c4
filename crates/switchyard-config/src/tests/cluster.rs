//! `[cluster]` and the shared document: keys, defaults, rules, and merging with a local file.

use std::path::Path;

use super::*;

const LOCAL: &str = "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:8080\"\n\n\
                     [cluster]\netcd_endpoints = [\"http://127.0.0.1:2379\"]\nprefix = \"/sy/prod\"\n";

#[test]
fn cluster_keys_and_defaults() {
    let cfg = parse_str(LOCAL).unwrap();
    let c = cfg.cluster.unwrap();
    assert_eq!(c.etcd_endpoints, ["http://127.0.0.1:2379"]);
    assert_eq!(c.prefix, "/sy/prod");
    assert_eq!(c.cache_path, None);
    assert_eq!((c.etcd_ca, c.etcd_user_env), (None, None));
    assert!(parse_str("").unwrap().cluster.is_none());
}

#[test]
fn cluster_rules() {
    let t = LOCAL.replace("/sy/prod", "sy/");
    assert_error(&t, "cluster.prefix", "prefix = \"sy/\"");
    let t = LOCAL.replace("http://127.0.0.1:2379", "127.0.0.1:2379");
    assert_error(&t, "cluster.etcd_endpoints[0]", "etcd_endpoints");
    let t = LOCAL.replace("[\"http://127.0.0.1:2379\"]", "[]");
    assert_error(&t, "cluster.etcd_endpoints", "etcd_endpoints");
    let t = format!("{LOCAL}etcd_ca = \"ca.pem\"\n");
    assert_error(&t, "cluster.etcd_ca", "etcd_ca");
    let t = format!("{LOCAL}etcd_cert = \"c.pem\"\n");
    assert_error(&t, "cluster.etcd_cert", "etcd_cert");
    let t = format!("{LOCAL}etcd_user_env = \"U\"\n");
    assert_error(&t, "cluster.etcd_user_env", "etcd_user_env");
    let t = format!("{LOCAL}colour = 1\n");
    assert!(errors(&t)[0].message.contains("unknown field"));
    let tls = LOCAL.replace("http://", "https://")
        + "etcd_ca = \"ca.pem\"\netcd_cert = \"c.pem\"\netcd_key = \"k.pem\"\n\
           etcd_user_env = \"U\"\netcd_password_env = \"P\"\ncache_path = \"c.toml\"\n";
    assert!(parse_str(&tls).is_ok());
}

#[test]
fn the_document_replaces_shared_sections_and_notes_local_ones() {
    let local = parse_str(
        &(LOCAL.to_string()
            + "[[routes]]\nname = \"local\"\nupstream = \"u\"\n\
               [[upstreams]]\nname = \"u\"\n[[upstreams.groups]]\nname = \"g\"\n\
               servers = [{ address = \"127.0.0.1\", port = 1 }]\n"),
    )
    .unwrap();
    let doc = "[server]\nthreads = 9\n\n[variables]\nv = \"1\"\n";
    let m = merge_shared_document(&local, doc, Path::new(".")).unwrap();
    assert!(
        m.config.routes.is_empty(),
        "the local file's routes are replaced"
    );
    assert!(m.config.upstreams.is_empty());
    assert_eq!(m.config.variables["v"], "1");
    assert_eq!(m.config.server.threads, local.server.threads);
    assert_eq!(m.notes.len(), 1, "{:?}", m.notes);
    assert!(m.notes[0].contains("`server`"));
    // A syntax error is located within the document.
    let errs = merge_shared_document(&local, "[variables]\nv = \n", Path::new(".")).unwrap_err();
    assert_eq!(errs.errors[0].line, Some(2));
}

#[test]
fn shared_part_drops_local_sections() {
    let (doc, left) = shared_part(LOCAL).unwrap();
    assert_eq!(left, ["cluster", "listeners"]);
    assert!(doc.trim().is_empty(), "{doc}");
    let text = "# kept\n[variables]\na = \"b\"\n";
    assert_eq!(shared_part(text).unwrap(), (text.to_string(), vec![]));
}
