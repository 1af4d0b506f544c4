//! Request ids and W3C trace context over real sockets (without `[tracing]`): `X-Request-Id`
//! kept when valid, generated otherwise, sent upstream (checked in the raw bytes the origin
//! read), returned in every response including the proxy's own, and named in error log lines;
//! `traceparent` continued or started, with a new span id for every attempt.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

/// Listener `web`, route `/` to upstream `u` over `servers`, an access log `access.log`.
fn config(servers: &[std::net::SocketAddr]) -> String {
    format!(
        "{}[access_log]\npath = \"access.log\"\n\n{}\
         [[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"u\"\n\n{}",
        server_section("rid"),
        listener_section("web", &free_addr()),
        upstream_section_for("u", servers),
    )
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Sends `head` (without the final blank line) to `gw`'s listener with `Connection: close`;
/// returns the raw answer.
fn raw_request(gw: &Gateway, head: &str) -> String {
    raw_http(
        gw.addr(),
        &format!("{head}\r\nConnection: close\r\n\r\n"),
        Duration::from_secs(5),
    )
}

/// The values of header `name` in a raw response.
fn response_fields(raw: &str, name: &str) -> Vec<String> {
    let head = raw.split("\r\n\r\n").next().unwrap_or("");
    header_values(head.as_bytes(), name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_kept_when_valid_and_generated_otherwise() {
    let origin = RawOrigin::start("o");
    let gw = Gateway::start(&config(&[origin.addr()]));
    let max: String = (0..128).map(|i| (b'!' + (i % 94) as u8) as char).collect();
    let too_long = "x".repeat(129);
    let cases: [(&str, Option<&str>, bool); 6] = [
        ("absent", None, false),
        ("valid", Some("req-42.a_b~c"), true),
        ("128 visible characters", Some(&max), true),
        ("129 characters", Some(&too_long), false),
        ("a tab", Some("a\tb"), false),
        ("a space", Some("a b"), false),
    ];
    let mut generated = Vec::new();
    for (case, incoming, kept) in cases {
        origin.clear();
        let header = incoming
            .map(|v| format!("\r\nX-Request-Id: {v}"))
            .unwrap_or_default();
        let raw = raw_request(
            &gw,
            &format!("GET /{} HTTP/1.1\r\nHost: t{header}", case.len()),
        );
        assert!(raw.starts_with("HTTP/1.1 200"), "{case}: {raw}");
        let answered = response_fields(&raw, "x-request-id");
        assert_eq!(answered.len(), 1, "{case}: one X-Request-Id in {raw}");
        let id = answered[0].clone();
        let req = origin
            .requests()
            .pop()
            .unwrap_or_else(|| panic!("{case}: no request"));
        assert_eq!(
            req.fields("x-request-id"),
            vec![id.clone()],
            "{case}: the origin got the same single id:\n{}",
            req.head_text()
        );
        if kept {
            assert_eq!(Some(id.as_str()), incoming, "{case}: kept");
        } else {
            assert!(is_hex(&id, 32), "{case}: generated id {id:?}");
            generated.push(id);
        }
    }
    generated.sort();
    generated.dedup();
    assert_eq!(generated.len(), 4, "generated ids are distinct");

    // Answers the proxy makes itself carry it too.
    let cfg404 = format!(
        "{}{}[[routes]]\nname = \"r\"\npath_prefix = \"/only\"\nupstream = \"u\"\n\n{}",
        server_section("rid404"),
        listener_section("web", &free_addr()),
        upstream_section_for("u", &[origin.addr()]),
    );
    let gw404 = Gateway::start(&cfg404);
    let raw = raw_request(
        &gw404,
        "GET /elsewhere HTTP/1.1\r\nHost: t\r\nX-Request-Id: mine-404",
    );
    assert!(raw.starts_with("HTTP/1.1 404"), "{raw}");
    assert_eq!(response_fields(&raw, "x-request-id"), ["mine-404"]);
    let raw = raw_request(&gw404, "GET /elsewhere HTTP/1.1\r\nHost: t");
    let ids = response_fields(&raw, "x-request-id");
    assert!(ids.len() == 1 && is_hex(&ids[0], 32), "{raw}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_log_lines_name_the_request() {
    let broken = Origin::start("broken");
    broken.set_mode(OriginMode::Reset);
    let gw = Gateway::start(&config(&[broken.addr()]));
    let r = send(
        &client(),
        "GET",
        &gw.url("/x"),
        None,
        &[("x-request-id", "trace-me-502")],
    )
    .await;
    assert_eq!(r.status, 502);
    assert_eq!(
        r.headers.get("x-request-id").map(|v| v.as_bytes()),
        Some(&b"trace-me-502"[..])
    );
    assert!(
        gw.wait_for_log("trace-me-502", Duration::from_secs(3)),
        "the failure's log line names the request:\n{}",
        gw.log()
    );
    let errors: Vec<String> = gw
        .log()
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .filter(|l| !l.contains("\"request_id\""))
        .map(str::to_string)
        .collect();
    assert!(
        errors.iter().any(|l| l.contains("trace-me-502")),
        "a warning or error line names the request: {errors:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceparent_is_continued_or_started_with_a_new_span_per_attempt() {
    let origin = RawOrigin::start("o");
    let gw = Gateway::start(&config(&[origin.addr()]));
    let incoming_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let incoming_parent = "00f067aa0ba902b7";

    // Continued: same trace and flags, Switchyard's span as the parent; tracestate unchanged.
    for flags in ["01", "00"] {
        origin.clear();
        let raw = raw_request(
            &gw,
            &format!(
                "GET /c HTTP/1.1\r\nHost: t\r\ntraceparent: 00-{incoming_trace}-{incoming_parent}-{flags}\r\n\
                 tracestate: vendor=opaque,other=1"
            ),
        );
        assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
        let req = origin.requests().pop().unwrap();
        let tp = req.fields("traceparent");
        assert_eq!(tp.len(), 1, "one traceparent:\n{}", req.head_text());
        let parts: Vec<&str> = tp[0].split('-').collect();
        assert_eq!(parts.len(), 4, "{}", tp[0]);
        assert_eq!(parts[0], "00");
        assert_eq!(parts[1], incoming_trace, "the trace is continued");
        assert!(is_hex(parts[2], 16) && parts[2] != "0000000000000000");
        assert_ne!(parts[2], incoming_parent, "a new span id goes upstream");
        assert_eq!(parts[3], flags, "the sampled flag is kept");
        assert_eq!(req.fields("tracestate"), ["vendor=opaque,other=1"]);
    }

    // Started: no (or an invalid) traceparent gives a new trace, the one the access log names.
    for (case, header) in [
        ("none", String::new()),
        (
            "invalid",
            format!(
                "\r\ntraceparent: 00-{}-{incoming_parent}-01",
                "0".repeat(32)
            ),
        ),
        (
            "uppercase",
            format!(
                "\r\ntraceparent: 00-{}-{incoming_parent}-01",
                incoming_trace.to_uppercase()
            ),
        ),
    ] {
        origin.clear();
        let id = format!("started-{case}");
        let raw = raw_request(
            &gw,
            &format!("GET /s HTTP/1.1\r\nHost: t\r\nX-Request-Id: {id}{header}"),
        );
        assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
        let req = origin.requests().pop().unwrap();
        let tp = req.fields("traceparent");
        assert_eq!(tp.len(), 1, "{case}: one traceparent:\n{}", req.head_text());
        let parts: Vec<&str> = tp[0].split('-').collect();
        assert_eq!(parts.len(), 4, "{case}: {}", tp[0]);
        assert_eq!(parts[0], "00");
        assert!(
            is_hex(parts[1], 32) && parts[1] != "0".repeat(32),
            "{case}: {}",
            tp[0]
        );
        assert_ne!(parts[1], incoming_trace, "{case}: a new trace");
        assert!(is_hex(parts[2], 16), "{case}: {}", tp[0]);
        assert_eq!(
            parts[3], "00",
            "{case}: without [tracing] new traces are not sampled"
        );
        let log = wait_for_line(&gw, &id);
        assert_eq!(
            log["trace_id"], parts[1],
            "{case}: the access log names the trace"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_attempt_gets_its_own_span_id() {
    let broken = Origin::start("broken");
    broken.set_mode(OriginMode::Reset);
    let good = Origin::start("good");
    let gw = Gateway::start(&config(&[broken.addr(), good.addr()]));
    let c = client();
    let trace = "0af7651916cd43dd8448eb211c80319c";
    // Round robin: one of two requests tries `broken` first, then `good`.
    for i in 0..2 {
        let r = send(
            &c,
            "GET",
            &gw.url(&format!("/{i}")),
            None,
            &[("traceparent", &format!("00-{trace}-b7ad6b7169203331-01"))],
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let failed = broken.requests();
    assert!(!failed.is_empty(), "an attempt reached the broken server");
    let span = |r: &RecordedRequest| {
        let tp = r.header("traceparent").unwrap();
        assert!(tp.starts_with(&format!("00-{trace}-")), "{tp}");
        tp.split('-').nth(2).unwrap().to_string()
    };
    for first in &failed {
        let second = good
            .requests()
            .into_iter()
            .find(|r| r.uri == first.uri)
            .unwrap_or_else(|| panic!("the retry of {} reached good", first.uri));
        assert_ne!(span(first), span(&second), "a new span id per attempt");
    }
}

/// The access-log line of request `id` (waits ≤ 3 s).
fn wait_for_line(gw: &Gateway, id: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let text = std::fs::read_to_string(gw.dir().join("access.log")).unwrap_or_default();
        if let Some(v) = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["request_id"] == id)
        {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no line for {id}: {text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
