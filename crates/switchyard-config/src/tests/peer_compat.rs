//! Keys that keep the behaviour of the peers a fleet migrates from (issue #14, item 7):
//! `routes[].retry_non_idempotent`, the `[upstreams.sticky]` cookie attributes and
//! `upstreams[].hash_ring`.

use crate::*;

/// One route `r` to upstream `api` (with `upstream_extra` lines and `[upstreams.sticky]` lines
/// `sticky`, when given), the route with `route_extra` lines.
fn config(route_extra: &str, upstream_extra: &str, sticky: Option<&str>) -> String {
    let sticky = sticky
        .map(|s| format!("  [upstreams.sticky]\n{s}\n"))
        .unwrap_or_default();
    format!(
        "[[routes]]\nname = \"r\"\nupstream = \"api\"\n{route_extra}\n\n\
         [[upstreams]]\nname = \"api\"\n{upstream_extra}\n{sticky}\
         \x20 [[upstreams.groups]]\n  name = \"g\"\n  servers = [{{ address = \"10.0.0.1\" }}, {{ address = \"10.0.0.2\" }}]\n"
    )
}

/// The errors of `text`, which must be rejected.
fn errors(text: &str) -> Vec<ConfigError> {
    match parse_str(text) {
        Ok(_) => panic!("config should be rejected:\n{text}"),
        Err(e) => e.errors,
    }
}

/// Asserts one error at `path`, on the line of `needle`, whose message contains `message`.
#[track_caller]
fn assert_error_at(text: &str, path: &str, needle: &str, message: &str) {
    let errs = errors(text);
    let line = text[..text.find(needle).unwrap_or(0)].matches('\n').count() + 1;
    let Some(e) = errs.iter().find(|e| e.path == path) else {
        panic!(
            "no error at {path}; got:\n{}",
            ConfigErrors { errors: errs }
        );
    };
    assert_eq!(e.line, Some(line), "line of {path}: {e}");
    assert!(e.message.contains(message), "{e}");
}

#[test]
fn retry_non_idempotent_parses_and_defaults_to_false() {
    let cfg = parse_str(&config("", "", None)).unwrap();
    assert!(!cfg.routes[0].retry_non_idempotent);
    let cfg = parse_str(&config("retry_non_idempotent = true", "", None)).unwrap();
    assert!(cfg.routes[0].retry_non_idempotent);
    assert!(summary(&cfg).contains("non-idempotent retried"));
    let text = config("retry_non_idempotent = \"yes\"", "", None);
    assert_error_at(
        &text,
        "routes[0].retry_non_idempotent",
        "retry_non_idempotent",
        "",
    );
}

#[test]
fn sticky_attributes_default_to_the_historical_cookie() {
    let cfg = parse_str(&config("", "", Some(""))).unwrap();
    let s = cfg.upstreams[0].sticky.as_ref().unwrap();
    assert_eq!(
        (
            s.path.as_str(),
            s.domain.as_str(),
            s.secure,
            s.http_only,
            s.same_site
        ),
        ("/", "", false, true, SameSite::Lax)
    );
    let text = config(
        "",
        "",
        Some(
            "  path = \"/shop\"\n  domain = \".example.com\"\n  secure = true\n  \
             http_only = false\n  same_site = \"\"",
        ),
    );
    let cfg = parse_str(&text).unwrap();
    let s = cfg.upstreams[0].sticky.as_ref().unwrap();
    assert_eq!(
        (
            s.path.as_str(),
            s.domain.as_str(),
            s.secure,
            s.http_only,
            s.same_site
        ),
        ("/shop", ".example.com", true, false, SameSite::Omit)
    );
    // Serialised back under the same names.
    let back = toml::to_string(&cfg).unwrap();
    assert!(back.contains("same_site = \"\""), "{back}");
}

#[test]
fn bad_sticky_attributes_name_their_key_and_line() {
    for (line, path, message) in [
        (
            "  same_site = \"sometimes\"",
            "same_site",
            "unknown same_site `sometimes`",
        ),
        ("  same_site = \"Lax\"", "same_site", "expected \"lax\""),
        ("  path = \"shop\"", "path", "must start with `/`"),
        ("  path = \"/a;b\"", "path", "without `;`"),
        ("  path = \"/caf\u{e9}\"", "path", "printable ASCII"),
        ("  domain = \"exa mple.com\"", "domain", "not a domain name"),
        ("  domain = \"example.com.\"", "domain", "not a domain name"),
        ("  http_only = \"no\"", "http_only", ""),
        ("  expires = 5", "expires", "unknown field"),
    ] {
        let text = config("", "", Some(line));
        assert_error_at(
            &text,
            &format!("upstreams[0].sticky.{path}"),
            line.trim(),
            message,
        );
    }
}

#[test]
fn hash_ring_is_accepted_on_hashing_algorithms_only() {
    for algorithm in ["consistent_hash", "source_ip_hash", "uri_hash"] {
        let text = config(
            "",
            &format!("algorithm = \"{algorithm}\"\nhash_ring = \"ketama\""),
            None,
        );
        let cfg = parse_str(&text).unwrap_or_else(|e| panic!("{algorithm}: {e}"));
        assert_eq!(cfg.upstreams[0].effective_hash_ring(), HashRing::Ketama);
        assert!(summary(&cfg).contains("ketama ring"));
    }
    let cfg = parse_str(&config("", "algorithm = \"consistent_hash\"", None)).unwrap();
    assert_eq!(cfg.upstreams[0].hash_ring, None);
    assert_eq!(cfg.upstreams[0].effective_hash_ring(), HashRing::Maglev);
    let text = config("", "algorithm = \"uri_hash\"\nhash_ring = \"maglev\"", None);
    assert_eq!(
        parse_str(&text).unwrap().upstreams[0].effective_hash_ring(),
        HashRing::Maglev
    );

    for algorithm in ["wrr", "least_conn", "ewma", "random"] {
        let text = config(
            "",
            &format!("algorithm = \"{algorithm}\"\nhash_ring = \"maglev\""),
            None,
        );
        assert_error_at(
            &text,
            "upstreams[0].hash_ring",
            "hash_ring",
            "only used by the hashing algorithms",
        );
    }
    let text = config(
        "",
        "algorithm = \"consistent_hash\"\nhash_ring = \"jump\"",
        None,
    );
    assert_error_at(&text, "upstreams[0].hash_ring", "hash_ring", "ketama");
}
