//! Reload (`POST /api/reload` and `SIGHUP`) and graceful upgrade (`switchyard run -u` + `SIGQUIT`).
//!
//! - a server added by a reload gets traffic only after its first health check;
//! - a server removed by a reload gets nothing and is no longer probed;
//! - a bad file changes nothing: still serving, 400 with the key path and line, counted;
//! - 600 sequential GETs during 10 reloads: zero failures;
//! - a graceful upgrade under a client loop: zero failures.

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const TOKEN_ENV: &str = "SWITCHYARD_TEST_ADMIN_TOKEN";
const TOKEN: &str = "reload-token-1";

/// One server line set.
fn server(o: &Origin, extra: &str) -> String {
    format!(
        "    [[upstreams.groups.servers]]\n    address = \"127.0.0.1\"\n    port = {}\n    {extra}\n",
        o.port()
    )
}

/// Fixed parts of a test config (same ports on every rewrite).
struct Layout {
    server: String,
    web: String,
    metrics: String,
    admin: String,
}

impl Layout {
    fn new(prefix: &str) -> Layout {
        Layout {
            server: server_section(prefix),
            web: free_addr(),
            metrics: free_addr(),
            admin: free_addr(),
        }
    }

    /// The config with upstream `api` (wrr, group `g`) holding `servers` (from [`server`]), with
    /// fast active HTTP checks on `/health`.
    fn config(&self, servers: &str) -> String {
        format!(
            "{}[metrics]\nlisten = \"{}\"\n\n[admin]\nlisten = \"{}\"\ntoken_env = \"{TOKEN_ENV}\"\n\n{}\
             [[routes]]\nname = \"all\"\npath_prefix = \"/\"\nupstream = \"api\"\n\n\
             [[upstreams]]\nname = \"api\"\nalgorithm = \"wrr\"\n\
             [upstreams.health.active]\nprotocol = \"http\"\npath = \"/health\"\n\
             healthy_threshold = 1\nunhealthy_threshold = 1\ninterval_ms = 200\ntimeout_ms = 1000\n\n\
             [[upstreams.groups]]\nname = \"g\"\n{servers}",
            self.server,
            self.metrics,
            self.admin,
            listener_section("web", &self.web),
        )
    }
}

fn start(cfg: &str) -> Gateway {
    Gateway::start_with_env(cfg, &[(TOKEN_ENV, TOKEN)])
}

async fn admin(method: &str, url: &str) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let resp = client()
        .request(method, url)
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")),
    )
}

async fn reload(gw: &Gateway) -> (u16, Value) {
    admin("POST", &gw.admin_url("/api/reload")).await
}

fn health_checks(o: &Origin) -> usize {
    o.requests()
        .iter()
        .filter(|r| r.path() == "/health")
        .count()
}

fn proxied(o: &Origin) -> Vec<RecordedRequest> {
    o.requests()
        .into_iter()
        .filter(|r| r.path() != "/health")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_server_gets_traffic_only_after_its_first_check() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let layout = Layout::new("reload-add");
    let gw = start(&layout.config(&server(&a, "")));
    assert_eq!(health_checks(&b), 0);

    gw.write_config(&layout.config(&format!("{}{}", server(&a, ""), server(&b, ""))));
    let c = client();
    let (status, report) = reload(&gw).await;
    assert_eq!(status, 200, "{report:#}");
    assert_eq!(report["applied"], true);
    // Keep sending until b has answered a proxied request (bounded: 400 requests / 20 s).
    let deadline = Instant::now() + Duration::from_secs(20);
    for i in 0..400 {
        let r = get(&c, &gw.url(&format!("/after/{i}"))).await;
        assert_eq!(r.status, 200, "{}", r.body);
        if !proxied(&b).is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let first_traffic = proxied(&b)
        .first()
        .map(|r| r.at)
        .expect("the added server never received traffic");
    let first_check = b
        .requests()
        .iter()
        .find(|r| r.path() == "/health")
        .map(|r| r.at)
        .expect("the added server was never checked");
    assert!(
        first_check < first_traffic,
        "b received traffic before its first health check"
    );
    let (_, v) = admin("GET", &gw.admin_url("/api/upstreams")).await;
    let servers = v["upstreams"][0]["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 2);
    assert!(servers.iter().all(|s| s["health"] == "healthy"), "{v:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_unhealthy_server_stays_out_until_it_passes() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    b.set_status(503);
    let layout = Layout::new("reload-add-bad");
    let gw = start(&layout.config(&server(&a, "")));
    gw.write_config(&layout.config(&format!("{}{}", server(&a, ""), server(&b, ""))));
    // By SIGHUP this time.
    gw.signal("HUP");
    assert!(gw.wait_for_log("configuration reloaded", Duration::from_secs(10)));
    let c = client();
    assert!(
        eventually(Duration::from_secs(10), || health_checks(&b) >= 2).await,
        "b is not probed"
    );
    for i in 0..20 {
        let r = get(&c, &gw.url(&format!("/x/{i}"))).await;
        assert_eq!((r.status, r.origin().as_deref()), (200, Some("a")));
    }
    let (_, v) = admin("GET", &gw.admin_url("/api/upstreams")).await;
    let hp = format!("127.0.0.1:{}", b.port());
    let state = v["upstreams"][0]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["host_port"] == hp.as_str())
        .map(|s| s["health"].clone());
    assert!(
        matches!(
            state.as_ref().and_then(Value::as_str),
            Some("pending" | "unhealthy")
        ),
        "{v:#}"
    );
    b.set_status(200);
    let mut saw_b = false;
    for i in 0..200 {
        let r = get(&c, &gw.url(&format!("/y/{i}"))).await;
        assert_eq!(r.status, 200);
        if r.origin().as_deref() == Some("b") {
            saw_b = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(saw_b, "b never received traffic after passing its checks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_server_gets_nothing_and_is_not_probed() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let layout = Layout::new("reload-remove");
    let gw = start(&layout.config(&format!("{}{}", server(&a, ""), server(&b, ""))));
    let c = client();
    for i in 0..10 {
        assert_eq!(get(&c, &gw.url(&format!("/{i}"))).await.status, 200);
    }
    assert!(!proxied(&b).is_empty());
    assert!(eventually(Duration::from_secs(5), || health_checks(&b) >= 2).await);

    gw.write_config(&layout.config(&server(&a, "")));
    let (status, report) = reload(&gw).await;
    assert_eq!(status, 200, "{report:#}");
    // A check already in flight may still land; then nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.clear();
    for i in 0..20 {
        let r = get(&c, &gw.url(&format!("/after/{i}"))).await;
        assert_eq!((r.status, r.origin().as_deref()), (200, Some("a")));
    }
    tokio::time::sleep(Duration::from_millis(1200)).await; // six check intervals
    assert_eq!(b.request_count(), 0, "{:?}", b.requests());
    let (_, v) = admin("GET", &gw.admin_url("/api/upstreams")).await;
    assert_eq!(v["upstreams"][0]["servers"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_file_changes_nothing_and_is_reported() {
    let a = Origin::start("a");
    let layout = Layout::new("reload-bad");
    let good = layout.config(&server(&a, ""));
    let gw = start(&good);
    let c = client();
    assert_eq!(get(&c, &gw.url("/")).await.status, 200);

    // An out-of-range weight on a known line.
    let bad = layout.config(&server(&a, "weight = 99999"));
    gw.write_config(&bad);
    let (status, report) = reload(&gw).await;
    assert_eq!(status, 400, "{report:#}");
    assert_eq!(report["applied"], false);
    let errors: Vec<&str> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("upstreams") && e.contains(".weight") && e.contains("line ")),
        "{errors:?}"
    );
    assert_eq!(get(&c, &gw.url("/")).await.status, 200);

    // A syntax error, by SIGHUP: logged with its line, still serving.
    // Written directly: the harness's write_config parses the TOML it writes.
    let broken = std::fs::read_to_string(gw.config_path()).unwrap() + "\n[[routes]\n";
    std::fs::write(gw.config_path(), broken).unwrap();
    gw.signal("HUP");
    assert!(gw.wait_for_log("reload rejected", Duration::from_secs(10)));
    for i in 0..10 {
        let r = get(&c, &gw.url(&format!("/{i}"))).await;
        assert_eq!((r.status, r.origin().as_deref()), (200, Some("a")));
    }
    let (status, last) = admin("GET", &gw.admin_url("/api/reload")).await;
    assert_eq!(status, 200);
    assert_eq!(last["last_reload"]["applied"], false, "{last:#}");
    assert!(last["last_reload"]["errors"][0]
        .as_str()
        .unwrap()
        .contains("line"));

    let failures = || async {
        metric_sum(
            &gw.metrics().await,
            "switchyard_config_reloads_total",
            &[("result", "failure")],
        )
    };
    assert_eq!(failures().await, 2.0);

    // Fixing the file recovers.
    gw.write_config(&good);
    let (status, _) = reload(&gw).await;
    assert_eq!(status, 200);
    let samples = gw.metrics().await;
    assert_eq!(
        metric_sum(
            &samples,
            "switchyard_config_reloads_total",
            &[("result", "success")]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_change_is_reported_as_needing_an_upgrade() {
    let a = Origin::start("a");
    let layout = Layout::new("reload-listener");
    let gw = start(&layout.config(&server(&a, "")));
    let new_addr = free_addr();
    let moved = layout
        .config(&server(&a, "weight = 2"))
        .replace(&layout.web, &new_addr);
    gw.write_config(&moved);
    let (status, report) = reload(&gw).await;
    assert_eq!(status, 200, "{report:#}");
    assert_eq!(report["applied"], true);
    let needs = report["needs_upgrade"].as_array().unwrap();
    assert!(
        needs
            .iter()
            .any(|n| n.as_str().unwrap().contains("listener web")),
        "{report:#}"
    );
    // The rest was applied; the old address still serves.
    let (_, v) = admin("GET", &gw.admin_url("/api/upstreams")).await;
    assert_eq!(v["upstreams"][0]["servers"][0]["weight"], 2);
    assert_eq!(get(&client(), &gw.url("/")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_hundred_gets_during_ten_reloads_never_fail() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let c = Origin::start("c");
    let layout = Layout::new("reload-load");
    let two = layout.config(&format!("{}{}", server(&a, ""), server(&b, "")));
    let three = layout.config(&format!(
        "{}{}{}",
        server(&a, "weight = 3"),
        server(&b, ""),
        server(&c, "")
    ));
    let gw = Arc::new(start(&two));
    let done = Arc::new(AtomicUsize::new(0));
    let traffic = {
        let gw = Arc::clone(&gw);
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let c = client();
            let mut failures = Vec::new();
            for i in 0..600 {
                match c.get(gw.url(&format!("/load/{i}"))).send().await {
                    Ok(r) if r.status() == 200 => {
                        let _ = r.bytes().await;
                    }
                    Ok(r) => failures.push(format!("{i}: status {}", r.status())),
                    Err(e) => failures.push(format!("{i}: {e:?}")),
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
            failures
        })
    };
    for k in 1..=10usize {
        // Wait (≤ 10 s) until the client has sent k × 50 requests, so reloads spread over the run.
        let deadline = Instant::now() + Duration::from_secs(10);
        while done.load(Ordering::SeqCst) < k * 50 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        gw.write_config(if k % 2 == 1 { &three } else { &two });
        if k % 3 == 0 {
            gw.signal("HUP");
        } else {
            let (status, report) = reload(&gw).await;
            assert_eq!(status, 200, "reload {k}: {report:#}");
        }
    }
    let failures = tokio::time::timeout(Duration::from_secs(120), traffic)
        .await
        .expect("the client loop did not finish")
        .unwrap();
    assert!(
        failures.is_empty(),
        "{} failures: {failures:?}",
        failures.len()
    );
    let ok = eventually(Duration::from_secs(10), || {
        gw.log().matches("configuration reloaded").count() >= 10
    })
    .await;
    assert!(ok, "not every reload was applied");
    let samples = gw.metrics().await;
    assert_eq!(
        metric_sum(
            &samples,
            "switchyard_config_reloads_total",
            &[("result", "success")]
        ),
        10.0
    );
    assert_eq!(
        metric_sum(
            &samples,
            "switchyard_config_reloads_total",
            &[("result", "failure")]
        ),
        0.0
    );
    assert!(
        !proxied(&c).is_empty(),
        "the added server never got traffic"
    );
}

/// A child process killed (SIGKILL) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_upgrade_hands_over_sockets_without_failures() {
    let a = Origin::start("a");
    let layout = Layout::new("upgrade");
    let mut old = start(&layout.config(&server(&a, "")));
    let dir = old.dir().to_path_buf();
    let sock = dir.join("upgrade.sock");
    assert!(
        std::fs::read_to_string(old.config_path())
            .unwrap()
            .contains(&sock.display().to_string()),
        "the harness puts upgrade_sock in the test's directory"
    );

    // The client loop: 200 requests, one connection each, 40 ms apart (about 8 s, longer than
    // the old process's 5 s close timeout plus its 1 s grace period).
    let url = old.url("/up");
    let progress = Arc::new(AtomicUsize::new(0));
    let traffic = {
        let progress = Arc::clone(&progress);
        tokio::spawn(async move {
            let c = reqwest::Client::builder()
                .no_proxy()
                .http1_only()
                .pool_max_idle_per_host(0)
                .connect_timeout(Duration::from_secs(3))
                .timeout(Duration::from_secs(15))
                .build()
                .unwrap();
            let mut failures = Vec::new();
            for i in 0..200 {
                match c.get(format!("{url}/{i}")).send().await {
                    Ok(r) if r.status() == 200 => {
                        let _ = r.bytes().await;
                    }
                    Ok(r) => failures.push(format!("{i}: status {}", r.status())),
                    Err(e) => failures.push(format!("{i}: {e:?}")),
                }
                progress.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            failures
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while progress.load(Ordering::SeqCst) < 20 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The new process waits on the upgrade socket for the old one's listeners.
    let log = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
    let new = Proc(
        Command::new(switchyard_bin())
            .args(["run", "-u", "-c"])
            .arg(old.config_path())
            .current_dir(&dir)
            .env("RUST_LOG", "info")
            .env(TOKEN_ENV, TOKEN)
            .stdin(Stdio::null())
            .stdout(log("new.stdout.log"))
            .stderr(log("new.stderr.log"))
            .spawn()
            .unwrap(),
    );
    let new_log = || {
        std::fs::read_to_string(dir.join("new.stderr.log")).unwrap_or_default()
            + &std::fs::read_to_string(dir.join("new.stdout.log")).unwrap_or_default()
    };
    assert!(
        eventually(Duration::from_secs(20), || sock.exists()).await,
        "the new process never listened on {}; its log:\n{}",
        sock.display(),
        new_log()
    );
    old.signal("QUIT");
    assert!(
        eventually(Duration::from_secs(15), || new_log().contains("starting")).await,
        "the new process did not start; its log:\n{}",
        new_log()
    );
    let code = old.wait_exit(Duration::from_secs(30));
    assert!(code.is_some(), "the old process did not exit");
    let failures = tokio::time::timeout(Duration::from_secs(60), traffic)
        .await
        .expect("client loop did not finish")
        .unwrap();
    assert!(
        failures.is_empty(),
        "{} failures during the hand-off: {failures:?}\nold log:\n{}\nnew log:\n{}",
        failures.len(),
        old.log(),
        new_log()
    );
    // The new process serves every listener it took over, the admin API included.
    assert_eq!(get(&client(), &old.url("/after")).await.status, 200);
    let (status, _) = admin("GET", &old.admin_url("/api/upstreams")).await;
    assert_eq!(status, 200);
    assert!(new_log().contains("Server starting") || new_log().contains("starting"));
    drop(new);
}
