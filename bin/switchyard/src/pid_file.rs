//! The `[server] pid_file`: this process's PID, written once it owns its listening sockets.
//!
//! Pingora writes the file only when it daemonises, which Switchyard never does; the file is
//! what the graceful-upgrade procedure (`kill -QUIT $(cat pid_file)`) and systemd's `PIDFile=`
//! read. A process started with `-u` writes it after the old process handed its sockets over,
//! while the old process is still draining, so the file names the new process before the old
//! one exits (systemd then follows the main PID to it). It is replaced atomically (written
//! beside, then renamed) and left in place at exit: the old process of an upgrade exits after
//! the new one wrote its PID there, and must not remove it.

use std::io::Write;
use std::path::Path;

/// Writes `pid` followed by a newline to `path`, atomically.
pub fn write(path: &Path, pid: u32) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "switchyard.pid".to_string());
    let tmp = dir.join(format!(".{name}.{pid}.tmp"));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{pid}")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_pid_and_replaces_an_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.pid");
        std::fs::write(&path, "999999\n").unwrap();
        write(&path, 4242).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "4242\n");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }

    #[test]
    fn an_unwritable_place_is_an_error() {
        let err = write(Path::new("/nonexistent-dir/s.pid"), 1).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
}
