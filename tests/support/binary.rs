//! Locating (and rebuilding when stale) the `switchyard` binary and its examples; one-shot command lines.

use super::*;

/// The workspace root (this package's manifest directory).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>` of the running test binary (tests run from `target/<profile>/deps/`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().unwrap().to_path_buf()
    } else {
        deps.to_path_buf()
    }
}

fn newest_mtime(dir: &Path, newest: &mut SystemTime, budget: &mut usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let path = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            newest_mtime(&path, newest, budget);
        } else if name.ends_with(".rs") || name == "Cargo.toml" {
            if let Ok(m) = meta.modified() {
                if m > *newest {
                    *newest = m;
                }
            }
        }
    }
}

/// True if any source of the gateway (`crates/`, `bin/`, the vendored Pingora crates, manifests,
/// lock file) is newer than `bin`.
fn is_stale(bin: &Path) -> bool {
    let Ok(bin_mtime) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return true;
    };
    let root = workspace_root();
    let mut newest = SystemTime::UNIX_EPOCH;
    let mut budget = 20_000;
    newest_mtime(&root.join("crates"), &mut newest, &mut budget);
    newest_mtime(&root.join("bin"), &mut newest, &mut budget);
    newest_mtime(&root.join("vendor"), &mut newest, &mut budget);
    for f in ["Cargo.toml", "Cargo.lock"] {
        if let Ok(m) = std::fs::metadata(root.join(f)).and_then(|m| m.modified()) {
            newest = newest.max(m);
        }
    }
    newest > bin_mtime
}

/// The path of the `switchyard` binary, building it once per test process when it is missing or
/// older than its sources (`cargo build -p switchyard --bin switchyard` with the same target dir
/// and profile). `SWITCHYARD_BIN` overrides the path and skips the build.
pub fn switchyard_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("SWITCHYARD_BIN") {
            return PathBuf::from(p);
        }
        let profile_dir = profile_dir();
        let bin = profile_dir.join(format!("switchyard{}", std::env::consts::EXE_SUFFIX));
        if is_stale(&bin) {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
            let mut cmd = Command::new(cargo);
            cmd.current_dir(workspace_root())
                .args(["build", "-p", "switchyard", "--bin", "switchyard"])
                .arg("--target-dir")
                .arg(profile_dir.parent().unwrap());
            match profile_dir.file_name().and_then(|n| n.to_str()) {
                Some("debug") | None => {}
                Some("release") => {
                    cmd.arg("--release");
                }
                Some(other) => {
                    cmd.args(["--profile", other]);
                }
            }
            let started = Instant::now();
            let out = cmd.output().expect("cannot run cargo");
            assert!(
                out.status.success(),
                "building the switchyard binary failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            // This build counts in the first test's time: say so, or a slow first run looks
            // like a slow gateway.
            eprintln!(
                "note: the switchyard binary was older than its sources; building it took {:.1?}",
                started.elapsed()
            );
        }
        assert!(bin.exists(), "no switchyard binary at {}", bin.display());
        bin
    })
    .clone()
}

/// The path of example `name` of `switchyard-proxy`, built once per test process when missing
/// or older than its sources.
pub fn example_bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let profile_dir = profile_dir();
    let bin = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    BUILT.get_or_init(|| {
        if is_stale(&bin) {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
            let out = Command::new(cargo)
                .current_dir(workspace_root())
                .args(["build", "-p", "switchyard-proxy", "--examples"])
                .arg("--target-dir")
                .arg(profile_dir.parent().unwrap())
                .output()
                .expect("cannot run cargo");
            assert!(
                out.status.success(),
                "building the examples failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    });
    assert!(bin.exists(), "no example binary at {}", bin.display());
    bin
}

/// Runs `child` to completion, killing it after `timeout`; returns (exit code, stdout, stderr).
/// The exit code is -1 if the process was killed or ended by a signal.
fn wait_output(mut child: Child, timeout: Duration) -> (i32, String, String) {
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = String::from_utf8_lossy(&out_t.join().unwrap()).into_owned();
    let err = String::from_utf8_lossy(&err_t.join().unwrap()).into_owned();
    let code = status.and_then(|s| s.code()).unwrap_or(-1);
    (code, out, err)
}

/// Runs the binary with `args` (≤ 30 s); returns (exit code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let child = Command::new(switchyard_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(child, Duration::from_secs(30))
}

/// Writes `toml` to a temporary file and runs `switchyard check -c <file>`;
/// returns (exit code, stdout, stderr).
pub fn check(toml: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.toml");
    std::fs::write(&path, toml).unwrap();
    check_file(&path)
}

/// Runs `switchyard check -c <path>`; returns (exit code, stdout, stderr).
pub fn check_file(path: &Path) -> (i32, String, String) {
    run_cli(&["check", "-c", path.to_str().unwrap()])
}
