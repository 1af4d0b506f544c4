//! `[[listeners]]`: names, addresses, protocols, TLS, CIDRs and PROXY protocol.

use super::*;

#[test]
fn duplicate_listener_name() {
    let text = r#"
[[listeners]]
name = "web"
listen = "127.0.0.1:8080"

[[listeners]]
name = "web"   # again
listen = "127.0.0.1:8081"
"#;
    let e = assert_error(text, "listeners[1].name", "# again");
    assert!(
        e.message.contains("first defined at listeners[0].name"),
        "{e}"
    );
}

#[test]
fn bad_cidr() {
    let text = r#"
[[listeners]]
name = "web"
listen = "127.0.0.1:8080"
allow = ["10.0.0.0/8",
         "10.0.0.0/33"]
"#;
    assert_error(text, "listeners[0].allow[1]", "/33");
}

#[test]
fn https_listener_without_tls_points_at_its_table() {
    let text = r#"
[[listeners]]
name = "web"
listen = "127.0.0.1:8080"

[[listeners]]
name = "secure"
protocol = "https"
listen = "127.0.0.1:8443"
"#;
    let e = assert_error(text, "listeners[1].tls", "[[listeners]]\nname = \"secure\"");
    // The missing key is reported at the `[[listeners]]` header of its table.
    assert_eq!(e.line, Some(6));
    assert_eq!(e.column, Some(1));
}

#[test]
fn listener_rules() {
    let text = r#"
[metrics]
listen = "127.0.0.1:9100"

[[listeners]]
name = "web"
listen = "0.0.0.0:9100"
tls = { cert = "a", key = "b" }

[[listeners]]
name = "db"
protocol = "tcp"
listen = "127.0.0.1:5432"

[[listeners]]
name = "db2"
protocol = "tcp"
listen = "127.0.0.1:5433"
upstream = "api"
idle_timeout_ms = 0

[[routes]]
name = "r"
listeners = ["db2", "nope"]
upstream = "api"

[[upstreams]]
name = "api"
  [[upstreams.groups]]
  name = "blue"
  servers = [{ address = "10.0.0.1" }]
"#;
    let e = assert_error(text, "listeners[0].listen", "0.0.0.0:9100");
    assert!(e.message.contains("metrics.listen"), "{e}");
    assert_error(text, "listeners[0].tls", "tls =");
    // The missing key points at the table that should hold it.
    assert_error(
        text,
        "listeners[1].upstream",
        "[[listeners]]\nname = \"db\"\n",
    );
    assert_error(text, "listeners[2].idle_timeout_ms", "idle_timeout_ms");
    let e = assert_error(text, "routes[0].listeners[0]", "\"db2\", \"nope\"");
    assert!(e.message.contains("tcp"), "{e}");
    assert_error(text, "routes[0].listeners[1]", "\"db2\", \"nope\"");
}

#[test]
fn tcp_listeners_only_hash_on_the_client_address() {
    let text = r#"
[[listeners]]
name = "db"
protocol = "tcp"
listen = "127.0.0.1:5432"
upstream = "by_uri"

[[listeners]]
name = "db2"
protocol = "tcp"
listen = "127.0.0.1:5433"
upstream = "by_header"

[[listeners]]
name = "db3"
protocol = "tcp"
listen = "127.0.0.1:5434"
upstream = "by_ip"

[[upstreams]]
name = "by_uri"
algorithm = "uri_hash"
  [[upstreams.groups]]
  name = "g"
  servers = [{ address = "10.0.0.1", port = 5432 }]

[[upstreams]]
name = "by_header"
algorithm = "consistent_hash"
hash_on = "header:X-User"
  [[upstreams.groups]]
  name = "g"
  servers = [{ address = "10.0.0.1", port = 5432 }]

[[upstreams]]
name = "by_ip"
algorithm = "consistent_hash"
hash_on = "source_ip"
  [[upstreams.groups]]
  name = "g"
  servers = [{ address = "10.0.0.1", port = 5432 }]
"#;
    let e = assert_error(text, "listeners[0].upstream", "upstream = \"by_uri\"");
    assert!(e.message.contains("source_ip"), "{e}");
    assert_error(text, "listeners[1].upstream", "upstream = \"by_header\"");
    let errs = crate::parse_str(text).unwrap_err();
    assert!(
        !errs
            .errors
            .iter()
            .any(|e| e.path == "listeners[2].upstream"),
        "source_ip hashing is fine for tcp: {errs}"
    );
}

#[test]
fn accept_proxy_protocol_from_needs_accept_proxy_protocol() {
    let text = r#"
[[listeners]]
name = "web"
listen = "127.0.0.1:8080"
accept_proxy_protocol_from = ["10.0.0.0/8"]
"#;
    let e = assert_error(
        text,
        "listeners[0].accept_proxy_protocol_from",
        "accept_proxy_protocol_from",
    );
    assert!(e.message.contains("accept_proxy_protocol = true"), "{e}");
    let bad_cidr = r#"
[[listeners]]
name = "web"
listen = "127.0.0.1:8080"
accept_proxy_protocol = true
accept_proxy_protocol_from = ["10.0.0.0/33"]
"#;
    assert!(!errors(bad_cidr).is_empty());
}

#[test]
fn listener_tls_rules() {
    let text = r#"
[[listeners]]
name = "secure"
protocol = "https"
listen = "127.0.0.1:8443"
tls = { cert = "a.pem", key = "a.key",
        certificates = [ { cert = "b.pem", key = "" } ],
        client_auth = "required" }
"#;
    assert_error(
        text,
        "listeners[0].tls.certificates[0].key",
        "certificates = [",
    );
    let e = assert_error(text, "listeners[0].tls.client_auth", "client_auth =");
    assert!(e.message.contains("client_ca"), "{e}");
}

#[test]
fn listener_tls_enums_name_their_key() {
    let text = r#"
[[listeners]]
name = "secure"
protocol = "https"
listen = "127.0.0.1:8443"
tls = { cert = "a.pem", key = "a.key", min_version = "1.1" }
"#;
    let e = assert_error(text, "listeners[0].tls.min_version", "min_version");
    assert!(e.message.contains("1.3"), "{e}");
    let text = text.replace("min_version = \"1.1\"", "client_auth = \"maybe\"");
    assert_error(&text, "listeners[0].tls.client_auth", "client_auth");
}

#[test]
fn listener_tls_defaults() {
    let cfg = crate::parse_str(
        "[[listeners]]\nname = \"s\"\nprotocol = \"https\"\nlisten = \"127.0.0.1:8443\"\n\
         tls = { cert = \"a.pem\", key = \"a.key\", client_ca = \"ca.pem\" }\n",
    )
    .unwrap();
    let tls = cfg.listeners[0].tls.as_ref().unwrap();
    assert_eq!(tls.client_auth, crate::ClientAuth::Off);
    assert_eq!(tls.min_version, crate::TlsVersion::Tls12);
    assert!(tls.certificates.is_empty());
}

#[test]
fn load_file_resolves_and_checks_every_listener_tls_file() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["a.pem", "a.key", "b.pem"] {
        std::fs::write(dir.path().join(f), "x").unwrap();
    }
    let file = dir.path().join("gw.toml");
    std::fs::write(
        &file,
        "[[listeners]]\nname = \"s\"\nprotocol = \"https\"\nlisten = \"127.0.0.1:8443\"\n\
         tls = { cert = \"a.pem\", key = \"a.key\",\n\
         certificates = [ { cert = \"b.pem\", key = \"missing.key\" } ],\n\
         client_ca = \"ca.pem\", client_auth = \"optional\" }\n",
    )
    .unwrap();
    let errs = crate::load_file(&file).unwrap_err().errors;
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "listeners[0].tls.certificates[0].key",
            "listeners[0].tls.client_ca"
        ],
        "{errs:?}"
    );
    assert_eq!(errs[0].line, Some(6), "{}", errs[0]);
    assert!(errs[0].message.contains("missing.key"), "{}", errs[0]);
}
