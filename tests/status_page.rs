//! The status page (`GET /status` on the admin listener) rendered by headless Chromium: the DOM
//! names every listener, route, upstream and server with its state, and a screenshot is saved
//! under the build's target directory (`target/tmp/status_page.png`).
//!
//! Chromium is Debian's `chromium` package; when `/usr/bin/chromium` is missing the test installs
//! it with `apt-get` (bounded in time), and fails with the reason if that is impossible.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs `cmd` to completion, killing it after `timeout`; returns (success, stdout, stderr).
fn run_bounded(mut cmd: Command, timeout: Duration) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out");
    let err_path = dir.path().join("err");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let deadline = Instant::now() + timeout;
    let ok = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    (ok, read(&out_path), read(&err_path))
}

/// Makes sure Debian's `chromium` is installed (apt-get update + install when missing).
fn ensure_chromium() {
    if Path::new(CHROMIUM).exists() {
        return;
    }
    let mut update = Command::new("apt-get");
    update.arg("update");
    let (ok, _, err) = run_bounded(update, Duration::from_secs(300));
    assert!(ok, "apt-get update failed:\n{err}");
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "--no-install-recommends", "chromium"])
        .env("DEBIAN_FRONTEND", "noninteractive");
    let (ok, _, err) = run_bounded(install, Duration::from_secs(900));
    assert!(
        ok && Path::new(CHROMIUM).exists(),
        "cannot install chromium:\n{err}"
    );
}

/// Headless Chromium with the required flags and a fresh profile, plus `extra` arguments.
fn chromium(profile: &Path, extra: &[String], url: &str) -> (bool, String, String) {
    let mut cmd = Command::new(CHROMIUM);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url);
    run_bounded(cmd, Duration::from_secs(90))
}

fn server(o: &Origin) -> String {
    format!(
        "    [[upstreams.groups.servers]]\n    address = \"127.0.0.1\"\n    port = {}\n",
        o.port()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_renders_in_headless_chromium() {
    ensure_chromium();
    let a = Origin::start("a");
    let b = Origin::start("b");
    b.set_status(503); // fails its checks: unhealthy
    let s1 = Origin::start("s1");
    let s2 = Origin::start("s2");
    // No token, loopback admin listener: the page needs no credentials (see docs/operations.md).
    let cfg = format!(
        "{}[admin]\nlisten = \"{}\"\ntoken_env = \"SWITCHYARD_TEST_UNSET_TOKEN_VARIABLE\"\n\n{}{}\
         [[routes]]\nname = \"api-route\"\nlisteners = [\"web\"]\npath_prefix = \"/api\"\nupstream = \"api\"\n\n\
         [[routes]]\nname = \"static-route\"\nlisteners = [\"web\", \"edge\"]\npath_prefix = \"/\"\nupstream = \"static\"\n\n\
         [[upstreams]]\nname = \"api\"\n\
         [upstreams.health.active]\nprotocol = \"http\"\npath = \"/health\"\nhealthy_threshold = 1\n\
         unhealthy_threshold = 1\ninterval_ms = 200\ntimeout_ms = 1000\n\n\
         [[upstreams.groups]]\nname = \"blue\"\n{}{}\n\
         [[upstreams]]\nname = \"static\"\nalgorithm = \"least_conn\"\n  [[upstreams.groups]]\n  name = \"green\"\n{}{}",
        server_section("status"),
        free_addr(),
        listener_section("web", &free_addr()),
        listener_section("edge", &free_addr()),
        server(&a),
        server(&b),
        server(&s1),
        server(&s2),
    );
    let gw = Gateway::start(&cfg);
    let c = client();
    for i in 0..12 {
        assert_eq!(get(&c, &gw.url(&format!("/api/{i}"))).await.status, 200);
        assert_eq!(get(&c, &gw.url(&format!("/page/{i}"))).await.status, 200);
    }
    // Disable one server so the page shows that state too.
    let r = send(
        &c,
        "POST",
        &gw.admin_url(&format!(
            "/api/upstreams/static/servers/127.0.0.1:{}/disable",
            s2.port()
        )),
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let profile = tempfile::tempdir().unwrap();
    let url = gw.admin_url("/status");
    let (ok, dom, err) = chromium(profile.path(), &["--dump-dom".to_string()], &url);
    assert!(
        ok && dom.contains("</html>"),
        "chromium --dump-dom failed:\n{err}"
    );

    for needle in [
        "data-listener=\"web\"".to_string(),
        "data-listener=\"edge\"".to_string(),
        "data-route=\"api-route\"".to_string(),
        "data-route=\"static-route\"".to_string(),
        "data-upstream=\"api\"".to_string(),
        "data-upstream=\"static\"".to_string(),
        format!(
            "data-server=\"blue/127.0.0.1:{}\" data-state=\"healthy\"",
            a.port()
        ),
        format!(
            "data-server=\"blue/127.0.0.1:{}\" data-state=\"unhealthy\"",
            b.port()
        ),
        format!(
            "data-server=\"green/127.0.0.1:{}\" data-state=\"healthy\"",
            s1.port()
        ),
        format!(
            "data-server=\"green/127.0.0.1:{}\" data-state=\"disabled\"",
            s2.port()
        ),
        "http-equiv=\"refresh\"".to_string(),
        "least_conn".to_string(),
    ] {
        assert!(
            dom.contains(&needle),
            "the rendered DOM lacks {needle}:\n{dom}"
        );
    }
    // Self-contained: no scripts, stylesheets, images or fonts from anywhere.
    for external in [
        "<script",
        "<link",
        "<img",
        "src=\"http",
        "url(http",
        "@import",
    ] {
        assert!(
            !dom.contains(external),
            "external asset ({external}) in:\n{dom}"
        );
    }

    let shot: PathBuf = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status_page.png");
    let _ = std::fs::remove_file(&shot);
    let profile = tempfile::tempdir().unwrap(); // a fresh profile for every run
    let (ok, _, err) = chromium(
        profile.path(),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,1000".to_string(),
            "--hide-scrollbars".to_string(),
        ],
        &format!("{url}?refresh=0"),
    );
    let png = std::fs::read(&shot).unwrap_or_default();
    assert!(
        ok && png.starts_with(b"\x89PNG"),
        "no screenshot at {}:\n{err}",
        shot.display()
    );
    eprintln!("status page screenshot: {}", shot.display());
}
