//! The resilience keys: defaults, server overrides, and the rules that tie them together.

use super::*;

const BASE: &str = r#"
[[upstreams]]
name = "api"
"#;

#[test]
fn defaults_are_off() {
    let cfg = parse_str(&format!(
        "{BASE}groups = [{{ name = \"g\", servers = [{{ address = \"10.0.0.1\" }}] }}]\n"
    ))
    .unwrap();
    let up = &cfg.upstreams[0];
    assert_eq!(up.max_in_flight_per_server, 0);
    assert_eq!(up.queue_size, 0);
    assert_eq!(up.queue_timeout_ms, 1000);
    assert_eq!(up.groups[0].servers[0].max_in_flight, None);
}

#[test]
fn a_server_limit_replaces_the_upstream_one() {
    let cfg = parse_str(&format!(
        "{BASE}max_in_flight_per_server = 10\nqueue_size = 5\n\
         groups = [{{ name = \"g\", servers = [{{ address = \"10.0.0.1\" }}, \
         {{ address = \"10.0.0.2\", max_in_flight = 50 }}, {{ address = \"10.0.0.3\", max_in_flight = 0 }}] }}]\n"
    ))
    .unwrap();
    let up = &cfg.upstreams[0];
    let limits: Vec<u32> = up
        .servers()
        .map(|(_, s, _, _)| s.effective_max_in_flight(up.max_in_flight_per_server))
        .collect();
    assert_eq!(limits, [10, 50, 0]);
}

#[test]
fn a_queue_needs_a_limit_and_a_timeout() {
    let text = format!(
        "{BASE}queue_size = 5\nqueue_timeout_ms = 0\n\
         groups = [{{ name = \"g\", servers = [{{ address = \"10.0.0.1\" }}] }}]\n"
    );
    let errs = errors(&text);
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert!(paths.contains(&"upstreams[0].queue_size"), "{paths:?}");
    assert!(
        paths.contains(&"upstreams[0].queue_timeout_ms"),
        "{paths:?}"
    );
    assert_error(
        &text,
        "upstreams[0].queue_timeout_ms",
        "queue_timeout_ms = 0",
    );
}

#[test]
fn negative_limits_are_refused() {
    let errs = errors(&format!(
        "{BASE}max_in_flight_per_server = -1\n\
         groups = [{{ name = \"g\", servers = [{{ address = \"10.0.0.1\" }}] }}]\n"
    ));
    assert!(
        errs.iter()
            .any(|e| e.path.contains("max_in_flight_per_server")),
        "{errs:?}"
    );
}

#[test]
fn retry_keys_defaults_and_rules() {
    let ok = parse_str(&format!(
        "[[routes]]\nname = \"r\"\nupstream = \"api\"\n{BASE}\
         groups = [{{ name = \"g\", servers = [{{ address = \"10.0.0.1\" }}] }}]\n"
    ))
    .unwrap();
    let (r, u) = (&ok.routes[0], &ok.upstreams[0]);
    assert!(r.retry_on_statuses.is_empty());
    assert_eq!(r.deadline_ms, 0);
    assert_eq!(
        (
            u.retry_budget_percent,
            u.retry_budget_min,
            u.retry_backoff_ms
        ),
        (20, 3, 0)
    );

    let text = format!(
        "[[routes]]\nname = \"r\"\nupstream = \"api\"\nretry_on_statuses = [503, 302]\n\
         {BASE}retry_budget_percent = 101\n\
         groups = [{{ name = \"g\", servers = [{{ address = \"10.0.0.1\" }}] }}]\n"
    );
    let errs = errors(&text);
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert!(
        paths.contains(&"routes[0].retry_on_statuses[1]"),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"upstreams[0].retry_budget_percent"),
        "{paths:?}"
    );
}

#[test]
fn rate_limit_table() {
    let route = |table: &str| {
        format!(
            "[[routes]]\nname = \"r\"\nupstream = \"api\"\n  [routes.rate_limit]\n{table}\n\
             {BASE}groups = [{{ name = \"g\", servers = [{{ address = \"10.0.0.1\" }}] }}]\n"
        )
    };
    let cfg = parse_str(&route("  requests_per_s = 2.5")).unwrap();
    let rl = cfg.routes[0].rate_limit.as_ref().unwrap();
    assert_eq!(rl.key, RateLimitKey::SourceIp);
    assert_eq!(
        rl.effective_burst(),
        3,
        "default burst: the rate rounded up"
    );
    let cfg = parse_str(&route(
        "  requests_per_s = 100\n  burst = 10\n  key = \"cookie:session\"",
    ))
    .unwrap();
    let rl = cfg.routes[0].rate_limit.as_ref().unwrap();
    assert_eq!(rl.key, RateLimitKey::Cookie("session".into()));
    assert_eq!(rl.effective_burst(), 10);

    let text = route("  requests_per_s = 0\n  burst = 0");
    let errs = errors(&text);
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert!(
        paths.contains(&"routes[0].rate_limit.requests_per_s"),
        "{paths:?}"
    );
    assert!(paths.contains(&"routes[0].rate_limit.burst"), "{paths:?}");
    let errs = errors(&route("  requests_per_s = 1\n  key = \"uri\""));
    assert!(
        errs[0].message.contains("unknown rate limit key"),
        "{errs:?}"
    );
}

#[test]
fn slow_start_default_and_bounds() {
    let servers = "groups = [{ name = \"g\", servers = [{ address = \"10.0.0.1\" }] }]\n";
    let cfg = parse_str(&format!("{BASE}{servers}")).unwrap();
    assert_eq!(cfg.upstreams[0].slow_start_ms, 0);
    let cfg = parse_str(&format!("{BASE}slow_start_ms = 3600000\n{servers}")).unwrap();
    assert_eq!(cfg.upstreams[0].slow_start_ms, 3_600_000);

    let text = format!("{BASE}slow_start_ms = 3600001\n{servers}");
    assert_error(
        &text,
        "upstreams[0].slow_start_ms",
        "slow_start_ms = 3600001",
    );
    let errs = errors(&format!("{BASE}slow_start_ms = -5\n{servers}"));
    assert!(
        errs.iter().any(|e| e.path.contains("slow_start_ms")),
        "{errs:?}"
    );
}
