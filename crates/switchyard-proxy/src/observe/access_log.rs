//! The access log: a request's line is formatted straight into a bounded byte queue ([`super::line_queue`]) that a writer thread ([`super::log_writer`]) writes
//! out in batches; when the queue is full the line is dropped and counted in
//! `switchyard_access_log_dropped_total`, so a slow disk never blocks a request.

use std::sync::{Arc, Mutex};

use switchyard_config::{AccessLogConfig, AccessLogFormat};
use switchyard_metrics::prometheus::IntCounter;

use super::line_queue::LineQueue;
use super::log_writer::{self, Sink};

/// A running access log.
#[derive(Debug)]
pub struct AccessLog {
    queue: Arc<LineQueue>,
    format: AccessLogFormat,
    dropped: IntCounter,
    /// The writer thread, joined on [`AccessLog::close`].
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl AccessLog {
    /// Opens the log's file (or standard output) and starts its writer thread; lines dropped
    /// for a full queue are counted in `dropped`.
    pub fn start(cfg: &AccessLogConfig, dropped: IntCounter) -> std::io::Result<AccessLog> {
        let sink = Sink::open(&cfg.path)?;
        let queue = Arc::new(LineQueue::default());
        let shared = Arc::clone(&queue);
        let thread = std::thread::Builder::new()
            .name("access-log".to_string())
            .spawn(move || log_writer::run(sink, &shared))?;
        Ok(AccessLog {
            queue,
            format: cfg.format,
            dropped,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The line format.
    #[inline]
    pub fn format(&self) -> AccessLogFormat {
        self.format
    }

    /// Queues the line `fill` writes (ending in `\n`), formatted straight into the queue; drops
    /// and counts it if the queue is full.
    #[inline]
    pub fn write(&self, fill: impl FnOnce(&mut Vec<u8>)) {
        if !self.queue.push_with(fill) {
            self.dropped.inc();
        }
    }

    /// Queues one line (ending in `\n`); drops and counts it if the queue is full.
    pub fn send(&self, line: Vec<u8>) {
        if !self.queue.push(&line) {
            self.dropped.inc();
        }
    }

    /// Asks the writer to close and open the file again (`SIGUSR1`, after logrotate moved it).
    pub fn reopen(&self) {
        self.queue.reopen();
    }

    /// Waits until the writer thread has written every queued line (at process exit). Lines
    /// sent afterwards are counted as dropped.
    pub fn close(&self) {
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        self.queue.stop();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl Drop for AccessLog {
    /// A log replaced by a reload: its thread writes what is queued, then stops.
    fn drop(&mut self) {
        self.queue.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts_lines_without_waiting() {
        let dropped =
            IntCounter::new("dropped_test", "dropped_test").unwrap_or_else(|e| panic!("{e}"));
        // No writer thread: the queue only fills.
        let log = AccessLog {
            queue: Arc::default(),
            format: AccessLogFormat::Json,
            dropped: dropped.clone(),
            thread: Mutex::new(None),
        };
        let line = vec![b'x'; super::super::line_queue::QUEUE_BYTES / 4];
        let started = std::time::Instant::now();
        for _ in 0..10 {
            log.write(|out| out.extend_from_slice(&line));
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(dropped.get(), 6);
        log.close();
        log.send(b"late\n".to_vec());
        assert_eq!(
            dropped.get(),
            7,
            "a line sent after the log is closed is counted too"
        );
    }
}
