//! A live `/metrics` of the real binary after traffic that makes every kind of series exist:
//! successes, a retried request, a passive ejection, failed active checks and a 503 for an
//! upstream with no server, a 404, a reload, and a DNS-named server resolved through a DNS
//! server on 127.0.0.1 run here.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, Metadata, OpCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};

use crate::support::*;

/// Series that appear only after the traffic below; the scrape is taken once all are there.
const AWAITED: &[&str] = &[
    "switchyard_requests_total",
    "switchyard_request_duration_seconds_bucket",
    "switchyard_retries_total",
    "switchyard_backend_ejections_total",
    "switchyard_health_checks_total",
    "switchyard_no_server_total",
    "switchyard_rejected_requests_total",
    "switchyard_config_reloads_total",
    "switchyard_dns_resolutions_total",
    "switchyard_backend_ewma_seconds",
    "switchyard_build_info",
    "process_cpu_seconds_total",
];

/// A DNS server on 127.0.0.1 that answers every A query with 127.0.0.1 (TTL 1) and every other
/// query with no record; stopped when dropped.
struct LoopbackDns {
    addr: SocketAddr,
    rt: Option<tokio::runtime::Runtime>,
}

impl LoopbackDns {
    fn start() -> LoopbackDns {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        socket.set_nonblocking(true).unwrap();
        let addr = socket.local_addr().unwrap();
        rt.spawn(async move {
            let socket = tokio::net::UdpSocket::from_std(socket).unwrap();
            let mut buf = vec![0u8; 2048];
            while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                if let Some(reply) = answer(&buf[..n]) {
                    let _ = socket.send_to(&reply, peer).await;
                }
            }
        });
        LoopbackDns { addr, rt: Some(rt) }
    }
}

impl Drop for LoopbackDns {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn answer(packet: &[u8]) -> Option<Vec<u8>> {
    let query = Message::from_vec(packet).ok()?;
    let mut reply = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
    reply.metadata = Metadata::response_from_request(&query.metadata);
    reply.metadata.authoritative = true;
    reply.add_queries(query.queries.clone());
    if let Some(q) = query.queries.first() {
        if q.query_type() == RecordType::A {
            let rdata = RData::A(A(Ipv4Addr::LOCALHOST));
            reply.add_answer(Record::from_rdata(q.name().clone(), 1, rdata));
        }
    }
    reply.to_vec().ok()
}

/// Runs the gateway, drives the traffic, and returns the text of one `/metrics` scrape taken
/// once every [`AWAITED`] series exists (or after 15 s, whatever it holds then).
pub async fn scrape_after_traffic() -> String {
    let dns = LoopbackDns::start();
    let live = Origin::start("live");
    let dead = free_port();
    let down = free_port();
    let cfg = format!(
        "[server]\ninstance_id = \"{id}\"\nthreads = 1\ngrace_period_s = 1\n\
         resolvers = [\"{dns}\"]\n\n\
         [metrics]\nlisten = \"{metrics}\"\n\n{listener}\
         [[routes]]\nname = \"r\"\npath_prefix = \"/r\"\nupstream = \"u\"\n\n\
         [[routes]]\nname = \"down\"\npath_prefix = \"/down\"\nupstream = \"down\"\n\n\
         [[upstreams]]\nname = \"u\"\n\
         \x20 [[upstreams.groups]]\n  name = \"g\"\n\
         \x20   [[upstreams.groups.servers]]\n    address = \"127.0.0.1\"\n    port = {live}\n\
         \x20   [[upstreams.groups.servers]]\n    address = \"127.0.0.1\"\n    port = {dead}\n\
         \x20 [upstreams.health.passive]\n  unhealthy_threshold = 1\n\n\
         [[upstreams]]\nname = \"down\"\n\
         \x20 [[upstreams.groups]]\n  name = \"g\"\n\
         \x20   [[upstreams.groups.servers]]\n    address = \"127.0.0.1\"\n    port = {down}\n\
         \x20 [upstreams.health.active]\n  protocol = \"tcp\"\n  interval_ms = 200\n  \
         timeout_ms = 200\n  unhealthy_threshold = 1\n\n\
         [[upstreams]]\nname = \"named\"\nresolve_interval_ms = 200\n\
         \x20 [[upstreams.groups]]\n  name = \"g\"\n\
         \x20   [[upstreams.groups.servers]]\n    address = \"api.test\"\n    port = {live}\n",
        id = unique_id("contrib"),
        dns = dns.addr,
        metrics = free_addr(),
        listener = listener_section("web", &free_addr()),
        live = live.port(),
    );
    let gw = Gateway::start(&cfg);
    let c = client();
    for i in 0..8 {
        get(&c, &gw.url(&format!("/r/{i}"))).await;
    }
    get(&c, &gw.url("/down/x")).await;
    get(&c, &gw.url("/nothing")).await;
    gw.signal("HUP");

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = gw.metrics_text().await;
        let exported = super::exposition::Exported::parse(&text);
        let all_there = AWAITED.iter().all(|n| exported.samples.contains(*n));
        if all_there || Instant::now() > deadline {
            drop(dns);
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
