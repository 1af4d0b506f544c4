//! The access log's writer thread: it takes the lines queued in the [`LineQueue`] every
//! [`FLUSH_PERIOD`] (sooner when much is waiting) and writes and flushes them as one batch, so
//! that a request never wakes it and the file sees one write per batch, not per line; a reopen
//! request (`SIGUSR1`) closes the file and opens the path again, for logrotate.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use super::line_queue::{LineQueue, FLUSH_PERIOD, QUEUE_BYTES, WAKE_BYTES};

/// Where lines go: written straight from the batch, which is already one large write (a
/// `BufWriter` would only copy it once more).
pub(crate) enum Sink {
    /// Standard output (`path = "-"`).
    Stdout(std::io::Stdout),
    /// A file, opened for appending.
    File {
        /// The configured path, opened again on reopen.
        path: PathBuf,
        out: File,
    },
}

impl Sink {
    /// Opens `path` (`-` is standard output) for appending.
    pub(crate) fn open(path: &str) -> std::io::Result<Sink> {
        if path == "-" {
            return Ok(Sink::Stdout(std::io::stdout()));
        }
        let path = PathBuf::from(path);
        let out = append(&path)?;
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
                *out = file;
                log::info!("access log {} reopened", path.display());
            }
            Err(e) => log::error!(
                "access log {}: cannot reopen, still writing to the old file: {e}",
                path.display()
            ),
        }
    }
}

fn append(path: &PathBuf) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Runs until `queue` is stopped: every [`FLUSH_PERIOD`] (sooner when much is waiting) takes the
/// queued lines and writes them in one call, then reopens the file if asked (the lines queued
/// before the request go to the old file). Returns once the last batch was written.
pub(crate) fn run(mut sink: Sink, queue: &LineQueue) {
    let mut batch = Vec::with_capacity(WAKE_BYTES);
    let mut failed = false;
    loop {
        batch.clear();
        let taken = queue.take(&mut batch, FLUSH_PERIOD);
        if !batch.is_empty() {
            let result = sink
                .writer()
                .write_all(&batch)
                .and_then(|()| sink.writer().flush());
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
        }
        if taken.reopen {
            sink.reopen();
        }
        if taken.stopping {
            break;
        }
        if batch.capacity() > 2 * QUEUE_BYTES {
            batch = Vec::with_capacity(WAKE_BYTES);
        }
    }
    let _ = sink.writer().flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn writes_flushes_and_reopens() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("a.log");
        let sink = Sink::open(&path.to_string_lossy()).unwrap_or_else(|e| panic!("{e}"));
        let queue = std::sync::Arc::new(LineQueue::default());
        let shared = std::sync::Arc::clone(&queue);
        let thread = std::thread::spawn(move || run(sink, &shared));
        let send = |s: &str| assert!(queue.push(s.as_bytes()));
        send("one\n");
        let deadline = Instant::now() + Duration::from_secs(2);
        while std::fs::read_to_string(&path).unwrap_or_default() != "one\n" {
            assert!(Instant::now() < deadline, "line not flushed within 2 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        let rotated = dir.path().join("a.log.1");
        std::fs::rename(&path, &rotated).unwrap_or_else(|e| panic!("{e}"));
        send("two\n");
        queue.reopen();
        // The writer writes what was queued before the reopen to the old file, then reopens.
        while !path.exists() {
            assert!(Instant::now() < deadline, "not reopened");
            std::thread::sleep(Duration::from_millis(10));
        }
        send("three\n");
        queue.stop();
        thread.join().unwrap_or_else(|_| panic!("writer panicked"));
        let old = std::fs::read_to_string(&rotated).unwrap_or_default();
        let new = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(old, "one\ntwo\n");
        assert_eq!(new, "three\n");
    }
}
