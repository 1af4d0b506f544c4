//! OpenTelemetry export over real sockets: a real OTLP/HTTP receiver (hyper, decoding
//! `ExportTraceServiceRequest` with the `opentelemetry-proto` types) gets one server span per
//! request and one client span per attempt, with the parent/child structure of a retried
//! request and the span ids the origins saw in `traceparent`; parent-based sampling; and an
//! unreachable collector costs no request and is counted.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use support::*;

/// `[tracing]` to `endpoint` with `ratio`; route `/` over `servers` (round robin).
fn config(endpoint: &str, ratio: f64, servers: &[SocketAddr]) -> String {
    format!(
        "{}[metrics]\nlisten = \"{}\"\n\n[tracing]\notlp_endpoint = \"{endpoint}\"\n\
         service_name = \"edge-gw\"\nsample_ratio = {ratio:.1}\n\n{}\
         [[routes]]\nname = \"r\"\npath = \"/items/{{id}}\"\nupstream = \"u\"\n\n{}",
        server_section("otel"),
        free_addr(),
        listener_section("web", &free_addr()),
        upstream_section_for("u", servers),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_of_a_retried_request_reach_a_real_otlp_receiver() {
    let collector = Collector::start().await;
    let broken = Origin::start("broken");
    broken.set_mode(OriginMode::Reset);
    let good = Origin::start("good");
    let gw = Gateway::start(&config(
        &collector.url(),
        1.0,
        &[broken.addr(), good.addr()],
    ));
    let c = client();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    // Round robin over [broken, good]: at least one of two requests is retried.
    for i in 0..2 {
        let r = send(
            &c,
            "GET",
            &gw.url(&format!("/items/{i}?q=1")),
            Some("shop.test:8080"),
            &[
                ("traceparent", &format!("00-{trace}-{parent}-01")),
                ("x-request-id", &format!("otel-{i}")),
            ],
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let retried = broken.requests()[0].uri.clone();
    let first_tp = broken.requests()[0].header("traceparent").unwrap();
    let second_tp = good
        .requests()
        .into_iter()
        .find(|r| r.uri == retried)
        .and_then(|r| r.header("traceparent"))
        .unwrap();
    let attempt_span = |tp: &str| tp.split('-').nth(2).unwrap().to_string();

    // 2 requests: 2 server spans, and 3 or 4 client spans.
    let spans = collector.wait_trace(trace, 5);
    let servers: Vec<&Span> = spans
        .iter()
        .map(|r| &r.span)
        .filter(|s| s.kind == SpanKind::Server as i32)
        .collect();
    assert_eq!(servers.len(), 2, "{spans:#?}");
    assert!(spans.iter().all(|r| r.service == "edge-gw"), "service.name");
    let server = servers
        .iter()
        .find(|s| {
            string_attr(&s.attributes, "url.path").as_deref()
                == Some(retried.split('?').next().unwrap())
        })
        .unwrap_or_else(|| panic!("no server span for {retried}: {servers:#?}"));
    assert_eq!(
        hex(&server.parent_span_id),
        parent,
        "the caller's span is the parent"
    );
    assert_eq!(server.name, "GET /items/{id}");
    let a = &server.attributes;
    assert_eq!(
        string_attr(a, "http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(string_attr(a, "http.route").as_deref(), Some("/items/{id}"));
    assert_eq!(
        string_attr(a, "server.address").as_deref(),
        Some("shop.test")
    );
    assert_eq!(string_attr(a, "url.query").as_deref(), Some("q=1"));
    assert_eq!(string_attr(a, "url.scheme").as_deref(), Some("http"));
    assert_eq!(int_attr(a, "http.response.status_code"), Some(200));
    assert_eq!(string_attr(a, "switchyard.route").as_deref(), Some("r"));
    assert!(string_attr(a, "switchyard.request_id").is_some_and(|id| id.starts_with("otel-")));
    assert!(server.end_time_unix_nano >= server.start_time_unix_nano);

    let mut clients: Vec<&Span> = spans
        .iter()
        .map(|r| &r.span)
        .filter(|s| s.kind == SpanKind::Client as i32 && s.parent_span_id == server.span_id)
        .collect();
    clients.sort_by_key(|s| int_attr(&s.attributes, "switchyard.retry"));
    assert_eq!(
        clients.len(),
        2,
        "two attempts under the retried request: {spans:#?}"
    );
    let (first, second) = (clients[0], clients[1]);
    assert_eq!(int_attr(&first.attributes, "switchyard.retry"), Some(0));
    assert_eq!(int_attr(&second.attributes, "switchyard.retry"), Some(1));
    assert_eq!(
        int_attr(&second.attributes, "http.request.resend_count"),
        Some(1)
    );
    assert_eq!(
        string_attr(&first.attributes, "switchyard.server"),
        Some(format!("g/127.0.0.1:{}", broken.port()))
    );
    assert_eq!(
        string_attr(&second.attributes, "switchyard.server"),
        Some(format!("g/127.0.0.1:{}", good.port()))
    );
    assert_eq!(
        string_attr(&second.attributes, "server.address").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        int_attr(&second.attributes, "server.port"),
        Some(good.port().into())
    );
    assert_eq!(
        int_attr(&second.attributes, "http.response.status_code"),
        Some(200)
    );
    assert!(
        string_attr(&first.attributes, "error.type").is_some(),
        "the failed attempt"
    );
    assert_eq!(
        int_attr(&first.attributes, "http.response.status_code"),
        None
    );
    // The span ids the origins received as parents are the client spans'.
    assert_eq!(hex(&first.span_id), attempt_span(&first_tp));
    assert_eq!(hex(&second.span_id), attempt_span(&second_tp));
    assert!(first.start_time_unix_nano <= second.start_time_unix_nano);
    assert!(server.start_time_unix_nano <= first.start_time_unix_nano);
    assert!(second.end_time_unix_nano <= server.end_time_unix_nano);

    let posts = collector.posts.lock().unwrap().clone();
    assert!(
        posts
            .iter()
            .all(|(p, t)| p == "/v1/traces" && t == "application/x-protobuf"),
        "{posts:?}"
    );
    assert!(
        posts.len() < 5,
        "spans are exported in batches, not one request each: {} posts",
        posts.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_follows_the_parent_and_new_traces_are_sampled_by_ratio() {
    let collector = Collector::start().await;
    let origin = Origin::start("o");
    let gw = Gateway::start(&config(&collector.url(), 1.0, &[origin.addr()]));
    let c = client();
    let unsampled = "11111111111111111111111111111111";
    let r = send(
        &c,
        "GET",
        &gw.url("/items/u"),
        None,
        &[(
            "traceparent",
            &format!("00-{unsampled}-2222222222222222-00"),
        )],
    )
    .await;
    assert_eq!(r.status, 200);
    // A new trace (ratio 1.0): sampled, flagged so upstream, and exported without a parent.
    let r = get(&c, &gw.url("/items/new")).await;
    assert_eq!(r.status, 200);
    let tp = origin
        .last_request()
        .unwrap()
        .header("traceparent")
        .unwrap();
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts[3], "01", "{tp}");
    let spans = collector.wait_trace(parts[1], 2);
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let server = spans
        .iter()
        .find(|r| r.span.kind == SpanKind::Server as i32)
        .unwrap();
    assert!(server.span.parent_span_id.is_empty() || server.span.parent_span_id == [0; 8]);
    // Spans are exported in order: the unsampled request's would have come first.
    assert!(
        collector.wait_trace(unsampled, 0).is_empty(),
        "a trace flagged not sampled is not exported"
    );

    // sample_ratio = 0: new traces are not sampled (and flagged so upstream).
    let gw0 = Gateway::start(&config(&collector.url(), 0.0, &[origin.addr()]));
    let r = get(&c, &gw0.url("/items/zero")).await;
    assert_eq!(r.status, 200);
    let tp = origin
        .last_request()
        .unwrap()
        .header("traceparent")
        .unwrap();
    assert!(tp.ends_with("-00"), "{tp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_costs_no_request_and_is_counted() {
    let origin = Origin::start("o");
    let closed = format!("http://127.0.0.1:{}/v1/traces", free_port());
    let gw = Gateway::start(&config(&closed, 1.0, &[origin.addr()]));
    let c = client();
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..200 {
        let t = Instant::now();
        let r = get(&c, &gw.url(&format!("/items/{i}"))).await;
        assert_eq!(r.status, 200);
        slowest = slowest.max(t.elapsed());
    }
    assert!(
        slowest < Duration::from_millis(500),
        "slowest request {slowest:?} with the collector down"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let failures = metric_sum(
            &gw.metrics().await,
            "switchyard_span_export_failures_total",
            &[],
        );
        if failures >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no export failure counted:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gw.log().contains("cannot export"), "{}", gw.log());
}

/// Waits (≤ 10 s) until the gateway has counted a failed export.
async fn wait_export_failure(gw: &Gateway) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric_sum(
        &gw.metrics().await,
        "switchyard_span_export_failures_total",
        &[],
    ) < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "no export failure counted:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_https_collector_trusted_through_ca_file() {
    let ca = TestCa::new("otlp-test-ca");
    let collector = Collector::start_tls(&ca.issue(&["127.0.0.1"])).await;
    let origin = Origin::start("o");
    let dir = tempfile::tempdir().unwrap();
    let ca_path = ca.write(dir.path(), "otlp-ca.pem");
    let plain = config(&collector.url(), 1.0, &[origin.addr()]);
    assert!(plain.contains("https://127.0.0.1:"), "{plain}");
    let trusted = plain.replace(
        "sample_ratio = 1.0\n",
        &format!("sample_ratio = 1.0\nca_file = \"{}\"\n", ca_path.display()),
    );
    let c = client();
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let traced = |gw: &Gateway| {
        let url = gw.url("/items/1");
        let c = c.clone();
        async move {
            let tp = format!("00-{trace}-b7ad6b7169203331-01");
            let r = send(&c, "GET", &url, None, &[("traceparent", tp.as_str())]).await;
            assert_eq!(r.status, 200);
        }
    };

    // Trusted through ca_file: both spans arrive over TLS.
    let gw = Gateway::start(&trusted);
    traced(&gw).await;
    let spans = collector.wait_trace(trace, 2);
    assert_eq!(spans.len(), 2, "{}", gw.log());
    assert_eq!(
        metric_sum(
            &gw.metrics().await,
            "switchyard_span_export_failures_total",
            &[]
        ),
        0.0
    );
    drop(gw);

    // Without it, the test CA is not trusted: the export fails, is counted and logged, and the
    // request is still served.
    let before = collector.all().len();
    let gw = Gateway::start(&plain);
    traced(&gw).await;
    wait_export_failure(&gw).await;
    assert!(gw.log().contains("cannot export"), "{}", gw.log());
    assert_eq!(
        collector.all().len(),
        before,
        "spans sent to an untrusted collector"
    );
}

/// `ca_file` is read again by every reload, even when the config is unchanged: a CA file
/// rotated in place (a new collector CA) is picked up by `SIGHUP`, like NGINX re-reads its
/// certificate files on reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_reads_a_rotated_ca_file_again() {
    let ca = TestCa::new("otlp-test-ca");
    let stale = TestCa::new("otlp-stale-ca");
    let collector = Collector::start_tls(&ca.issue(&["127.0.0.1"])).await;
    let origin = Origin::start("o");
    let dir = tempfile::tempdir().unwrap();
    // The file first holds a CA that did not issue the collector's certificate.
    let ca_path = stale.write(dir.path(), "otlp-ca.pem");
    let toml = config(&collector.url(), 1.0, &[origin.addr()]).replace(
        "sample_ratio = 1.0\n",
        &format!("sample_ratio = 1.0\nca_file = \"{}\"\n", ca_path.display()),
    );
    let gw = Gateway::start(&toml);
    let c = client();
    let traced = |trace: &'static str| {
        let url = gw.url("/items/1");
        let c = c.clone();
        async move {
            let tp = format!("00-{trace}-b7ad6b7169203331-01");
            let r = send(&c, "GET", &url, None, &[("traceparent", tp.as_str())]).await;
            assert_eq!(r.status, 200);
        }
    };
    traced("1af7651916cd43dd8448eb211c80319c").await;
    wait_export_failure(&gw).await;
    assert!(
        collector.all().is_empty(),
        "spans sent to an untrusted collector"
    );

    // Rotated in place; the config file is not touched.
    ca.write(dir.path(), "otlp-ca.pem");
    gw.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric_sum(
        &gw.metrics().await,
        "switchyard_config_reloads_total",
        &[("result", "success")],
    ) < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "reload not applied:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let trace = "2af7651916cd43dd8448eb211c80319c";
    traced(trace).await;
    let spans = collector.wait_trace(trace, 2);
    assert_eq!(spans.len(), 2, "{}", gw.log());
}
