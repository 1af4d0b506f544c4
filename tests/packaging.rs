//! The systemd unit and its reload/upgrade helper (`contrib/systemd/`):
//!
//! - `systemd-analyze verify` accepts the unit (its paths pointed at the built binary and the
//!   helper script, as the `.deb` installs them) without a single warning;
//! - the gateway writes `[server] pid_file` with its own PID (systemd's `PIDFile=` and the upgrade
//!   procedure read it);
//! - `reload-or-upgrade` (the unit's `ExecReload`) sends SIGHUP, so the file is re-read; with the
//!   `upgrade` flag file it performs the graceful upgrade: a new process takes the sockets over,
//!   the PID file names it before the old process exits, and requests keep being answered.

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

fn contrib(rel: &str) -> PathBuf {
    workspace_root().join("contrib").join(rel)
}

#[test]
fn systemd_unit_verifies_without_warnings() {
    let unit = std::fs::read_to_string(contrib("systemd/switchyard.service")).unwrap();
    for line in [
        "ExecStart=/usr/bin/switchyard run -c ${CONFIG}",
        "ExecReload=/usr/lib/switchyard/reload-or-upgrade $MAINPID ${CONFIG} /run/switchyard/switchyard.pid /run/switchyard/upgrade.sock",
        "PIDFile=/run/switchyard/switchyard.pid",
        "Restart=on-failure",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit has `{line}`");
    }
    // The paths the .deb installs, pointed at this tree's files.
    let dir = tempfile::tempdir().unwrap();
    let local = unit
        .replace(
            "/usr/bin/switchyard",
            &switchyard_bin().display().to_string(),
        )
        .replace(
            "/usr/lib/switchyard/reload-or-upgrade",
            &contrib("systemd/reload-or-upgrade").display().to_string(),
        );
    let path = dir.path().join("switchyard.service");
    std::fs::write(&path, local).unwrap();
    let out = match Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
    {
        Ok(out) => out,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!(
                "skipped: systemd-analyze not found ({e}); scripts/ensure-ops-tools.sh installs it"
            );
            return;
        }
        Err(e) => panic!("systemd-analyze is needed in CI (scripts/ensure-ops-tools.sh): {e}"),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "systemd-analyze verify:\n{text}");
    // verify exits 0 even for unknown keys or bad values: any line about the unit is a finding.
    let findings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("switchyard.service"))
        .collect();
    assert!(findings.is_empty(), "systemd-analyze verify:\n{text}");
}

fn run_helper(gw: &Gateway, main_pid: u32) -> (bool, String) {
    let log_path = gw.dir().join("helper.log");
    let log = std::fs::File::create(&log_path).unwrap();
    // stdout and stderr to a file: the new process of an upgrade inherits them and outlives
    // the script, so a pipe would never reach its end.
    let status = Command::new(contrib("systemd/reload-or-upgrade"))
        .arg(main_pid.to_string())
        .arg(gw.config_path())
        .arg(gw.dir().join("switchyard.pid"))
        .arg(gw.dir().join("upgrade.sock"))
        .env("SWITCHYARD_BIN", switchyard_bin())
        .env("UPGRADE_WAIT_S", "20")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .unwrap();
    (
        status.success(),
        std::fs::read_to_string(&log_path).unwrap_or_default(),
    )
}

fn pid_in_file(gw: &Gateway) -> Option<u32> {
    std::fs::read_to_string(gw.dir().join("switchyard.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Kills the process an upgrade started (it is not the harness's child) when the test ends.
struct KillOnDrop(Option<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exec_reload_helper_reloads_and_upgrades_gracefully() {
    let origin = Origin::start("o");
    let cfg = format!(
        "{}[metrics]\nlisten = \"{}\"\n\n{}\
         [[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"u\"\n\n{}",
        server_section("pkg"),
        free_addr(),
        listener_section("web", &free_addr()),
        upstream_section("u", &[&origin]),
    );
    let mut gw = Gateway::start(&cfg);
    let old_pid = gw.pid();
    assert_eq!(
        pid_in_file(&gw),
        Some(old_pid),
        "pid_file names the process"
    );

    // Without the flag: SIGHUP, a reload.
    let (ok, log) = run_helper(&gw, old_pid);
    assert!(ok, "reload: {log}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let samples = gw.metrics().await;
        let reloads = metric_sum(
            &samples,
            "switchyard_config_reloads_total",
            &[("result", "success")],
        );
        if reloads >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // With the flag: a graceful upgrade.
    std::fs::write(gw.dir().join("upgrade"), "").unwrap();
    let started = Instant::now();
    let (ok, log) = run_helper(&gw, old_pid);
    let new_pid = pid_in_file(&gw);
    let _guard = KillOnDrop(new_pid.filter(|p| *p != old_pid));
    assert!(ok, "upgrade: {log}\ngateway log:\n{}", gw.log());
    assert!(!gw.dir().join("upgrade").exists(), "the flag is consumed");
    let new_pid = new_pid.unwrap();
    assert_ne!(
        new_pid, old_pid,
        "the PID file names the new process: {log}"
    );
    assert!(log.contains(&format!("PID {new_pid} took over from PID {old_pid}")));

    // Requests are answered throughout, and after the old process is gone.
    let c = fresh_client();
    let mut old_exited = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut served = 0;
    while Instant::now() < deadline {
        let r = get(&c, &gw.url("/during")).await;
        assert_eq!(
            r.status,
            200,
            "request {served} after {:?}",
            started.elapsed()
        );
        served += 1;
        if gw.wait_exit(Duration::from_millis(100)).is_some() {
            old_exited = true;
            break;
        }
    }
    assert!(old_exited, "the old process exits after handing over");
    for _ in 0..5 {
        assert_eq!(
            get(&c, &gw.url("/after")).await.status,
            200,
            "served by the new process"
        );
    }
    assert!(
        std::fs::read_to_string(format!("/proc/{new_pid}/cmdline"))
            .unwrap()
            .contains("-u"),
        "the new process runs with -u"
    );
}

#[test]
fn packaged_config_and_deb_assets_match_the_unit() {
    // The example config the .deb installs puts the PID file and the upgrade socket where the
    // unit's PIDFile= and ExecReload= look, and passes `switchyard check`.
    let conf = workspace_root().join("conf/switchyard.toml");
    let table: toml::Table = std::fs::read_to_string(&conf).unwrap().parse().unwrap();
    assert_eq!(
        table["server"]["pid_file"].as_str(),
        Some("/run/switchyard/switchyard.pid")
    );
    assert_eq!(
        table["server"]["upgrade_sock"].as_str(),
        Some("/run/switchyard/upgrade.sock")
    );
    let (code, out, err) = run_cli(&["check", "-c", conf.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");

    // Every asset cargo-deb packs exists (the release binary aside), and the unit is packed.
    let manifest: toml::Table =
        std::fs::read_to_string(workspace_root().join("bin/switchyard/Cargo.toml"))
            .unwrap()
            .parse()
            .unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    let pkg_dir = workspace_root().join("bin/switchyard");
    let assets = deb["assets"].as_array().unwrap();
    let mut dests = Vec::new();
    for asset in assets {
        let src = asset[0].as_str().unwrap();
        dests.push(asset[1].as_str().unwrap().to_string());
        if src.starts_with("target/") {
            continue;
        }
        let path = pkg_dir.join(src.trim_end_matches("*.md"));
        assert!(path.exists(), "deb asset {src} ({})", path.display());
    }
    for want in [
        "usr/bin/",
        "usr/lib/switchyard/",
        "etc/switchyard/switchyard.toml",
    ] {
        assert!(
            dests.iter().any(|d| d == want),
            "deb installs {want}: {dests:?}"
        );
    }
    let units = deb["systemd-units"]["unit-scripts"].as_str().unwrap();
    assert!(pkg_dir.join(units).join("switchyard.service").exists());
    assert!(pkg_dir
        .join(deb["license-file"][0].as_str().unwrap())
        .exists());
}
