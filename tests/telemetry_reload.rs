//! `[access_log]` and `[tracing]` follow a reload (`SIGHUP`), without a restart: a new log path
//! and format take effect for the next request (the old file gets no more lines), `[tracing]`
//! added by a reload starts exporting, and a changed endpoint or ratio moves the spans to the
//! new collector and samples by the new ratio. Real OTLP/HTTP receivers decode the spans.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::*;

/// Lines of `path` once it has at least `n` (waits ≤ 5 s).
fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The gateway's config: `listen`, `metrics`, an access log at `log` in `format`, and
/// `[tracing]` to `tracing` (endpoint, ratio) if given.
fn config(
    listen: &str,
    metrics: &str,
    origin: &Origin,
    log: &str,
    format: &str,
    tracing: Option<(&str, f64)>,
) -> String {
    let tracing = tracing.map_or(String::new(), |(url, ratio)| {
        format!("[tracing]\notlp_endpoint = \"{url}\"\nsample_ratio = {ratio:.1}\n\n")
    });
    format!(
        "{}[metrics]\nlisten = \"{metrics}\"\n\n[access_log]\npath = \"{log}\"\n\
         format = \"{format}\"\n\n{tracing}{}[[routes]]\nname = \"r\"\npath_prefix = \"/\"\n\
         upstream = \"u\"\n\n{}",
        server_section("reload-obs"),
        listener_section("web", listen),
        upstream_section_for("u", &[origin.addr()]),
    )
}

/// Sends `SIGHUP` and waits (≤ 10 s) for the `n`-th successful reload.
async fn reload(gw: &Gateway, n: f64) {
    gw.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let done = metric_sum(
            &gw.metrics().await,
            "switchyard_config_reloads_total",
            &[("result", "success")],
        );
        if done >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "reload {n} not applied:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The trace id of the `traceparent` the origin last received.
fn last_trace(origin: &Origin) -> (String, bool) {
    let tp = origin
        .last_request()
        .and_then(|r| r.header("traceparent"))
        .unwrap_or_else(|| panic!("no traceparent upstream"));
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    (parts[1].to_string(), parts[3] == "01")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_and_tracing_follow_a_reload() {
    let origin = Origin::start("o");
    let (a, b) = (Collector::start().await, Collector::start().await);
    let (listen, metrics) = (free_addr(), free_addr());
    let gw = Gateway::start(&config(
        &listen,
        &metrics,
        &origin,
        "first.log",
        "json",
        None,
    ));
    let c = client();
    let first = gw.dir().join("first.log");
    let second = gw.dir().join("second.log");

    // Before: JSON to first.log, no spans.
    assert_eq!(get(&c, &gw.url("/one")).await.status, 200);
    let lines = wait_lines(&first, 1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with('{') && lines[0].contains("\"/one\""),
        "{}",
        lines[0]
    );

    // Reload 1: combined format to second.log, and [tracing] to collector a at ratio 1.0.
    gw.write_config(&config(
        &listen,
        &metrics,
        &origin,
        "second.log",
        "combined",
        Some((&a.url(), 1.0)),
    ));
    reload(&gw, 1.0).await;
    assert_eq!(get(&c, &gw.url("/two")).await.status, 200);
    let lines = wait_lines(&second, 1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("\"GET /two HTTP/1.1\" 200"),
        "not a combined line: {}",
        lines[0]
    );
    let (trace, sampled) = last_trace(&origin);
    assert!(sampled, "ratio 1.0 samples every new trace");
    let spans = a.wait_trace(&trace, 2);
    assert_eq!(
        spans.len(),
        2,
        "server and client span at collector a: {spans:#?}"
    );

    // Reload 2: collector b at ratio 0.0 (the log unchanged).
    gw.write_config(&config(
        &listen,
        &metrics,
        &origin,
        "second.log",
        "combined",
        Some((&b.url(), 0.0)),
    ));
    reload(&gw, 2.0).await;
    assert_eq!(get(&c, &gw.url("/three")).await.status, 200);
    let (unsampled, sampled) = last_trace(&origin);
    assert!(!sampled, "ratio 0.0 samples no new trace");
    // A caller's sampled trace is still exported: to b now.
    let caller = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = send(
        &c,
        "GET",
        &gw.url("/four"),
        None,
        &[("traceparent", &format!("00-{caller}-00f067aa0ba902b7-01"))],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(b.wait_trace(caller, 2).len(), 2, "spans at collector b");
    assert!(
        a.wait_trace(caller, 0).is_empty(),
        "collector a got spans after the reload"
    );
    assert!(b.wait_trace(&unsampled, 0).is_empty());
    assert!(a.wait_trace(&unsampled, 0).is_empty());

    // The old file got nothing after the first reload; the new one every later request.
    assert_eq!(wait_lines(&first, 1).len(), 1);
    let lines = wait_lines(&second, 3);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[2].contains("GET /four"), "{}", lines[2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_path_that_cannot_be_opened_rejects_the_reload() {
    let origin = Origin::start("o");
    let (listen, metrics) = (free_addr(), free_addr());
    let gw = Gateway::start(&config(&listen, &metrics, &origin, "a.log", "json", None));
    let c = client();
    // A directory: it exists (the config check passes) but cannot be opened for appending.
    std::fs::create_dir(gw.dir().join("logs.d")).unwrap();
    gw.write_config(&config(&listen, &metrics, &origin, "logs.d", "json", None));
    gw.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric_sum(
        &gw.metrics().await,
        "switchyard_config_reloads_total",
        &[("result", "failure")],
    ) < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "reload not rejected:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gw.log().contains("access_log.path"), "{}", gw.log());
    // The old log keeps working.
    assert_eq!(get(&c, &gw.url("/still")).await.status, 200);
    let lines = wait_lines(&gw.dir().join("a.log"), 1);
    assert!(lines.iter().any(|l| l.contains("\"/still\"")), "{lines:?}");
}
