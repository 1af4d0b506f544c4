//! The access log's writer thread: lines arrive through a bounded channel, are written through a
//! buffer and flushed as soon as the channel is empty (so within a second under any load), in
//! batches at most [`BATCH_WAIT`] apart, so that a busy log never has a request thread wake the
//! writer; a reopen request (`SIGUSR1`) closes the file and opens the path again, for logrotate.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

/// Where lines go.
pub(crate) enum Sink {
    /// Standard output (`path = "-"`).
    Stdout(BufWriter<std::io::Stdout>),
    /// A file, opened for appending.
    File {
        /// The configured path, opened again on reopen.
        path: PathBuf,
        out: BufWriter<File>,
    },
}

impl Sink {
    /// Opens `path` (`-` is standard output) for appending.
    pub(crate) fn open(path: &str) -> std::io::Result<Sink> {
        if path == "-" {
            return Ok(Sink::Stdout(BufWriter::with_capacity(
                BUFFER,
                std::io::stdout(),
            )));
        }
        let path = PathBuf::from(path);
        let out = BufWriter::with_capacity(BUFFER, append(&path)?);
        Ok(Sink::File { path, out })
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Sink::Stdout(w) => w,
            Sink::File { out, .. } => out,
        }
    }

    /// Flushes and opens the file again (a no-op for standard output). On failure the old file
    /// is kept.
    fn reopen(&mut self) {
        let Sink::File { path, out } = self else {
            return;
        };
        if let Err(e) = out.flush() {
            log::error!("access log {}: write failed: {e}", path.display());
        }
        match append(path) {
            Ok(file) => {
                *out = BufWriter::with_capacity(BUFFER, file);
                log::info!("access log {} reopened", path.display());
            }
            Err(e) => log::error!(
                "access log {}: cannot reopen, still writing to the old file: {e}",
                path.display()
            ),
        }
    }
}

/// The write buffer's size.
const BUFFER: usize = 64 * 1024;
/// How long the thread waits for a line before looking at the reopen flag again.
const IDLE_WAIT: Duration = Duration::from_millis(200);
/// How long the thread sleeps after writing a batch before it looks for more lines: the longest
/// a line waits before it is written (besides the write itself).
const BATCH_WAIT: Duration = Duration::from_millis(5);
/// The longest a line may wait in the buffer under continuous load.
const MAX_FLUSH_DELAY: Duration = Duration::from_millis(500);

fn append(path: &PathBuf) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// What the gateway asks of the writer thread besides lines.
#[derive(Debug, Default)]
pub(crate) struct Control {
    /// Reopen the file before the next write (`SIGUSR1`).
    pub(crate) reopen: AtomicBool,
    /// Stop once the queue is empty (process exit).
    pub(crate) close: AtomicBool,
}

/// Runs until every sender is gone or `control.close` is set: writes the lines of `rx` to
/// `sink`, reopening it whenever `control.reopen` is set. Returns once the last line was
/// flushed.
pub(crate) fn run(mut sink: Sink, rx: Receiver<Vec<u8>>, control: &Control) {
    let mut failed = false;
    loop {
        if control.reopen.swap(false, Ordering::AcqRel) {
            // Lines queued before the request still go to the old file.
            while let Ok(line) = rx.try_recv() {
                if sink.writer().write_all(&line).is_err() {
                    break;
                }
            }
            sink.reopen();
        }
        // Lines queued while the thread slept after its last batch are taken without blocking;
        // only an empty queue makes it block, and only then does a request's line wake it.
        let first = match rx.try_recv() {
            Ok(line) => line,
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => match rx.recv_timeout(IDLE_WAIT) {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            },
        };
        let since = Instant::now();
        let mut result = sink.writer().write_all(&first);
        // Take whatever else is queued, then flush: a quiet log is flushed line by line, a busy
        // one in buffer-sized writes, at least every MAX_FLUSH_DELAY.
        while result.is_ok() && since.elapsed() < MAX_FLUSH_DELAY {
            match rx.try_recv() {
                Ok(line) => result = sink.writer().write_all(&line),
                Err(_) => break,
            }
        }
        let result = result.and_then(|()| sink.writer().flush());
        match (result, failed) {
            (Err(e), false) => {
                log::error!("access log: write failed: {e}");
                failed = true;
            }
            (Ok(()), true) => {
                log::info!("access log: writing again");
                failed = false;
            }
            _ => {}
        }
        if control.close.load(Ordering::Acquire) {
            // Whatever is still queued, then stop.
            while let Ok(line) = rx.try_recv() {
                if sink.writer().write_all(&line).is_err() {
                    break;
                }
            }
            break;
        }
        // Lets the next lines gather: while the thread sleeps (not blocked on the channel),
        // queueing a line is a lock-free store, with no wake-up to pay on the request path.
        std::thread::sleep(BATCH_WAIT);
    }
    let _ = sink.writer().flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_flushes_and_reopens() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("a.log");
        let sink = Sink::open(&path.to_string_lossy()).unwrap_or_else(|e| panic!("{e}"));
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        let control = std::sync::Arc::new(Control::default());
        let shared = std::sync::Arc::clone(&control);
        let thread = std::thread::spawn(move || run(sink, rx, &shared));
        let send = |s: &str| {
            tx.send(s.as_bytes().to_vec())
                .unwrap_or_else(|e| panic!("{e}"))
        };
        send("one\n");
        let deadline = Instant::now() + Duration::from_secs(2);
        while std::fs::read_to_string(&path).unwrap_or_default() != "one\n" {
            assert!(Instant::now() < deadline, "line not flushed within 2 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        let rotated = dir.path().join("a.log.1");
        std::fs::rename(&path, &rotated).unwrap_or_else(|e| panic!("{e}"));
        send("two\n");
        control.reopen.store(true, Ordering::Release);
        // Wait for the writer to reopen (it checks before every batch).
        while !path.exists() {
            assert!(Instant::now() < deadline, "not reopened");
            send("");
            std::thread::sleep(Duration::from_millis(10));
        }
        send("three\n");
        drop(tx);
        thread.join().unwrap_or_else(|_| panic!("writer panicked"));
        let old = std::fs::read_to_string(&rotated).unwrap_or_default();
        let new = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(format!("{old}{new}"), "one\ntwo\nthree\n");
        assert_eq!(new, "three\n");
    }
}
