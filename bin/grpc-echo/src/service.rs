//! The echo service: four call shapes, steered by request metadata (see the crate docs).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_stream::{Stream, StreamExt};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Request, Response, Status, Streaming};

use crate::pb::echo_server::Echo;
use crate::pb::{EchoRequest, EchoResponse};
use crate::InFlight;

/// What an origin has seen.
#[derive(Debug, Default)]
pub struct Stats {
    /// Calls started.
    pub calls: AtomicU64,
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Calls not finished yet.
    pub in_flight: AtomicU64,
    /// The most calls in flight at once.
    pub max_in_flight: AtomicU64,
    /// Added to every call's `x-delay-ms` (a slow origin).
    pub delay_ms: AtomicU64,
    /// Every call fails with this gRPC status when non-zero (a failing origin).
    pub fail_code: AtomicU64,
    /// The `grpc-timeout` of the last call (`None`: it had none).
    pub last_grpc_timeout: Mutex<Option<String>>,
}

impl Stats {
    /// The `grpc-timeout` the last call arrived with.
    pub fn last_grpc_timeout(&self) -> Option<String> {
        self.last_grpc_timeout
            .lock()
            .map(|t| t.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The most calls this origin had in flight at once.
    pub fn max_in_flight(&self) -> u64 {
        self.max_in_flight.load(Ordering::SeqCst)
    }
}

/// The echo service of one origin.
#[derive(Debug, Clone)]
pub struct EchoService {
    label: String,
    stats: Arc<Stats>,
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<EchoResponse, Status>> + Send>>;

impl EchoService {
    /// A service answering as `label`, counting into `stats`.
    pub fn new(label: &str, stats: Arc<Stats>) -> Self {
        EchoService {
            label: label.to_string(),
            stats,
        }
    }

    fn reply(&self, message: String, payload: Vec<u8>, seq: u32) -> EchoResponse {
        EchoResponse {
            message,
            payload,
            server: self.label.clone(),
            seq,
        }
    }
}

/// Waits the origin's delay plus `x-delay-ms`, then fails with `x-fail-code` if asked.
async fn steer(stats: &Stats, md: &MetadataMap) -> Result<(), Status> {
    let timeout = md
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Ok(mut last) = stats.last_grpc_timeout.lock() {
        *last = timeout;
    }
    let ms = stats.delay_ms.load(Ordering::Relaxed) + number(md, "x-delay-ms").unwrap_or(0);
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let origin_code = Some(stats.fail_code.load(Ordering::Relaxed)).filter(|c| *c != 0);
    if let Some(code) = number(md, "x-fail-code").or(origin_code) {
        let message = md
            .get("x-fail-message")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("failed on purpose")
            .to_string();
        let code = Code::from_i32(i32::try_from(code).unwrap_or(2));
        let mut status = Status::new(code, message);
        copy_trailer(md, status.metadata_mut());
        return Err(status);
    }
    Ok(())
}

fn number(md: &MetadataMap, key: &str) -> Option<u64> {
    md.get(key)?.to_str().ok()?.parse().ok()
}

/// `x-echo-*` request metadata back as response metadata, plus `x-origin`.
fn answer<T>(label: &str, md: &MetadataMap, body: T) -> Response<T> {
    let mut resp = Response::new(body);
    for kv in md.iter() {
        if let tonic::metadata::KeyAndValueRef::Ascii(k, v) = kv {
            if k.as_str().starts_with("x-echo-") {
                resp.metadata_mut().insert(k.clone(), v.clone());
            }
        }
    }
    if let Ok(v) = MetadataValue::try_from(label) {
        resp.metadata_mut().insert("x-origin", v);
    }
    resp
}

/// `x-trailer: v` becomes trailer `x-trailer-echo: v`.
fn copy_trailer(md: &MetadataMap, into: &mut MetadataMap) {
    if let Some(v) = md.get("x-trailer") {
        into.insert("x-trailer-echo", v.clone());
    }
}

/// The final item of a stream that carries `x-trailer-echo` with an OK status, if asked.
fn ok_trailer(md: &MetadataMap) -> Option<Result<EchoResponse, Status>> {
    let v = md.get("x-trailer")?;
    let mut trailers = MetadataMap::new();
    trailers.insert("x-trailer-echo", v.clone());
    Some(Err(Status::with_metadata(Code::Ok, "", trailers)))
}

#[tonic::async_trait]
impl Echo for EchoService {
    async fn unary_echo(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<EchoResponse>, Status> {
        let _guard = InFlight::start(&self.stats);
        steer(&self.stats, request.metadata()).await?;
        let md = request.metadata().clone();
        let req = request.into_inner();
        Ok(answer(
            &self.label,
            &md,
            self.reply(req.message, req.payload, 0),
        ))
    }

    type ServerStreamingEchoStream = ResponseStream;

    async fn server_streaming_echo(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<ResponseStream>, Status> {
        let guard = InFlight::start(&self.stats);
        steer(&self.stats, request.metadata()).await?;
        let md = request.metadata().clone();
        let req = request.into_inner();
        let n = req.count.max(1);
        let me = self.clone();
        if let Some(gap) = number(&md, "x-gap-ms").filter(|ms| *ms > 0) {
            // A quiet stream: the messages come `gap` ms apart, from a task of their own.
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            let last = ok_trailer(&md);
            tokio::spawn(async move {
                let _guard = guard;
                for seq in 0..n {
                    if seq > 0 {
                        tokio::time::sleep(Duration::from_millis(gap)).await;
                    }
                    let reply = me.reply(req.message.clone(), req.payload.clone(), seq);
                    if tx.send(Ok(reply)).await.is_err() {
                        return;
                    }
                }
                if let Some(last) = last {
                    let _ = tx.send(last).await;
                }
            });
            let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
            return Ok(answer(&self.label, &md, Box::pin(stream) as ResponseStream));
        }
        let items = (0..n).map(move |seq| {
            let _ = &guard;
            Ok(me.reply(req.message.clone(), req.payload.clone(), seq))
        });
        let stream = tokio_stream::iter(items).chain(tokio_stream::iter(ok_trailer(&md)));
        Ok(answer(&self.label, &md, Box::pin(stream) as ResponseStream))
    }

    async fn client_streaming_echo(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<EchoResponse>, Status> {
        let _guard = InFlight::start(&self.stats);
        steer(&self.stats, request.metadata()).await?;
        let md = request.metadata().clone();
        let mut stream = request.into_inner();
        let mut messages = Vec::new();
        let mut payload = Vec::new();
        while let Some(req) = stream.next().await {
            let req = req?;
            messages.push(req.message);
            payload.extend_from_slice(&req.payload);
        }
        let count = u32::try_from(messages.len()).unwrap_or(u32::MAX);
        Ok(answer(
            &self.label,
            &md,
            self.reply(messages.join(","), payload, count),
        ))
    }

    type BidirectionalStreamingEchoStream = ResponseStream;

    async fn bidirectional_streaming_echo(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let guard = InFlight::start(&self.stats);
        steer(&self.stats, request.metadata()).await?;
        let md = request.metadata().clone();
        let inbound = request.into_inner();
        let me = self.clone();
        let mut seq = 0u32;
        let replies = inbound.map(move |item| {
            let _ = &guard;
            let req = item?;
            let r = me.reply(req.message, req.payload, seq);
            seq += 1;
            Ok(r)
        });
        let stream = replies.chain(tokio_stream::iter(ok_trailer(&md)));
        Ok(answer(&self.label, &md, Box::pin(stream) as ResponseStream))
    }
}
