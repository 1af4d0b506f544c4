//! The access log: lines are formatted on the request path and handed to a writer thread
//! ([`super::log_writer`]) through a bounded channel; when it is full the line is dropped and
//! counted in `switchyard_access_log_dropped_total`, so a slow disk never blocks a request.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use switchyard_config::{AccessLogConfig, AccessLogFormat};
use switchyard_metrics::prometheus::IntCounter;

use super::log_writer::{self, Control, Sink};

/// Lines that may wait for the writer thread (about 4 MB at 500 bytes a line).
pub const QUEUE_LINES: usize = 8192;

/// A running access log.
#[derive(Debug)]
pub struct AccessLog {
    tx: SyncSender<Vec<u8>>,
    format: AccessLogFormat,
    dropped: IntCounter,
    control: Arc<Control>,
    /// The writer thread, joined on [`AccessLog::close`].
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl AccessLog {
    /// Opens the log's file (or standard output) and starts its writer thread; lines dropped
    /// for a full queue are counted in `dropped`.
    pub fn start(cfg: &AccessLogConfig, dropped: IntCounter) -> std::io::Result<AccessLog> {
        let sink = Sink::open(&cfg.path)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_LINES);
        let control = Arc::new(Control::default());
        let shared = Arc::clone(&control);
        let thread = std::thread::Builder::new()
            .name("access-log".to_string())
            .spawn(move || log_writer::run(sink, rx, &shared))?;
        Ok(AccessLog {
            tx,
            format: cfg.format,
            dropped,
            control,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The line format.
    #[inline]
    pub fn format(&self) -> AccessLogFormat {
        self.format
    }

    /// Queues one line (ending in `\n`); drops and counts it if the queue is full.
    #[inline]
    pub fn send(&self, line: Vec<u8>) {
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }

    /// Asks the writer to close and open the file again (`SIGUSR1`, after logrotate moved it).
    pub fn reopen(&self) {
        self.control.reopen.store(true, Ordering::Release);
    }

    /// Waits until the writer thread has written every queued line (at process exit). Lines
    /// sent afterwards are counted as dropped.
    pub fn close(&self) {
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            self.control.close.store(true, Ordering::Release);
            // Wakes the writer up; it writes what is queued before this, then stops.
            if self.tx.send(Vec::new()).is_ok() {
                let _ = thread.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts_lines_without_waiting() {
        let dropped =
            IntCounter::new("dropped_test", "dropped_test").unwrap_or_else(|e| panic!("{e}"));
        // No writer thread: the queue (of 4) only fills.
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        let log = AccessLog {
            tx,
            format: AccessLogFormat::Json,
            dropped: dropped.clone(),
            control: Arc::default(),
            thread: Mutex::new(None),
        };
        let started = std::time::Instant::now();
        for _ in 0..10 {
            log.send(b"line\n".to_vec());
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(dropped.get(), 6);
        assert_eq!(rx.try_iter().count(), 4);
        drop(rx);
        log.send(b"late\n".to_vec());
        assert_eq!(
            dropped.get(),
            7,
            "a line sent after the writer is gone is counted too"
        );
    }
}
