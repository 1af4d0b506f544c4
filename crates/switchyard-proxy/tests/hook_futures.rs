//! The gateway's `ProxyHttp` hooks return a zero-sized future when their work is done, so the
//! box `#[async_trait]` puts it in allocates nothing: the request path's hooks cost no
//! allocation of their own. A refusal and the extensions' hooks still take the `async` path.
#![allow(unsafe_code)] // GlobalAlloc is an unsafe trait; this test file only forwards to System.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::Stream;
use pingora::proxy::{ProxyHttp, Session};
use switchyard_proxy::extension::{Decision, ExtContext, Extension, RequestInfo};
use switchyard_proxy::runtime::Runtime;
use switchyard_proxy::service::HttpGateway;
use switchyard_proxy::Shared;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// Counts the allocations made on this thread (the tests run their futures on it).
struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is a
// thread-local `Cell` with const initialisation, which itself never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

const CONFIG: &str = r#"
[server]
instance_id = "hooks"

[[listeners]]
name = "web"
protocol = "http"
listen = "127.0.0.1:1"

[[routes]]
name = "api"
listeners = ["web"]
path_prefix = "/api"
upstream = "app"

[[upstreams]]
name = "app"
  [[upstreams.groups]]
  name = "main"
  servers = [{ address = "127.0.0.1", port = 9 }]
"#;

fn gateway(extensions: Vec<Arc<dyn Extension>>) -> HttpGateway {
    let cfg = switchyard_config::parse_str(CONFIG).unwrap_or_else(|e| panic!("{e}"));
    let rt = Runtime::build(Arc::new(cfg), None).unwrap_or_else(|e| panic!("{e}"));
    HttpGateway::new(Shared::with_extensions(rt, None, extensions), "web")
}

/// A session that has read `head`, and the client's end of its connection.
async fn session_after(head: &str) -> (Session, DuplexStream) {
    let (mut client, server) = tokio::io::duplex(4096);
    client
        .write_all(head.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut session = Session::new_h1(Box::new(server) as Stream);
    assert!(session
        .read_request()
        .await
        .unwrap_or_else(|e| panic!("{e}")));
    (session, client)
}

/// What the session wrote to the client, once the session is dropped (the connection closed).
async fn answer_written(session: Session, client: &mut DuplexStream) -> String {
    drop(session);
    let mut answer = String::new();
    client
        .read_to_string(&mut answer)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    answer
}

#[tokio::test(flavor = "current_thread")]
async fn a_routed_request_passes_every_hook_without_a_future_of_its_own() {
    let gw = gateway(Vec::new());
    let (mut session, _client) = session_after("GET /api/x HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let mut ctx = gw.new_ctx();
    let (s, c) = (&mut session, &mut ctx);

    let early = gw.early_request_filter(s, c);
    assert_eq!(std::mem::size_of_val(&*early), 0);
    early.await.unwrap_or_else(|e| panic!("{e}"));

    let admit = gw.request_filter(s, c);
    assert_eq!(std::mem::size_of_val(&*admit), 0);
    assert!(!admit.await.unwrap_or_else(|e| panic!("{e}")), "routed");
    assert_eq!(c.route(), Some(0));

    // What Pingora sends upstream: a copy of the session's request, which admission gave
    // its id.
    let mut upstream_request = s.req_header().clone();
    let forward = gw.upstream_request_filter(s, &mut upstream_request, c);
    assert_eq!(std::mem::size_of_val(&*forward), 0);
    forward.await.unwrap_or_else(|e| panic!("{e}"));
    assert!(upstream_request.headers.contains_key("x-request-id"));
    assert!(upstream_request.headers.contains_key("x-forwarded-proto"));
    assert_eq!(upstream_request.headers["cdn-loop"], "hooks");

    let mut response = ResponseHeader::build(200, Some(8)).unwrap_or_else(|e| panic!("{e}"));
    let before = allocations();
    let head = gw.upstream_response_filter(s, &mut response, c);
    assert_eq!(std::mem::size_of_val(&*head), 0);
    head.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(allocations() - before, 0, "upstream_response_filter");

    let before = allocations();
    let answer = gw.response_filter(s, &mut response, c);
    assert_eq!(std::mem::size_of_val(&*answer), 0);
    answer.await.unwrap_or_else(|e| panic!("{e}"));
    // The id is a clone of the request's value (shared bytes) in a head with room for it.
    assert_eq!(allocations() - before, 0, "response_filter");
    assert_eq!(
        response.headers.get("x-request-id"),
        upstream_request.headers.get("x-request-id")
    );

    let log = gw.logging(s, None, c);
    assert_eq!(std::mem::size_of_val(&*log), 0);
    log.await;
    // The first request with a status makes the route's counter for it; later ones only count.
    let before = allocations();
    gw.logging(s, None, c).await;
    assert_eq!(allocations() - before, 0, "logging");

    let before = allocations();
    gw.early_request_filter(s, c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(allocations() - before, 0, "early_request_filter");
}

#[tokio::test(flavor = "current_thread")]
async fn a_refused_request_is_still_answered() {
    let gw = gateway(Vec::new());
    let (mut session, mut client) =
        session_after("GET /elsewhere HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let mut ctx = gw.new_ctx();
    let refused = gw.request_filter(&mut session, &mut ctx);
    assert_ne!(std::mem::size_of_val(&*refused), 0, "an answer to write");
    assert!(refused.await.unwrap_or_else(|e| panic!("{e}")), "answered");
    assert_eq!(ctx.route(), None);
    let answer = answer_written(session, &mut client).await;
    assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");
    assert!(answer.contains("no route matches"), "{answer}");
}

/// Marks what it sees: the request gets `x-ext-request`, the one sent upstream
/// `x-ext-upstream`, the response `x-ext-response`; `/api/stop` is answered with a 418.
struct Marker;

#[async_trait]
impl Extension for Marker {
    fn name(&self) -> &str {
        "marker"
    }

    async fn on_request(
        &self,
        req: &mut RequestHeader,
        _info: &RequestInfo<'_>,
        _ctx: &mut ExtContext,
    ) -> Decision {
        if req.uri.path() == "/api/stop" {
            return Decision::Respond {
                status: 418,
                headers: Vec::new(),
                body: bytes::Bytes::from_static(b"stopped"),
            };
        }
        let _ = req.insert_header("x-ext-request", "1");
        Decision::Continue
    }

    async fn on_upstream_request(
        &self,
        req: &mut RequestHeader,
        _info: &RequestInfo<'_>,
        _ctx: &mut ExtContext,
    ) -> pingora::Result<()> {
        req.insert_header("x-ext-upstream", "1")
    }

    async fn on_response(
        &self,
        resp: &mut ResponseHeader,
        _info: &RequestInfo<'_>,
        _ctx: &mut ExtContext,
    ) -> pingora::Result<()> {
        // Runs after the gateway's own `X-Request-ID`.
        let seen = resp.headers.contains_key("x-request-id").to_string();
        resp.insert_header("x-ext-response", seen)
    }
}

#[tokio::test(flavor = "current_thread")]
async fn extensions_still_run_in_every_hook() {
    let gw = gateway(vec![Arc::new(Marker)]);
    let (mut session, _client) = session_after("GET /api/x HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let mut ctx = gw.new_ctx();
    let (s, c) = (&mut session, &mut ctx);
    assert!(!gw
        .request_filter(s, c)
        .await
        .unwrap_or_else(|e| panic!("{e}")));
    assert!(s.req_header().headers.contains_key("x-ext-request"));
    let mut upstream_request = s.req_header().clone();
    gw.upstream_request_filter(s, &mut upstream_request, c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(upstream_request.headers.contains_key("x-ext-upstream"));
    assert!(upstream_request.headers.contains_key("x-forwarded-proto"));
    let mut response = ResponseHeader::build(200, None).unwrap_or_else(|e| panic!("{e}"));
    gw.response_filter(s, &mut response, c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.headers["x-ext-response"], "true");

    let (mut session, mut client) =
        session_after("GET /api/stop HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let mut ctx = gw.new_ctx();
    assert!(gw
        .request_filter(&mut session, &mut ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}")));
    let answer = answer_written(session, &mut client).await;
    assert!(answer.starts_with("HTTP/1.1 418 "), "{answer}");
}
