//! The process-wide tables: `[server]`, `[limits]`, `[variables]` and `[cascade]`.

use super::*;

#[test]
fn six_allowed_instances() {
    let text = r#"
[cascade]
key_env = "K"
allowed_instances = ["a", "b", "c", "d", "e", "f"]
"#;
    assert_error(text, "cascade.allowed_instances", "allowed_instances");
    let text = "[cascade]\nallowed_instances = [\"a\", \"\"]\n";
    assert_error(text, "cascade.allowed_instances[1]", "allowed_instances");
}

#[test]
fn server_and_limits_rules() {
    let text = "[server]\nthreads = 1\ninstance_id = \"a,b\"\n[limits]\nheader_timeout_ms = 0\n";
    assert_error(text, "server.instance_id", "instance_id");
    assert_error(text, "limits.header_timeout_ms", "header_timeout_ms");
    let text = "[limits]\nheader_timeout_ms = 5\nread_buffer_bytes = 2000000\n";
    let e = assert_error(text, "limits.read_buffer_bytes", "read_buffer_bytes");
    assert!(e.message.contains("1 MiB"), "{e}");
    let ok = parse_str("[limits]\nread_buffer_bytes = 0\n").unwrap();
    assert_eq!(ok.limits.read_buffer_bytes, Some(0));
}

#[test]
fn request_hygiene_limits() {
    let d = parse_str("").unwrap().limits;
    assert_eq!(d.body_timeout_ms, 10_000);
    assert_eq!(d.encoded_slashes, EncodedSlashes::Reject);
    let text = "[limits]\nheader_timeout_ms = 5\nbody_timeout_ms = 0\n";
    assert_error(text, "limits.body_timeout_ms", "body_timeout_ms");
    let text = "[limits]\nheader_timeout_ms = 5\nencoded_slashes = \"decode\"\n";
    let e = assert_error(text, "limits.encoded_slashes", "encoded_slashes");
    assert!(
        e.message.contains("keep") && e.message.contains("reject"),
        "{e}"
    );
    let ok = parse_str("[limits]\nencoded_slashes = \"keep\"\nbody_timeout_ms = 250\n").unwrap();
    assert_eq!(ok.limits.encoded_slashes, EncodedSlashes::Keep);
    assert_eq!(ok.limits.body_timeout_ms, 250);
}

#[test]
fn server_resolvers() {
    let cfg = parse_str("[server]\nresolvers = [\"127.0.0.1:5353\", \"::1\", \"[::1]:5300\"]\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let addrs: Vec<String> = cfg
        .server
        .resolver_addrs()
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(addrs, ["127.0.0.1:5353", "[::1]:53", "[::1]:5300"]);
    assert!(Config::default().server.resolvers.is_empty());
    let text = "[server]\nresolvers = [\n  \"127.0.0.1:5353\",\n  \"dns.example:53\",\n  \"10.0.0.1:0\",\n]\n";
    let e = assert_error(text, "server.resolvers[1]", "\"dns.example:53\"");
    assert!(e.message.contains("ip:port"), "{e}");
    assert_error(text, "server.resolvers[2]", "\"10.0.0.1:0\"");
    assert!(!errors(text).iter().any(|e| e.path == "server.resolvers[0]"));
}
