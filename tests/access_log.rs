//! The access log over real sockets: every JSON field over a mix of outcomes (200, 404, 403,
//! 503, a retried request, a slow origin), NGINX's `combined` format checked against NGINX's
//! regex, standard output, `SIGUSR1` reopening the file without losing a line, one line per TCP
//! connection, and `switchyard_access_log_dropped_total`.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The lines of `path` once it holds at least `n` (waits ≤ 5 s; lines are flushed within a
/// second).
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

fn json_lines(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The line whose `request_id` is `id`.
fn by_id<'a>(lines: &'a [Value], id: &str) -> &'a Value {
    lines
        .iter()
        .find(|v| v["request_id"] == id)
        .unwrap_or_else(|| panic!("no line for request {id}: {lines:#?}"))
}

/// Listeners `web` and `closed` (which denies loopback clients); routes `/ok`, `/slow`,
/// `/retry` (a refused server and `ok`), `/down` (its only server drained).
fn mixed_config(log: &str, ok: &Origin, slow: &Origin, refused_port: u16) -> String {
    format!(
        "{server}[metrics]\nlisten = \"{metrics}\"\n\n{log}\n\n{web}\
         [[listeners]]\nname = \"closed\"\nlisten = \"{closed}\"\ndeny = [\"127.0.0.0/8\"]\n\n\
         [[routes]]\nname = \"ok\"\npath_prefix = \"/ok\"\nupstream = \"main\"\n\n\
         [[routes]]\nname = \"slow\"\npath_prefix = \"/slow\"\nupstream = \"slowup\"\n\n\
         [[routes]]\nname = \"retry\"\npath_prefix = \"/retry\"\nupstream = \"flaky\"\n\n\
         [[routes]]\nname = \"down\"\npath_prefix = \"/down\"\nupstream = \"down\"\n\n\
         {main}{slowup}\
         [[upstreams]]\nname = \"flaky\"\n  [[upstreams.groups]]\n  name = \"g\"\n\
         \x20   [[upstreams.groups.servers]]\n    address = \"127.0.0.1\"\n    port = {refused_port}\n\
         \x20   [[upstreams.groups.servers]]\n    address = \"127.0.0.1\"\n    port = {ok_port}\n\n\
         [[upstreams]]\nname = \"down\"\n  [[upstreams.groups]]\n  name = \"g\"\n\
         \x20   [[upstreams.groups.servers]]\n    address = \"127.0.0.1\"\n    port = {ok_port}\n    weight = 0\n",
        server = server_section("alog"),
        metrics = free_addr(),
        web = listener_section("web", &free_addr()),
        closed = free_addr(),
        main = upstream_section("main", &[ok]),
        slowup = upstream_section("slowup", &[slow]),
        ok_port = ok.port(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_carry_every_field_over_a_mix_of_outcomes() {
    let ok = Origin::start("ok");
    let slow = Origin::start("slow");
    slow.set_delay(Duration::from_millis(300));
    let refused = free_port();
    let gw = Gateway::start(&mixed_config(
        "[access_log]\npath = \"access.log\"\nformat = \"json\"",
        &ok,
        &slow,
        refused,
    ));
    let before = SystemTime::now();
    let c = client();
    let web = gw.listener("web");
    let ua = ("user-agent", "alog-test/1.0");

    // 200, read raw so that bytes_sent can be compared with what the client got.
    let raw = raw_http(
        web,
        "GET /ok/a?x=1&y=2 HTTP/1.1\r\nHost: example.test:8080\r\nUser-Agent: alog-test/1.0\r\n\
         Referer: http://ref.test/\r\nX-Request-Id: id-200\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    let r = send(
        &c,
        "GET",
        &gw.url("/nothing"),
        None,
        &[("x-request-id", "id-404"), ua],
    )
    .await;
    assert_eq!(r.status, 404);
    let closed = format!("http://{}/ok", gw.listener("closed"));
    let r = send(&c, "GET", &closed, None, &[("x-request-id", "id-403"), ua]).await;
    assert_eq!(r.status, 403);
    let r = send(
        &c,
        "GET",
        &gw.url("/down"),
        None,
        &[("x-request-id", "id-503"), ua],
    )
    .await;
    assert_eq!(r.status, 503);
    let r = send(
        &c,
        "GET",
        &gw.url("/slow"),
        None,
        &[("x-request-id", "id-slow"), ua],
    )
    .await;
    assert_eq!(r.status, 200);
    // Round robin over [refused, ok]: of two requests, one tries the refused server first.
    for id in ["id-retry-1", "id-retry-2"] {
        let r = send(
            &c,
            "GET",
            &gw.url("/retry"),
            None,
            &[("x-request-id", id), ua],
        )
        .await;
        assert_eq!(r.status, 200, "{id}");
    }
    let after = SystemTime::now();

    let lines = json_lines(&wait_lines(&gw.dir().join("access.log"), 7));
    assert_eq!(lines.len(), 7, "{lines:#?}");
    let ok_id = format!("g/127.0.0.1:{}", ok.port());

    let l = by_id(&lines, "id-200");
    let keys: Vec<&str> = l.as_object().unwrap().keys().map(String::as_str).collect();
    for k in [
        "ts",
        "request_id",
        "client_ip",
        "method",
        "host",
        "path",
        "query",
        "protocol",
        "status",
        "bytes_sent",
        "duration_ms",
        "route",
        "upstream",
        "server",
        "upstream_status",
        "attempts",
        "user_agent",
        "trace_id",
        "error",
    ] {
        assert!(keys.contains(&k), "field {k} missing: {l}");
    }
    assert!(
        l.get("grpc_status").is_none(),
        "grpc_status only for gRPC: {l}"
    );
    let ts = l["ts"].as_str().unwrap();
    let re = regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$").unwrap();
    assert!(re.is_match(ts), "ts {ts}");
    let ts = parse_rfc3339_ms(ts);
    assert!(
        ts + Duration::from_millis(5) >= before && ts <= after,
        "ts {:?} outside the test's window",
        l["ts"]
    );
    assert_eq!(l["client_ip"], "127.0.0.1");
    assert_eq!(l["listener"], "web");
    assert_eq!(l["method"], "GET");
    assert_eq!(l["host"], "example.test");
    assert_eq!(l["path"], "/ok/a");
    assert_eq!(l["query"], "x=1&y=2");
    assert_eq!(l["protocol"], "HTTP/1.1");
    assert_eq!(l["status"], 200);
    assert_eq!(l["body_bytes_sent"], 2, "the body is `ok`");
    assert_eq!(
        l["bytes_sent"].as_u64(),
        Some(raw.len() as u64),
        "bytes_sent is the whole response:\n{raw}"
    );
    let d = l["duration_ms"].as_f64().unwrap();
    assert!(d > 0.0 && d < 2000.0, "duration_ms {d}");
    assert_eq!(l["route"], "ok");
    assert_eq!(l["upstream"], "main");
    assert_eq!(l["server"], ok_id.as_str());
    assert_eq!(l["upstream_status"], 200);
    assert_eq!(l["attempts"], 1);
    assert_eq!(l["user_agent"], "alog-test/1.0");
    assert_eq!(l["referer"], "http://ref.test/");
    let trace = l["trace_id"].as_str().unwrap();
    assert!(
        trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit()),
        "trace_id {trace}"
    );
    assert_eq!(l["error"], Value::Null);

    let refused_fields = |l: &Value, status: u64, error: &str| {
        assert_eq!(l["status"], status, "{l}");
        assert_eq!(l["attempts"], 0, "{l}");
        assert_eq!(l["upstream_status"], Value::Null, "{l}");
        assert_eq!(l["server"], Value::Null, "{l}");
        assert_eq!(l["error"], error, "{l}");
        assert_eq!(l["user_agent"], "alog-test/1.0", "{l}");
        assert_eq!(l["method"], "GET", "{l}");
        assert!(l["bytes_sent"].as_u64().unwrap() > 0, "{l}");
    };
    let l = by_id(&lines, "id-404");
    refused_fields(l, 404, "no_route");
    assert_eq!(l["route"], Value::Null);
    assert_eq!(l["path"], "/nothing");
    let l = by_id(&lines, "id-403");
    refused_fields(l, 403, "acl");
    assert_eq!(l["listener"], "closed");
    let l = by_id(&lines, "id-503");
    refused_fields(l, 503, "all_down");
    assert_eq!(l["route"], "down");
    assert_eq!(l["upstream"], "down");

    let l = by_id(&lines, "id-slow");
    let d = l["duration_ms"].as_f64().unwrap();
    assert!((300.0..3000.0).contains(&d), "the origin waits 300 ms: {l}");
    assert_eq!(l["server"], format!("g/127.0.0.1:{}", slow.port()));

    let retried: Vec<&Value> = ["id-retry-1", "id-retry-2"]
        .iter()
        .map(|id| by_id(&lines, id))
        .collect();
    let twice = retried
        .iter()
        .find(|l| l["attempts"] == 2)
        .unwrap_or_else(|| panic!("no request took 2 attempts: {retried:#?}"));
    assert_eq!(
        twice["server"],
        ok_id.as_str(),
        "the last server tried answered"
    );
    assert_eq!(twice["upstream_status"], 200);
    assert_eq!(twice["status"], 200);
    assert_eq!(twice["error"], Value::Null);

    let m = gw.metrics().await;
    assert_eq!(
        metric_sum(&m, "switchyard_access_log_dropped_total", &[]),
        0.0
    );
    assert!(
        m.iter()
            .any(|s| s.name == "switchyard_access_log_dropped_total"),
        "the dropped-lines counter is exported"
    );
}

/// The time of an RFC 3339 `YYYY-MM-DDTHH:MM:SS.mmmZ` timestamp.
fn parse_rfc3339_ms(ts: &str) -> SystemTime {
    let num = |s: &str| -> i64 { s.parse().unwrap_or_else(|e| panic!("{ts}: {e}")) };
    let (y, mo, d) = (num(&ts[0..4]), num(&ts[5..7]), num(&ts[8..10]));
    let (h, mi, s, ms) = (
        num(&ts[11..13]),
        num(&ts[14..16]),
        num(&ts[17..19]),
        num(&ts[20..23]),
    );
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + s;
    SystemTime::UNIX_EPOCH + Duration::from_millis((secs * 1000 + ms) as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn combined_lines_match_nginx_s_regex() {
    let ok = Origin::start("ok");
    let slow = Origin::start("slow");
    let gw = Gateway::start(&mixed_config(
        "[access_log]\npath = \"combined.log\"\nformat = \"combined\"",
        &ok,
        &slow,
        free_port(),
    ));
    let c = client();
    let r = send(
        &c,
        "GET",
        &gw.url("/ok/x?q=\"1\""),
        None,
        &[
            ("user-agent", "Mozilla/5.0 \"quoted\""),
            ("referer", "http://r.test/"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(get(&c, &gw.url("/missing")).await.status, 404);
    let lines = wait_lines(&gw.dir().join("combined.log"), 2);
    assert_eq!(lines.len(), 2, "{lines:?}");
    // The regex NGINX's own documentation and most log shippers (e.g. Fluent Bit's `nginx`
    // parser) use for `log_format combined`.
    let nginx = regex::Regex::new(
        r#"^(?P<remote>[^ ]*) (?P<host>[^ ]*) (?P<user>[^ ]*) \[(?P<time>[^\]]*)\] "(?P<method>\S+)(?: +(?P<path>[^"]*?)(?: +\S*)?)?" (?P<code>[^ ]*) (?P<size>[^ ]*)(?: "(?P<referer>[^"]*)" "(?P<agent>[^"]*)")$"#,
    )
    .unwrap();
    let time = regex::Regex::new(r"^\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000$").unwrap();
    let first = nginx
        .captures(&lines[0])
        .unwrap_or_else(|| panic!("not NGINX combined: {}", lines[0]));
    assert_eq!(&first["remote"], "127.0.0.1");
    assert!(time.is_match(&first["time"]), "{}", &first["time"]);
    assert_eq!(&first["method"], "GET");
    assert_eq!(&first["path"], "/ok/x?q=%221%22");
    assert_eq!(&first["code"], "200");
    assert_eq!(&first["size"], "2");
    assert_eq!(&first["referer"], "http://r.test/");
    assert_eq!(&first["agent"], "Mozilla/5.0 \\x22quoted\\x22");
    let second = nginx
        .captures(&lines[1])
        .unwrap_or_else(|| panic!("not NGINX combined: {}", lines[1]));
    assert_eq!(&second["code"], "404");
    assert_eq!(&second["agent"], "-");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_dash_writes_to_standard_output() {
    let ok = Origin::start("ok");
    let slow = Origin::start("slow");
    let gw = Gateway::start(&mixed_config(
        "[access_log]\npath = \"-\"",
        &ok,
        &slow,
        free_port(),
    ));
    let r = send(
        &client(),
        "GET",
        &gw.url("/ok"),
        None,
        &[("x-request-id", "to-stdout")],
    )
    .await;
    assert_eq!(r.status, 200);
    let lines = wait_lines(&gw.dir().join("stdout.log"), 1);
    let lines = json_lines(&lines);
    assert_eq!(by_id(&lines, "to-stdout")["status"], 200);
    assert!(
        !std::fs::read_to_string(gw.dir().join("stderr.log"))
            .unwrap_or_default()
            .contains("to-stdout"),
        "access lines go to stdout, not to the error log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_reopens_the_file_and_no_line_is_lost() {
    let ok = Origin::start("ok");
    let slow = Origin::start("slow");
    let gw = Gateway::start(&mixed_config(
        "[access_log]\npath = \"rotate.log\"",
        &ok,
        &slow,
        free_port(),
    ));
    let path = gw.dir().join("rotate.log");
    let rotated = gw.dir().join("rotate.log.1");
    let c = client();
    let url = gw.url("/ok");
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // Requests keep flowing while the file is renamed and the signal arrives.
    let load = {
        let (c, url, sent) = (c.clone(), url.clone(), sent.clone());
        tokio::spawn(async move {
            for i in 0..150 {
                let id = format!("rot-{i}");
                let r = send(&c, "GET", &url, None, &[("x-request-id", &id)]).await;
                assert_eq!(r.status, 200);
                sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while sent.load(std::sync::atomic::Ordering::SeqCst) < 40 {
        assert!(Instant::now() < deadline, "load too slow");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    std::fs::rename(&path, &rotated).unwrap();
    gw.signal("USR1");
    assert!(
        gw.wait_for_log("access log", Duration::from_secs(5)),
        "no reopen logged:\n{}",
        gw.log()
    );
    load.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let (old, new) = loop {
        let old = std::fs::read_to_string(&rotated).unwrap_or_default();
        let new = std::fs::read_to_string(&path).unwrap_or_default();
        if old.lines().count() + new.lines().count() >= 150 || Instant::now() > deadline {
            break (old, new);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut ids: Vec<String> = old
        .lines()
        .chain(new.lines())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            v["request_id"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(old.lines().count() >= 40, "the old file kept its lines");
    assert!(!new.is_empty(), "the reopened file gets the later lines");
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        150,
        "every request logged exactly once across both files"
    );
}

/// A TCP echo server on loopback; returns its address.
async fn echo_server() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_listeners_log_one_line_per_connection() {
    let echo = echo_server().await;
    let listen = free_addr();
    let gw = Gateway::start(&format!(
        "{}[access_log]\npath = \"tcp.log\"\n\n[[listeners]]\nname = \"db\"\nprotocol = \"tcp\"\n\
         listen = \"{listen}\"\nupstream = \"echo\"\n\n\
         [[upstreams]]\nname = \"echo\"\n  [[upstreams.groups]]\n  name = \"g\"\n\
         \x20   [[upstreams.groups.servers]]\n    address = \"127.0.0.1\"\n    port = {}\n",
        server_section("alog-tcp"),
        echo.port()
    ));
    let mut conn = tokio::net::TcpStream::connect(gw.listener("db"))
        .await
        .unwrap();
    conn.write_all(b"hello, echo").await.unwrap();
    let mut got = [0u8; 11];
    conn.read_exact(&mut got).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    conn.write_all(b"!").await.unwrap();
    let mut one = [0u8; 1];
    conn.read_exact(&mut one).await.unwrap();
    drop(conn);
    // The harness's readiness probe opened (and closed) one connection without a byte.
    let lines = json_lines(&wait_lines(&gw.dir().join("tcp.log"), 2));
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert_eq!(lines[0]["bytes_received"], 0, "{lines:#?}");
    let l = &lines[1];
    assert_eq!(l["protocol"], "tcp");
    assert_eq!(l["listener"], "db");
    assert_eq!(l["upstream"], "echo");
    assert_eq!(l["server"], format!("g/127.0.0.1:{}", echo.port()));
    assert_eq!(l["client_ip"], "127.0.0.1");
    assert_eq!(l["bytes_received"], 12);
    assert_eq!(l["bytes_sent"], 12);
    assert_eq!(l["attempts"], 1);
    assert_eq!(l["outcome"], "closed");
    assert_eq!(l["error"], Value::Null);
    let d = l["duration_ms"].as_f64().unwrap();
    assert!((100.0..5000.0).contains(&d), "duration_ms {d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_conf_observability_toml_checks_and_runs() {
    let path = workspace_root().join("conf/observability.toml");
    let (code, out, err) = check_file(&path);
    assert_eq!(
        code, 0,
        "conf/observability.toml:\nstdout: {out}\nstderr: {err}"
    );
    assert!(out.contains("access log"), "{out}");

    let (a, b) = (Origin::start("a"), Origin::start("b"));
    let mut table: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    table["listeners"].as_array_mut().unwrap()[0]["listen"] = toml::Value::String(free_addr());
    table["metrics"]["listen"] = toml::Value::String(free_addr());
    // No collector runs here: spans go to a closed loopback port (and are counted as failures).
    table["tracing"]["otlp_endpoint"] =
        toml::Value::String(format!("http://127.0.0.1:{}/v1/traces", free_port()));
    let servers = table["upstreams"].as_array_mut().unwrap()[0]["groups"]
        .as_array_mut()
        .unwrap()[0]["servers"]
        .as_array_mut()
        .unwrap();
    for (s, o) in servers.iter_mut().zip([&a, &b]) {
        s["port"] = toml::Value::Integer(o.port().into());
    }
    let gw = Gateway::start(&toml::to_string(&table).unwrap());
    let c = client();
    for i in 0..4 {
        let r = get(&c, &gw.url(&format!("/items/{i}"))).await;
        assert_eq!(r.status, 200);
        assert!(r.headers.contains_key("x-request-id"));
    }
    assert_eq!((a.request_count(), b.request_count()), (2, 2));
    // `path = "access.log"` is relative to the config file's directory.
    let lines = json_lines(&wait_lines(&gw.dir().join("access.log"), 4));
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(lines
        .iter()
        .all(|l| l["route"] == "items" && l["status"] == 200));
}

/// `[access_log]` to `grpc.log`, listener `web`, every path to an HTTP/2 upstream over `server`.
fn grpc_config(server: SocketAddr) -> String {
    format!(
        "{}[access_log]\npath = \"grpc.log\"\n\n{}\
         [[routes]]\nname = \"grpc\"\npath_prefix = \"/\"\nupstream = \"g\"\n\n\
         [[upstreams]]\nname = \"g\"\nprotocol = \"http2\"\n  [[upstreams.groups]]\n  name = \"g\"\n\
         \x20   [[upstreams.groups.servers]]\n    address = \"127.0.0.1\"\n    port = {}\n",
        server_section("alog-grpc"),
        listener_section("web", &free_addr()),
        server.port()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_log_their_grpc_status() {
    let origin = grpc_echo::Origin::start("a", None).await.unwrap();
    let gw = Gateway::start(&grpc_config(origin.addr));
    let mut c = grpc_echo::client::h2c(gw.listener("web")).await.unwrap();
    let request = grpc_echo::pb::EchoRequest {
        message: "hi".into(),
        payload: vec![],
        count: 0,
    };
    c.unary_echo(request.clone()).await.unwrap();
    let lines = json_lines(&wait_lines(&gw.dir().join("grpc.log"), 1));
    let l = &lines[0];
    assert_eq!(l["protocol"], "HTTP/2.0", "{l}");
    assert_eq!(l["path"], "/switchyard.test.Echo/UnaryEcho", "{l}");
    assert_eq!(l["status"], 200, "{l}");
    assert_eq!(l["grpc_status"], 0, "{l}");
    assert_eq!(l["error"], Value::Null, "{l}");

    // A server that refuses connections: the proxy answers UNAVAILABLE (14) under HTTP 200.
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw = Gateway::start(&grpc_config(dead));
    let mut c = grpc_echo::client::h2c(gw.listener("web")).await.unwrap();
    let err = c.unary_echo(request).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    let lines = json_lines(&wait_lines(&gw.dir().join("grpc.log"), 1));
    let l = &lines[0];
    assert_eq!(l["grpc_status"], 14, "{l}");
    assert_eq!(l["attempts"], 1, "{l}");
    assert_eq!(l["upstream_status"], Value::Null, "{l}");
    assert_eq!(l["error"], "connect_error", "{l}");
}
