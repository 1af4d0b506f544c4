//! DNS-named servers: `address = "api.test"` resolved through `[server].resolvers`, at start-up
//! and every `resolve_interval_ms`.
//!
//! The resolver is a small authoritative DNS server on 127.0.0.1 run by the test (UDP, messages
//! built with `hickory-proto`) whose answer for `api.test.` the test changes: `127.0.0.2`, then
//! `127.0.0.3`, then no answer at all. Origins listen on `127.0.0.2:P` and `127.0.0.3:P`.
//!
//! - traffic reaches .2 first; after the answer changes it moves to .3 within a bounded time;
//! - when the DNS server stops answering, the last good set keeps serving and
//!   `switchyard_dns_resolutions_total{result="failure"}` grows;
//! - server identities in metrics are `g/api.test:P#127.0.0.3`;
//! - a name that does not resolve at start-up stops the gateway with an error naming it.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use support::*;

/// What the test DNS server does with queries for `api.test.`.
#[derive(Debug, Clone)]
enum Answer {
    /// Answer these A records (TTL 1).
    Records(Vec<Ipv4Addr>),
    /// Drop every query (the server "stops answering").
    Silent,
}

/// An authoritative DNS server for `api.test.` on 127.0.0.1 (UDP), on its own runtime.
struct DnsServer {
    addr: SocketAddr,
    answer: Arc<Mutex<Answer>>,
    queries: Arc<AtomicUsize>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        // Safe to drop from inside a test's async context.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl DnsServer {
    fn start(answer: Answer) -> DnsServer {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("test-dns")
            .enable_all()
            .build()
            .unwrap();
        let std_socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        std_socket.set_nonblocking(true).unwrap();
        let addr = std_socket.local_addr().unwrap();
        let answer = Arc::new(Mutex::new(answer));
        let queries = Arc::new(AtomicUsize::new(0));
        let (a, q) = (Arc::clone(&answer), Arc::clone(&queries));
        rt.spawn(async move {
            let socket = tokio::net::UdpSocket::from_std(std_socket).unwrap();
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                q.fetch_add(1, Ordering::SeqCst);
                let current = a.lock().unwrap().clone();
                if let Some(reply) = respond(&buf[..n], &current) {
                    let _ = socket.send_to(&reply, peer).await;
                }
            }
        });
        DnsServer {
            addr,
            answer,
            queries,
            rt: Some(rt),
        }
    }

    fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

/// The reply to one query, or `None` to stay silent.
fn respond(packet: &[u8], answer: &Answer) -> Option<Vec<u8>> {
    let req = Message::from_vec(packet).ok()?;
    let ips = match answer {
        Answer::Silent => return None,
        Answer::Records(ips) => ips,
    };
    let mut resp = Message::new(req.metadata.id, MessageType::Response, OpCode::Query);
    resp.metadata = Metadata::response_from_request(&req.metadata);
    resp.metadata.authoritative = true;
    resp.add_queries(req.queries.clone());
    resp.edns = req.edns.clone();
    let zone = Name::from_ascii("api.test.").unwrap();
    match req.queries.first() {
        Some(q) if q.name().to_ascii().eq_ignore_ascii_case("api.test.") => {
            if q.query_type() == RecordType::A {
                for ip in ips {
                    resp.add_answer(Record::from_rdata(zone.clone(), 1, RData::A(A(*ip))));
                }
            }
            // AAAA and other types: NOERROR, no records.
        }
        _ => resp.metadata.response_code = ResponseCode::NXDomain,
    }
    resp.to_vec().ok()
}

fn config(
    prefix: &str,
    dns: SocketAddr,
    port: u16,
    listen: &str,
    metrics: &str,
    name: &str,
) -> String {
    format!(
        "[server]\ninstance_id = \"{}\"\nthreads = 1\ngrace_period_s = 1\nresolvers = [\"{dns}\"]\n\n\
         [metrics]\nlisten = \"{metrics}\"\n\n\
         {}\
         [[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"api\"\n\n\
         [[upstreams]]\nname = \"api\"\nport = {port}\nresolve_interval_ms = 300\n  \
         [[upstreams.groups]]\n  name = \"g\"\n    \
         [[upstreams.groups.servers]]\n    address = \"{name}\"\n",
        unique_id(prefix),
        listener_section("web", listen),
    )
}

/// The sum of the samples named `name` with labels `want`.
fn total(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && s.has_labels(want))
        .map(|s| s.value)
        .sum()
}

/// GETs `/` once; returns the answering origin ("" if not 200).
async fn origin_of(gw: &Gateway, c: &reqwest::Client, i: usize) -> String {
    let r = get(c, &gw.url(&format!("/dns/{i}"))).await;
    if r.status == 200 {
        r.origin().unwrap_or_default()
    } else {
        String::new()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_answer_change_moves_traffic_and_failures_keep_the_last_good_set() {
    let dns = DnsServer::start(Answer::Records(vec![Ipv4Addr::new(127, 0, 0, 2)]));
    let dot2 = Origin::start_on("dot2", SocketAddr::from(([127, 0, 0, 2], 0)));
    let port = dot2.port();
    let dot3 = Origin::start_on("dot3", SocketAddr::from(([127, 0, 0, 3], port)));
    let cfg = config(
        "dns",
        dns.addr,
        port,
        &free_addr(),
        &free_addr(),
        "api.test",
    );
    let gw = Gateway::start(&cfg);
    let c = client();

    // Resolved at start-up: everything goes to .2.
    for i in 0..10 {
        assert_eq!(origin_of(&gw, &c, i).await, "dot2", "request {i}");
    }
    assert_eq!(dot3.request_count(), 0);

    // The answer changes: traffic moves to .3 within a bounded time (interval 300 ms).
    dns.set(Answer::Records(vec![Ipv4Addr::new(127, 0, 0, 3)]));
    let changed = Instant::now();
    let mut moved = false;
    for i in 0..200 {
        if origin_of(&gw, &c, 100 + i).await == "dot3" {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        moved,
        "traffic did not move to 127.0.0.3; log:\n{}",
        gw.log()
    );
    assert!(
        changed.elapsed() < Duration::from_secs(5),
        "took {:?}",
        changed.elapsed()
    );
    let dot2_before = dot2.request_count();
    for i in 0..10 {
        assert_eq!(origin_of(&gw, &c, 400 + i).await, "dot3", "request {i}");
    }
    assert_eq!(dot2.request_count(), dot2_before, ".2 left the answer");

    // Identities in metrics: group/name:port#ip.
    let id3 = format!("g/api.test:{port}#127.0.0.3");
    let id2 = format!("g/api.test:{port}#127.0.0.2");
    let m = gw.metrics().await;
    assert!(
        total(
            &m,
            "switchyard_upstream_requests_total",
            &[
                ("upstream", "api"),
                ("server", &id3),
                ("outcome", "success")
            ]
        ) >= 10.0,
        "no requests counted for {id3}"
    );
    assert!(
        m.iter().any(|s| s.name == "switchyard_backend_healthy"
            && s.has_labels(&[("server", &id3)])
            && s.value == 1.0),
        "{id3} not healthy in metrics"
    );
    assert!(
        !m.iter()
            .any(|s| s.name == "switchyard_backend_healthy" && s.has_labels(&[("server", &id2)])),
        "{id2} still has a health gauge"
    );
    assert!(
        total(
            &m,
            "switchyard_dns_resolutions_total",
            &[("upstream", "api"), ("result", "success")]
        ) >= 2.0
    );
    let failures_before = total(
        &m,
        "switchyard_dns_resolutions_total",
        &[("upstream", "api"), ("result", "failure")],
    );

    // The DNS server stops answering: failures are counted, .3 keeps serving.
    dns.set(Answer::Silent);
    let queries_before = dns.queries();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut i = 1000;
    loop {
        assert_eq!(
            origin_of(&gw, &c, i).await,
            "dot3",
            "request {i} while DNS is silent"
        );
        i += 1;
        let failures = total(
            &gw.metrics().await,
            "switchyard_dns_resolutions_total",
            &[("upstream", "api"), ("result", "failure")],
        );
        if failures > failures_before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no failure counted within 30 s; log:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        dns.queries() > queries_before,
        "the gateway did not ask the configured resolver"
    );
    assert!(gw.wait_for_log("cannot resolve api.test", Duration::from_secs(5)));
    // Logged once per change, not once per round.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        gw.log().matches("cannot resolve api.test").count(),
        1,
        "{}",
        gw.log()
    );
    for j in 0..10 {
        assert_eq!(origin_of(&gw, &c, 2000 + j).await, "dot3");
    }

    // It answers again with .2 and .3: both serve.
    dns.set(Answer::Records(vec![
        Ipv4Addr::new(127, 0, 0, 2),
        Ipv4Addr::new(127, 0, 0, 3),
    ]));
    let dot2_before = dot2.request_count();
    let deadline = Instant::now() + Duration::from_secs(30);
    while dot2.request_count() == dot2_before {
        let _ = origin_of(&gw, &c, 3000).await;
        assert!(
            Instant::now() < deadline,
            "127.0.0.2 never came back; log:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gw.wait_for_log("api.test resolves again", Duration::from_secs(5)));
}

#[test]
fn a_name_that_does_not_resolve_at_start_up_is_an_error() {
    let dns = DnsServer::start(Answer::Records(vec![Ipv4Addr::new(127, 0, 0, 2)]));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.toml");
    let mut cfg = config(
        "dns-bad",
        dns.addr,
        8080,
        &free_addr(),
        &free_addr(),
        "nope.test",
    );
    cfg = cfg.replacen(
        "[server]\n",
        &format!(
            "[server]\npid_file = \"{}\"\nupgrade_sock = \"{}\"\n",
            dir.path().join("pid").display(),
            dir.path().join("sock").display()
        ),
        1,
    );
    std::fs::write(&path, &cfg).unwrap();
    let mut child = Command::new(switchyard_bin())
        .args(["run", "-c", path.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the gateway started although nope.test does not resolve");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!status.success());
    assert!(
        text.contains("nope.test"),
        "error does not name the server: {text}"
    );
    assert!(dns.queries() > 0, "the configured resolver was not asked");
}
