//! Health checks through the gateway: active checks taking a server out and back (log lines and
//! metrics), the start-up round (no request to a failing server, first request already 200), and
//! passive outlier detection (ejection after `unhealthy_threshold`, return after `ejection_ms`,
//! `max_ejection_percent`).
//!
//! The state machine is unit-tested in `crates/switchyard-health/tests/`; these tests use the real
//! binary. To fail only the health check of one server while it keeps answering `/`, each
//! server's checks go to a *probe* origin (`[upstreams.health.active] port = P`): the servers live
//! on different loopback addresses (127.0.0.1, 127.0.0.2, ...) and each address has its own probe
//! origin on the same port P.

mod support;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use support::*;

/// A server origin and the probe origin that answers its health checks.
struct Backend {
    origin: Origin,
    probe: Origin,
}

impl Backend {
    /// `upstream/group/host:port`, as the gateway names the server in logs.
    fn log_name(&self) -> String {
        format!("u/g/{}", self.origin.addr())
    }

    /// The `server` label of the gateway's metrics.
    fn label(&self) -> String {
        format!("g/{}", self.origin.addr())
    }
}

/// A port that is free on every address of `ips` (bound and released; a tiny race is accepted).
fn port_free_on(ips: &[Ipv4Addr]) -> u16 {
    for _ in 0..50 {
        let first = TcpListener::bind((ips[0], 0)).unwrap();
        let port = first.local_addr().unwrap().port();
        let rest: Vec<_> = ips[1..]
            .iter()
            .map(|ip| TcpListener::bind((*ip, port)))
            .collect();
        if rest.iter().all(|r| r.is_ok()) {
            return port;
        }
    }
    panic!("no port free on all of {ips:?}");
}

/// Starts `names.len()` backends: backend `i` serves on `127.0.0.(i+1)` (own port) and is probed
/// on `127.0.0.(i+1):<probe port>`; returns them and the probe port.
fn backends(names: &[&str]) -> (Vec<Backend>, u16) {
    let ips: Vec<Ipv4Addr> = (0..names.len())
        .map(|i| Ipv4Addr::new(127, 0, 0, i as u8 + 1))
        .collect();
    let probe_port = port_free_on(&ips);
    let list = names
        .iter()
        .zip(&ips)
        .map(|(name, ip)| Backend {
            origin: Origin::start_on(name, SocketAddr::from((*ip, 0))),
            probe: Origin::start_on(
                &format!("{name}-probe"),
                SocketAddr::from((*ip, probe_port)),
            ),
        })
        .collect();
    (list, probe_port)
}

fn server(o: &Origin) -> String {
    format!(
        "    [[upstreams.groups.servers]]\n    address = \"{}\"\n    port = {}\n",
        o.addr().ip(),
        o.port()
    )
}

/// Listener, `[metrics]`, route `/` → upstream `u` (wrr, group `g` with `servers`), route
/// extras (`route_extra`), then `health` (the `[upstreams.health.*]` tables).
fn config(prefix: &str, route_extra: &str, servers: &[&Origin], health: &str) -> String {
    let servers: String = servers.iter().map(|o| server(o)).collect();
    format!(
        "{}[metrics]\nlisten = \"{}\"\n\n{}[[routes]]\nname = \"r\"\npath_prefix = \"/\"\n\
         upstream = \"u\"\n{route_extra}\n\n[[upstreams]]\nname = \"u\"\nalgorithm = \"wrr\"\n\
         \x20 [[upstreams.groups]]\n  name = \"g\"\n{servers}\n{health}",
        server_section(prefix),
        free_addr(),
        listener_section("web", &free_addr()),
    )
}

/// The value of metric `name` for server `label` of upstream `u` (with extra labels), if exported.
fn server_metric(
    samples: &[Sample],
    name: &str,
    label: &str,
    extra: &[(&str, &str)],
) -> Option<f64> {
    let mut want = vec![("upstream", "u"), ("server", label)];
    want.extend_from_slice(extra);
    let found = metric_find(samples, name, &want);
    (!found.is_empty()).then(|| found.iter().map(|s| s.value).sum())
}

/// `n` sequential GETs; returns the answering origins (`-` for none) and statuses.
async fn burst(gw: &Gateway, tag: &str, n: usize) -> Vec<(u16, String)> {
    let c = client();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let r = get(&c, &gw.url(&format!("/{tag}/{i}"))).await;
        out.push((r.status, r.origin().unwrap_or_else(|| "-".into())));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_health_check_takes_a_server_out_and_back_in() {
    let (bs, probe_port) = backends(&["a", "b"]);
    let (a, b) = (&bs[0], &bs[1]);
    const INTERVAL: u64 = 200;
    const TIMEOUT: u64 = 200;
    const UNHEALTHY: u64 = 2;
    const HEALTHY: u64 = 2;
    let health = format!(
        "  [upstreams.health.active]\n  protocol = \"http\"\n  path = \"/health\"\n  method = \"GET\"\n\
         \x20 port = {probe_port}\n  interval_ms = {INTERVAL}\n  timeout_ms = {TIMEOUT}\n\
         \x20 healthy_threshold = {HEALTHY}\n  unhealthy_threshold = {UNHEALTHY}\n  status_codes = [200]\n"
    );
    let gw = Gateway::start(&config("hc-out", "", &[&a.origin, &b.origin], &health));

    let warm = burst(&gw, "warm", 20).await;
    assert!(warm.iter().all(|(s, _)| *s == 200), "{warm:?}");
    assert_eq!(a.origin.request_count(), 10);
    assert_eq!(b.origin.request_count(), 10);
    assert!(a
        .probe
        .requests()
        .iter()
        .all(|r| r.path() == "/health" && r.method == "GET"));

    // a's health check starts failing; `/` on a still answers 200.
    let t0 = Instant::now();
    a.probe.set_status(503);
    let out_line = format!("{} unhealthy", a.log_name());
    assert!(
        gw.wait_for_log(&out_line, Duration::from_secs(10)),
        "no `{out_line}` log line"
    );
    let took = t0.elapsed();
    let bound = Duration::from_millis(INTERVAL * UNHEALTHY + TIMEOUT + 2_000);
    assert!(took <= bound, "unhealthy after {took:?}, bound {bound:?}");
    let log = gw.log();
    let line = log.lines().find(|l| l.contains(&out_line)).unwrap();
    assert!(
        line.contains("503"),
        "the log line should give the last result: {line}"
    );

    a.origin.clear();
    let out = burst(&gw, "out", 20).await;
    assert!(out.iter().all(|(s, o)| *s == 200 && o == "b"), "{out:?}");
    assert_eq!(
        a.origin.request_count(),
        0,
        "an unhealthy server got traffic"
    );

    let m = gw.metrics().await;
    assert_eq!(
        server_metric(&m, "switchyard_backend_healthy", &a.label(), &[]),
        Some(0.0),
        "backend_healthy of a"
    );
    assert_eq!(
        server_metric(&m, "switchyard_backend_healthy", &b.label(), &[]),
        Some(1.0),
        "backend_healthy of b"
    );
    let fails = server_metric(
        &m,
        "switchyard_health_checks_total",
        &a.label(),
        &[("result", "fail")],
    );
    assert!(
        fails.is_some_and(|v| v >= UNHEALTHY as f64),
        "fail checks of a: {fails:?}"
    );
    let passes = server_metric(
        &m,
        "switchyard_health_checks_total",
        &b.label(),
        &[("result", "pass")],
    );
    assert!(
        passes.is_some_and(|v| v >= 2.0),
        "pass checks of b: {passes:?}"
    );

    // Healthy again: traffic returns after the healthy threshold.
    let t1 = Instant::now();
    a.probe.set_status(200);
    let in_line = format!("{} healthy: {HEALTHY} consecutive passes", a.log_name());
    assert!(
        gw.wait_for_log(&in_line, Duration::from_secs(10)),
        "no `{in_line}` log line"
    );
    let took = t1.elapsed();
    let bound = Duration::from_millis(INTERVAL * (HEALTHY + 1) + TIMEOUT + 2_000);
    assert!(took <= bound, "healthy after {took:?}, bound {bound:?}");
    let back = burst(&gw, "back", 20).await;
    assert!(back.iter().all(|(s, _)| *s == 200), "{back:?}");
    assert_eq!(a.origin.request_count(), 10, "a back in rotation: {back:?}");
    let m = gw.metrics().await;
    assert_eq!(
        server_metric(&m, "switchyard_backend_healthy", &a.label(), &[]),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_start_up_only_servers_that_passed_their_first_check_get_traffic() {
    // live: healthy; sick: answers `/` but its check fails; dead: nothing listens at all.
    let (bs, probe_port) = backends(&["live", "sick"]);
    let (live, sick) = (&bs[0], &bs[1]);
    sick.probe.set_status(503);
    let dead_ip = Ipv4Addr::new(127, 0, 0, 3);
    let dead_port = port_free_on(&[dead_ip]);
    let health = format!(
        "  [upstreams.health.active]\n  protocol = \"http\"\n  path = \"/healthz\"\n  method = \"HEAD\"\n\
         \x20 port = {probe_port}\n  host = \"health.internal\"\n  interval_ms = 1000\n  timeout_ms = 500\n\
         \x20 healthy_threshold = 3\n  unhealthy_threshold = 3\n  status_codes = [\"200-299\"]\n"
    );
    let mut cfg = config(
        "hc-start",
        "retries = 0",
        &[&live.origin, &sick.origin],
        &health,
    );
    // The dead server joins the group (the health tables come after the servers).
    cfg = cfg.replacen(
        "\n  [upstreams.health.active]",
        &format!(
            "    [[upstreams.groups.servers]]\n    address = \"{dead_ip}\"\n    port = {dead_port}\n\n  [upstreams.health.active]"
        ),
        1,
    );
    let gw = Gateway::start(&cfg);
    // No waiting: the very first request must already be routed to the live server only
    // (retries = 0, so a pick of the dead server would show as a 502).
    let c = client();
    for i in 0..30 {
        let r = get(&c, &gw.url(&format!("/start/{i}"))).await;
        assert_eq!(r.status, 200, "request {i}: {:?}", r.body);
        assert_eq!(r.origin().as_deref(), Some("live"), "request {i}");
    }
    assert_eq!(
        sick.origin.request_count(),
        0,
        "a server that failed its first check got traffic"
    );
    assert_eq!(live.origin.request_count(), 30);

    // The checks used the configured method, path and Host header.
    let probe = live.probe.requests();
    assert!(!probe.is_empty());
    for r in &probe {
        assert_eq!(r.method, "HEAD");
        assert_eq!(r.path(), "/healthz");
        assert_eq!(r.header("host").as_deref(), Some("health.internal"));
    }
    let log = gw.log();
    assert!(
        log.contains(&format!("{} healthy: first check passed", live.log_name())),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "{} unhealthy: first check failed",
            sick.log_name()
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "u/g/{dead_ip}:{dead_port} unhealthy: first check failed"
        )),
        "{log}"
    );
    let m = gw.metrics().await;
    assert_eq!(
        server_metric(&m, "switchyard_backend_healthy", &live.label(), &[]),
        Some(1.0)
    );
    assert_eq!(
        server_metric(&m, "switchyard_backend_healthy", &sick.label(), &[]),
        Some(0.0)
    );
    assert_eq!(
        server_metric(
            &m,
            "switchyard_backend_healthy",
            &format!("g/{dead_ip}:{dead_port}"),
            &[]
        ),
        Some(0.0)
    );
}

const PASSIVE: &str = "  [upstreams.health.passive]\n  unhealthy_statuses = [500, 502, 503, 504]\n\
                       \x20 unhealthy_threshold = 3\n  ejection_ms = 1500\n  max_ejection_percent = 50\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_checks_eject_a_failing_server_and_let_it_return() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let gw = Gateway::start(&config("hc-passive", "", &[&a, &b], PASSIVE));
    let warm = burst(&gw, "warm", 10).await;
    assert!(warm.iter().all(|(s, _)| *s == 200), "{warm:?}");

    a.clear();
    a.set_status(500);
    // wrr alternates: a sees requests 1, 3, 5 — three consecutive 500s eject it.
    let seq = burst(&gw, "fail", 40).await;
    let ejected_at = Instant::now();
    assert_eq!(
        a.request_count(),
        3,
        "a should get exactly unhealthy_threshold (3) requests before its ejection: {seq:?}"
    );
    assert!(
        seq[6..].iter().all(|(s, o)| *s == 200 && o == "b"),
        "{seq:?}"
    );
    assert!(
        gw.wait_for_log(&format!("u/g/{} ejected", a.addr()), Duration::from_secs(2)),
        "no ejection log line"
    );
    let m = gw.metrics().await;
    let ej = server_metric(
        &m,
        "switchyard_backend_ejections_total",
        &format!("g/{}", a.addr()),
        &[],
    );
    assert_eq!(ej, Some(1.0), "ejections of a");
    assert_eq!(
        server_metric(
            &m,
            "switchyard_backend_healthy",
            &format!("g/{}", a.addr()),
            &[]
        ),
        Some(0.0)
    );

    // a is fixed but stays out until ejection_ms (1500) has passed ...
    a.set_status(200);
    let c = client();
    let mut first_back = None;
    for i in 0..400 {
        let r = get(&c, &gw.url(&format!("/wait/{i}"))).await;
        assert_eq!(r.status, 200);
        if r.origin().as_deref() == Some("a") {
            first_back = Some(ejected_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let back = first_back.expect("a never returned after ejection_ms");
    assert!(
        back >= Duration::from_millis(1_000),
        "a returned after only {back:?}"
    );
    assert!(
        back <= Duration::from_millis(1_500 + 3_000),
        "a returned after {back:?}"
    );
    assert!(gw.log().contains(&format!(
        "u/g/{} returned after ejection: ejection_ms (1500 ms) elapsed",
        a.addr()
    )));
    let seq = burst(&gw, "after", 10).await;
    assert_eq!(seq.iter().filter(|(_, o)| o == "a").count(), 5, "{seq:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_ejection_percent_keeps_half_of_the_upstream_in_rotation() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    a.set_status(500);
    b.set_status(500);
    let gw = Gateway::start(&config("hc-maxej", "", &[&a, &b], PASSIVE));
    let seq = burst(&gw, "both-fail", 40).await;
    assert!(seq.iter().all(|(s, _)| *s == 500), "{seq:?}");
    let m = gw.metrics().await;
    let ej = metric_sum(
        &m,
        "switchyard_backend_ejections_total",
        &[("upstream", "u")],
    );
    assert_eq!(ej, 1.0, "50% of two servers: exactly one ejection");
    // The other one still receives everything after the first ejection.
    let (na, nb) = (a.request_count(), b.request_count());
    assert_eq!(na + nb, 40);
    assert!(
        na.min(nb) == 3 && na.max(nb) == 37,
        "a {na}, b {nb}: {seq:?}"
    );
}
