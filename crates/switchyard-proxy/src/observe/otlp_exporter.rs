//! The span exporter's thread: every [`PERIOD`] (sooner when [`span_queue::WAKE_AT`] spans are
//! waiting) it takes the queued spans (already protobuf), frames them as OTLP requests
//! ([`OtlpBatch`]) of at most [`EXPORT_SPANS`] spans and POSTs them to `otlp_endpoint` with `reqwest`'s blocking
//! client (`http` or `https`; rustls, with the platform's roots plus an optional CA file). A
//! failed export is counted in `switchyard_span_export_failures_total` and logged when exports
//! start or stop failing (not once per batch); spans dropped because the queue was full are
//! counted and logged too. Nothing here runs on a request thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use switchyard_metrics::prometheus::IntCounter;

use bytes::Bytes;

use super::otlp_batch::{chunks, OtlpBatch};
use super::span_queue::{self, SpanBytes, SpanQueue};

/// The longest spans wait in the queue (the SDK's `scheduled_delay` default was 5 s; the
/// gateway used 1 s).
const PERIOD: Duration = Duration::from_secs(1);
/// Spans per export request (the SDK's `max_export_batch_size` default is 512).
pub(crate) const EXPORT_SPANS: usize = 2048;
/// How long one export may take before it counts as failed.
pub(crate) const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how spans are sent.
pub(crate) struct Destination {
    pub(crate) endpoint: String,
    /// Failed exports (`switchyard_span_export_failures_total`).
    pub(crate) failures: IntCounter,
    /// Spans dropped by a full queue.
    pub(crate) dropped: IntCounter,
}

/// A running exporter thread.
#[derive(Debug)]
pub(crate) struct ExporterThread {
    handle: Option<JoinHandle<()>>,
    done: Arc<AtomicBool>,
}

impl ExporterThread {
    /// Starts the thread that exports what `queue` receives, framed by `otlp`. The
    /// HTTP client is built by `client` on that thread (reqwest's blocking client must not be
    /// built or dropped inside an async runtime); its error is returned here.
    pub(crate) fn start(
        queue: Arc<SpanQueue>,
        dest: Destination,
        otlp: OtlpBatch,
        client: impl FnOnce() -> Result<reqwest::blocking::Client, String> + Send + 'static,
    ) -> Result<ExporterThread, String> {
        let done = Arc::new(AtomicBool::new(false));
        let finished = Arc::clone(&done);
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Result<(), String>>(1);
        let handle = std::thread::Builder::new()
            .name("span-exporter".to_string())
            .spawn(move || {
                let client = match client() {
                    Ok(c) => {
                        let _ = ready_tx.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        finished.store(true, Ordering::Release);
                        return;
                    }
                };
                run(&queue, &dest, &client, &otlp);
                finished.store(true, Ordering::Release);
            })
            .map_err(|e| format!("cannot start the span exporter's thread: {e}"))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(ExporterThread {
                handle: Some(handle),
                done,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("the span exporter's thread ended at start".to_string()),
        }
    }

    /// Waits up to `timeout` for the thread to export its last batch and stop (the queue must
    /// have been stopped).
    pub(crate) fn join(&mut self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while !self.done.load(Ordering::Acquire) {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        true
    }
}

fn run(
    queue: &SpanQueue,
    dest: &Destination,
    client: &reqwest::blocking::Client,
    otlp: &OtlpBatch,
) {
    let room = otlp.header_room();
    let mut batch = SpanBytes::new(room, span_queue::BATCH_BYTES);
    let mut failing = false;
    loop {
        batch.clear();
        let last = queue.take(&mut batch, PERIOD);
        let dropped = queue.take_dropped();
        if dropped > 0 {
            dest.dropped.inc_by(dropped);
            log::warn!(
                "tracing: {dropped} span(s) dropped: the export queue is full \
                 ({} spans; counted in switchyard_spans_dropped_total)",
                span_queue::QUEUE_SPANS
            );
        }
        let mut bodies = Vec::new();
        let spans_len = batch.spans().len();
        let in_place = (batch.spans > 0 && batch.spans <= EXPORT_SPANS)
            .then(|| otlp.frame_in_place(&mut batch.bytes, room, spans_len))
            .flatten();
        if let Some(start) = in_place {
            // One request, framed in the room before the spans and sent from where the request
            // threads wrote them: the buffer goes with it, a new one takes its place.
            let whole =
                std::mem::replace(&mut batch, SpanBytes::new(room, span_queue::BATCH_BYTES));
            bodies.push((Bytes::from(whole.bytes).slice(start..), whole.spans));
        } else {
            // A backlog: requests of at most EXPORT_SPANS spans, each copied out.
            for (spans, n) in chunks(batch.spans(), EXPORT_SPANS) {
                let mut body = Vec::new();
                otlp.encode(spans, &mut body);
                bodies.push((Bytes::from(body), n));
            }
        }
        for (body, n) in bodies {
            let result = post(client, &dest.endpoint, body);
            match result {
                Err(e) => {
                    dest.failures.inc();
                    if !failing {
                        log::warn!(
                            "tracing: cannot export {} span(s) to {}: {e} \
                             (counted in switchyard_span_export_failures_total)",
                            n,
                            dest.endpoint
                        );
                    }
                    failing = true;
                }
                Ok(()) => {
                    if failing {
                        log::info!("tracing: exporting to {} again", dest.endpoint);
                    }
                    failing = false;
                }
            }
        }
        if last {
            return;
        }
    }
}

/// One OTLP/HTTP export: `POST` of the protobuf body; any 2xx answer is a success.
fn post(client: &reqwest::blocking::Client, endpoint: &str, body: Bytes) -> Result<(), String> {
    let response = client
        .post(endpoint)
        .header(http::header::CONTENT_TYPE, "application/x-protobuf")
        .body(body)
        .send()
        .map_err(|e| error_chain(&e))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the collector answered {status}"))
    }
}

/// An error and its causes, `: `-separated (reqwest's own message is only the outer layer).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
