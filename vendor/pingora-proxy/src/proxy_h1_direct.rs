// Copyright 2026 Cloudflare, Inc.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
// http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

//! The direct HTTP/1 -> HTTP/1 path for a request without a body.
//!
//! [`HttpProxy::proxy_1to1`] runs every request as two halves joined by a pair of task channels:
//! one half reads the downstream body and writes the response, the other writes the upstream
//! body and reads the response. A downstream HTTP/1 request that has no body to forward, is not
//! an upgrade, expects no `100 Continue` and is not cached needs no such duplex: its (empty)
//! request body is filtered and finished upstream, then the response is read and forwarded task
//! by task, in the same task, with the same filters, in the same order, and with the same error
//! and reuse decisions. While it waits on the upstream it still watches the downstream
//! connection (the same idle probe as the piped path), so a client that closes early still
//! aborts the request.

use super::*;
use crate::proxy_cache::range_filter::RangeBodyFilter;
use crate::proxy_cache::ServeFromCache;
use crate::proxy_h1::send_body_to1;

/// Whether the request can take the direct path: a downstream HTTP/1 request with no body to
/// forward (no `Content-Length` > 0, no `Transfer-Encoding`), not an upgrade on either side,
/// without `Expect` (a `100 Continue` exchange), with the cache neither enabled nor bypassed.
/// Everything else takes the piped path of [`HttpProxy::proxy_1to1`].
pub(crate) fn direct_h1_eligible(session: &mut Session, upstream_is_upgrade: bool) -> bool {
    #[cfg(test)]
    if tests::PIPED_ONLY.with(|p| p.get()) {
        return false;
    }
    if upstream_is_upgrade || session.cache.enabled() || session.cache.bypassing() {
        return false;
    }
    let downstream = session.as_mut();
    if !matches!(downstream, HttpSession::H1(_)) || downstream.is_upgrade_req() {
        return false;
    }
    if downstream
        .req_header()
        .headers
        .contains_key(http::header::EXPECT)
    {
        return false;
    }
    downstream.is_body_empty() && downstream.is_body_done()
}

impl<SV, C> HttpProxy<SV, C>
where
    C: custom::Connector,
{
    /// Proxies a request [`direct_h1_eligible`] accepted, after its header was written upstream.
    /// Returns what [`HttpProxy::proxy_1to1`] returns: (downstream reusable, upstream reusable,
    /// error).
    pub(crate) async fn proxy_1to1_direct(
        &self,
        session: &mut Session,
        client_session: &mut HttpSessionV1,
        ctx: &mut SV::CTX,
    ) -> (bool, bool, Option<Box<Error>>)
    where
        SV: ProxyHttp + Send + Sync,
        SV::CTX: Send + Sync,
    {
        #[cfg(test)]
        tests::DIRECT_RUNS.with(|n| n.set(n.get() + 1));
        session.as_mut().enable_retry_buffering();

        // The request "body": its filters run as on the piped path (they may still add data),
        // and the upstream body is finished. A failure to write it is remembered, as on the
        // piped path: the response is still read, the connection is not reused, and a failed
        // response read reports the write error.
        let buffer = session.as_ref().get_retry_buffer();
        let end_of_body = session.as_mut().is_body_done();
        let mut upstream_can_reuse = true;
        let mut send_error = None;
        match self
            .filter_request_body(session, buffer, end_of_body, ctx)
            .await
        {
            Ok((Some(task), _)) => {
                if let Err(e) = send_body_to1(client_session, Some(task)).await {
                    warn!("send error, draining read buf: {e}");
                    upstream_can_reuse = false;
                    send_error = Some(e);
                }
            }
            Ok((None, _)) => {}
            Err(e) => return (false, false, Some(e)),
        }

        let mut serve_from_cache = ServeFromCache::new();
        let mut range_body_filter = RangeBodyFilter::new();
        let mut watch_downstream = true;

        loop {
            // Wait on the upstream; while it has nothing, watch the downstream connection like
            // the piped path's idle read (a client that closes aborts the request).
            let read = tokio::select! {
                biased;
                res = client_session.read_response_task() => Some(res),
                idle = session.downstream_session.read_body_or_idle(true), if watch_downstream => {
                    match idle {
                        Err(e) => return (false, false, Some(e.into_down())),
                        // Not expected once the body is done; stop watching rather than spin.
                        Ok(_) => watch_downstream = false,
                    }
                    None
                }
            };
            let Some(res) = read else { continue };

            let (task, upstream_done) = match res {
                Ok(task) => {
                    let done = task.is_end();
                    (task, done)
                }
                // The response's framing is lost: the connection cannot be reused. The error
                // goes through the same filters and downstream write as on the piped path.
                Err(e) => (
                    HttpTask::Failed(send_error.take().unwrap_or(e).into_up()),
                    true,
                ),
            };
            let failed = matches!(task, HttpTask::Failed(_));

            let response_done = match self
                .forward_upstream_task(
                    session,
                    ctx,
                    task,
                    &mut serve_from_cache,
                    &mut range_body_filter,
                )
                .await
            {
                Ok(done) => done,
                Err(e) => return (false, false, Some(e)),
            };
            if failed {
                // Not reached (a failed task is an error downstream); never reuse after it.
                return (false, false, None);
            }
            if response_done || upstream_done {
                // Downstream done before the upstream's end: unread bytes stay upstream.
                upstream_can_reuse &= upstream_done;
                break;
            }
        }

        let mut reuse_downstream = true;
        match session.as_mut().finish_body().await {
            Ok(_) => debug!("finished sending body to downstream"),
            Err(e) => {
                error!("Error finish sending body to downstream: {}", e);
                reuse_downstream = false;
            }
        }
        (reuse_downstream, upstream_can_reuse, None)
    }

    /// One upstream task through the piped path's response filters (`process_upstream_tasks`
    /// without the cache, which the direct path does not take), then written downstream.
    /// Returns whether the downstream response is done.
    async fn forward_upstream_task(
        &self,
        session: &mut Session,
        ctx: &mut SV::CTX,
        #[allow(unused_mut)] mut task: HttpTask,
        serve_from_cache: &mut ServeFromCache,
        range_body_filter: &mut RangeBodyFilter,
    ) -> Result<bool>
    where
        SV: ProxyHttp + Send + Sync,
        SV::CTX: Send + Sync,
    {
        #[cfg(feature = "upstream_modules")]
        if let HttpTask::Header(header, end_of_stream) = &task {
            self.inner
                .adjust_upstream_modules(session, header, *end_of_stream, ctx)
                .await?;
        }
        #[cfg(feature = "upstream_modules")]
        session.upstream_modules_filter_task(&mut task).await?;
        session.upstream_compression.response_filter(&mut task);
        let task = self
            .h1_response_filter(
                session,
                task,
                ctx,
                serve_from_cache,
                range_body_filter,
                false,
            )
            .await?;
        session.write_response_task(task).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::sync::{Arc, Mutex};

    thread_local! {
        /// Set by a test to send every request through the piped path (the oracle).
        pub(crate) static PIPED_ONLY: Cell<bool> = const { Cell::new(false) };
        /// How many requests took the direct path on this thread.
        pub(crate) static DIRECT_RUNS: Cell<usize> = const { Cell::new(0) };
    }

    async fn eligible(request: &str, upstream_is_upgrade: bool) -> bool {
        let written = Arc::new(Mutex::new(Vec::new()));
        let mut session = crate::tests::new_request_session(request.as_bytes(), written).await;
        direct_h1_eligible(&mut session, upstream_is_upgrade)
    }

    #[tokio::test]
    async fn requests_without_a_body_take_the_direct_path() {
        for req in [
            "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
            "DELETE /x HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.0\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        ] {
            assert!(eligible(req, false).await, "{req:?}");
        }
    }

    #[tokio::test]
    async fn requests_with_a_body_upgrade_or_expect_take_the_piped_path() {
        for req in [
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
        ] {
            assert!(!eligible(req, false).await, "{req:?}");
        }
        // A request a filter turned into an upgrade upstream.
        assert!(!eligible("GET / HTTP/1.1\r\nHost: a\r\n\r\n", true).await);
    }
}

#[cfg(test)]
mod oracle_tests {
    //! Every scenario runs twice over real loopback sockets, once on the direct path and once on
    //! the piped path (the oracle): the bytes the client and the origin receive, the reuse
    //! decisions, the error and the order of the hooks called must be the same.

    use super::tests::{DIRECT_RUNS, PIPED_ONLY};
    use super::*;
    use pingora_core::protocols::l4::stream::Stream as L4Stream;
    use pingora_core::server::configuration::ServerConf;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    const WAIT: Duration = Duration::from_secs(3);

    /// Records every hook call in the context and changes what it may: the body is upper-cased
    /// by `response_body_filter`, both header filters add a field.
    struct Filters;

    #[async_trait]
    impl ProxyHttp for Filters {
        type CTX = Vec<String>;

        fn new_ctx(&self) -> Self::CTX {
            Vec::new()
        }

        async fn upstream_peer(
            &self,
            _session: &mut Session,
            _ctx: &mut Self::CTX,
        ) -> Result<Box<HttpPeer>> {
            unreachable!("the test calls proxy_1to1 directly")
        }

        async fn request_body_filter(
            &self,
            _session: &mut Session,
            body: &mut Option<Bytes>,
            end_of_stream: bool,
            ctx: &mut Self::CTX,
        ) -> Result<()> {
            ctx.push(format!("request_body {body:?} {end_of_stream}"));
            Ok(())
        }

        async fn upstream_response_filter(
            &self,
            _session: &mut Session,
            resp: &mut ResponseHeader,
            ctx: &mut Self::CTX,
        ) -> Result<()> {
            ctx.push(format!("upstream_response {}", resp.status.as_u16()));
            resp.insert_header("x-upstream-filter", "1")
        }

        fn upstream_response_body_filter(
            &self,
            _session: &mut Session,
            body: &mut Option<Bytes>,
            end_of_stream: bool,
            ctx: &mut Self::CTX,
        ) -> Result<Option<Duration>> {
            ctx.push(format!("upstream_body {body:?} {end_of_stream}"));
            Ok(None)
        }

        async fn response_filter(
            &self,
            _session: &mut Session,
            resp: &mut ResponseHeader,
            ctx: &mut Self::CTX,
        ) -> Result<()> {
            ctx.push(format!("response {}", resp.status.as_u16()));
            resp.insert_header("x-response-filter", "1")
        }

        fn response_body_filter(
            &self,
            _session: &mut Session,
            body: &mut Option<Bytes>,
            end_of_stream: bool,
            ctx: &mut Self::CTX,
        ) -> Result<Option<Duration>> {
            ctx.push(format!("response_body {body:?} {end_of_stream}"));
            if let Some(b) = body.as_mut() {
                *b = Bytes::from(b.to_ascii_uppercase());
            }
            Ok(None)
        }
    }

    /// What the origin writes: pieces, each after a pause, then a close or not.
    struct Script {
        pieces: Vec<(u64, &'static str)>,
        close: bool,
    }

    /// What one run produced.
    #[derive(Debug, PartialEq)]
    struct Outcome {
        client_got: String,
        origin_got: String,
        reuse: (bool, bool),
        error: Option<String>,
        hooks: Vec<String>,
    }

    async fn read_for(stream: &mut TcpStream, limit: Duration, stop_at_head: bool) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if stop_at_head && got.windows(4).any(|w| w == b"\r\n\r\n") {
                return got;
            }
            match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => return got,
            }
        }
    }

    /// Origin: reads one request head, answers with the script, then reads what else comes
    /// for a moment (nothing may) unless it closes.
    async fn origin(listener: TcpListener, script: Script) -> Vec<u8> {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = read_for(&mut s, WAIT, true).await;
        for (pause, bytes) in script.pieces {
            tokio::time::sleep(Duration::from_millis(pause)).await;
            if s.write_all(bytes.as_bytes()).await.is_err() {
                return got;
            }
        }
        if !script.close {
            got.extend(read_for(&mut s, Duration::from_millis(100), false).await);
        }
        got
    }

    /// One run; also returns how many times the direct path ran (0 or 1).
    async fn run(
        request: &'static str,
        script: Script,
        client_fin: bool,
        piped: bool,
    ) -> (Outcome, usize) {
        PIPED_ONLY.with(|p| p.set(piped));
        let before = DIRECT_RUNS.with(|n| n.get());

        let up = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up_addr: SocketAddr = up.local_addr().unwrap();
        let origin = tokio::spawn(origin(up, script));

        let down = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let down_addr = down.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut c = TcpStream::connect(down_addr).await.unwrap();
            c.write_all(request.as_bytes()).await.unwrap();
            if client_fin {
                c.shutdown().await.unwrap();
            }
            read_for(&mut c, WAIT, false).await
        });

        let (d, _) = down.accept().await.unwrap();
        let mut session = Session::new_h1(Box::new(L4Stream::from(d)));
        assert!(session.read_request().await.unwrap());
        let u = TcpStream::connect(up_addr).await.unwrap();
        let mut upstream = HttpSessionV1::new(Box::new(L4Stream::from(u)));
        let mut peer = HttpPeer::new(up_addr, false, String::new());
        peer.options.read_timeout = Some(WAIT);

        let proxy = HttpProxy::new(Filters, Arc::new(ServerConf::default()));
        let mut ctx = Vec::new();
        let (reuse_down, reuse_up, error) = proxy
            .proxy_1to1(&mut session, &mut upstream, &peer, &mut ctx)
            .await;
        drop(session);
        drop(upstream);

        let direct_runs = DIRECT_RUNS.with(|n| n.get()) - before;
        PIPED_ONLY.with(|p| p.set(false));
        let outcome = Outcome {
            // The `Date` field is the only part that may differ between two runs.
            client_got: String::from_utf8_lossy(&client.await.unwrap())
                .split_inclusive("\r\n")
                .filter(|line| !line.starts_with("Date: "))
                .collect(),
            origin_got: String::from_utf8_lossy(&origin.await.unwrap()).into_owned(),
            reuse: (reuse_down, reuse_up),
            error: error.map(|e| format!("{:?} {:?} retry={:?}", e.etype(), e.esource(), e.retry)),
            hooks: ctx,
        };
        (outcome, direct_runs)
    }

    /// Runs the scenario on both paths, checks they agree and returns the direct one.
    async fn both(request: &'static str, script: impl Fn() -> Script, client_fin: bool) -> Outcome {
        let (direct, runs) = run(request, script(), client_fin, false).await;
        assert_eq!(runs, 1, "{request:?} did not take the direct path");
        let (piped, runs) = run(request, script(), client_fin, true).await;
        assert_eq!(runs, 0);
        assert_eq!(direct, piped, "direct path vs piped path for {request:?}");
        direct
    }

    const GET: &str = "GET /a HTTP/1.1\r\nHost: o\r\n\r\n";

    fn answer(pieces: Vec<(u64, &'static str)>, close: bool) -> Script {
        Script { pieces, close }
    }

    #[tokio::test]
    async fn content_length_response_is_filtered_and_both_sides_reusable() {
        let o = both(
            GET,
            || {
                answer(
                    vec![(0, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")],
                    false,
                )
            },
            false,
        )
        .await;
        assert_eq!(o.reuse, (true, true));
        assert_eq!(o.error, None);
        assert!(o.client_got.starts_with("HTTP/1.1 200 OK\r\n"), "{o:?}");
        assert!(o.client_got.ends_with("\r\n\r\nHELLO"), "{o:?}");
        assert!(o.client_got.contains("x-upstream-filter: 1\r\n"), "{o:?}");
        assert!(o.client_got.contains("x-response-filter: 1\r\n"), "{o:?}");
        assert_eq!(o.origin_got, "GET /a HTTP/1.1\r\nHost: o\r\n\r\n");
        assert_eq!(
            o.hooks,
            [
                "request_body None true",
                "upstream_response 200",
                "response 200",
                "upstream_body Some(b\"hello\") true",
                "response_body Some(b\"hello\") true",
            ]
        );
    }

    #[tokio::test]
    async fn chunked_response_in_pieces() {
        let o = both(
            GET,
            || {
                answer(
                    vec![
                        (0, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
                        (30, "5\r\nhello\r\n"),
                        (30, "6\r\n world\r\n0\r\n\r\n"),
                    ],
                    false,
                )
            },
            false,
        )
        .await;
        assert_eq!(o.reuse, (true, true));
        assert!(
            o.client_got.contains("Transfer-Encoding: chunked\r\n"),
            "{o:?}"
        );
        assert!(
            o.client_got
                .ends_with("\r\n\r\n5\r\nHELLO\r\n6\r\n WORLD\r\n0\r\n\r\n"),
            "{o:?}"
        );
    }

    #[tokio::test]
    async fn close_delimited_response_is_chunked_downstream() {
        let o = both(
            GET,
            || {
                answer(
                    vec![(0, "HTTP/1.1 200 OK\r\n\r\nhello"), (30, " world")],
                    true,
                )
            },
            false,
        )
        .await;
        assert_eq!(o.error, None);
        assert!(o.reuse.0, "the client connection stays usable: {o:?}");
        assert!(
            o.client_got
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked\r\n"),
            "{o:?}"
        );
        assert!(
            o.client_got
                .ends_with("5\r\nHELLO\r\n6\r\n WORLD\r\n0\r\n\r\n"),
            "{o:?}"
        );
    }

    #[tokio::test]
    async fn head_304_204_and_1xx_have_no_body() {
        let o = both(
            "HEAD /a HTTP/1.1\r\nHost: o\r\n\r\n",
            || {
                answer(
                    vec![(0, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")],
                    false,
                )
            },
            false,
        )
        .await;
        assert_eq!(o.reuse, (true, true));
        assert!(
            o.client_got.contains("Content-Length: 5\r\n")
                && o.client_got.contains("x-response-filter: 1\r\n")
                && o.client_got.ends_with("\r\n\r\n"),
            "{o:?}"
        );
        for status in ["304 Not Modified", "204 No Content"] {
            let o = both(
                GET,
                || {
                    answer(
                        vec![(
                            0,
                            if status.starts_with("304") {
                                "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n"
                            } else {
                                "HTTP/1.1 204 No Content\r\n\r\n"
                            },
                        )],
                        false,
                    )
                },
                false,
            )
            .await;
            assert_eq!(o.reuse, (true, true), "{status}");
            assert!(
                o.client_got.starts_with(&format!("HTTP/1.1 {status}\r\n")),
                "{o:?}"
            );
            assert!(o.client_got.ends_with("\r\n\r\n"), "{o:?}");
        }
        let o = both(
            GET,
            || {
                answer(
                    vec![
                        (0, "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"),
                        (30, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
                    ],
                    false,
                )
            },
            false,
        )
        .await;
        assert_eq!(o.error, None);
        assert!(o.client_got.ends_with("\r\n\r\nOK"), "{o:?}");
    }

    #[tokio::test]
    async fn upstream_failures_are_the_same_errors() {
        // Closed before the response head: nothing was sent downstream.
        let o = both(GET, || answer(vec![], true), false).await;
        assert_eq!(o.reuse, (false, false));
        assert!(o.error.is_some(), "{o:?}");
        assert_eq!(o.client_got, "", "{o:?}");
        // Closed mid-body.
        let o = both(
            GET,
            || {
                answer(
                    vec![(0, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")],
                    true,
                )
            },
            false,
        )
        .await;
        assert_eq!(o.reuse, (false, false));
        assert!(o.error.is_some(), "{o:?}");
    }

    #[tokio::test]
    async fn a_client_that_closes_while_waiting_aborts_the_request() {
        let o = both(
            GET,
            || {
                answer(
                    vec![(300, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")],
                    false,
                )
            },
            true,
        )
        .await;
        assert_eq!(o.reuse, (false, false));
        let error = o.error.unwrap_or_default();
        assert!(error.starts_with("ConnectionClosed Downstream"), "{error}");
    }

    #[tokio::test]
    async fn a_request_with_a_body_takes_the_piped_path() {
        let request = "POST /a HTTP/1.1\r\nHost: o\r\nContent-Length: 5\r\n\r\nhello";
        let script = answer(
            vec![(0, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")],
            false,
        );
        let (o, direct_runs) = run(request, script, false, false).await;
        assert_eq!(direct_runs, 0, "a request with a body took the direct path");
        assert_eq!(o.origin_got, request);
        assert_eq!(o.reuse, (true, true));
    }
}
