//! Fleets on a real etcd (issue 21): the shared document at `<prefix>/config` reaches every
//! gateway, `switchyard push`/`pull`, invalid documents, the revision guard, the cache, and etcd
//! outages. Every test starts its own etcd on loopback (tests/support/etcd.rs).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::*;

/// A unique fleet prefix.
fn prefix() -> String {
    format!("/sy-test/{}", unique_id("fleet"))
}

/// A gateway's local file: `[server]`, one listener `web`, `[metrics]`, `[admin]` and
/// `[cluster]` with `extra` appended to it.
fn local_file(id: &str, endpoints: &str, prefix: &str, cluster_extra: &str) -> String {
    format!(
        "[server]\ninstance_id = \"{id}\"\nthreads = 1\ngrace_period_s = 1\n\n{}\
         [metrics]\nlisten = \"{}\"\n\n[admin]\nlisten = \"{}\"\n\n\
         [cluster]\netcd_endpoints = {endpoints}\nprefix = \"{prefix}\"\n{cluster_extra}\n",
        listener_section("web", &free_addr()),
        free_addr(),
        free_addr(),
    )
}

/// A shared document: route `all` to upstream `api` over `origins`.
fn document(origins: &[&Origin]) -> String {
    format!(
        "[[routes]]\nname = \"all\"\npath_prefix = \"/\"\nupstream = \"api\"\n\n{}",
        upstream_section("api", origins)
    )
}

/// Runs `switchyard push` on `text` with `args` after `-c FILE --etcd URL --prefix P`.
fn push(etcd: &Etcd, prefix: &str, text: &str, args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.toml");
    std::fs::write(&path, text).unwrap();
    let endpoint = etcd.endpoint();
    let mut all = vec![
        "push",
        "-c",
        path.to_str().unwrap(),
        "--etcd",
        &endpoint,
        "--prefix",
        prefix,
    ];
    all.extend_from_slice(args);
    run_cli(&all)
}

/// Pushes `text` and returns the revision printed.
fn push_ok(etcd: &Etcd, prefix: &str, text: &str) -> i64 {
    let (code, out, err) = push(etcd, prefix, text, &[]);
    assert_eq!(code, 0, "push failed: {err}");
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("push printed {out:?}"))
}

/// Waits until `GET /` through `gw` is answered by origin `want` (or, for `None`, 404).
async fn wait_origin(gw: &Gateway, want: Option<&str>, timeout: Duration) -> bool {
    let client = fresh_client();
    let deadline = Instant::now() + timeout;
    loop {
        let r = get(&client, &gw.url("/")).await;
        let ok = match want {
            Some(name) => r.origin().as_deref() == Some(name),
            None => r.status == 404,
        };
        if ok {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of a metric without labels from `gw`.
async fn metric(gw: &Gateway, name: &str, labels: &[(&str, &str)]) -> f64 {
    let body = get(&client(), &format!("http://{}/metrics", gw.metrics_addr()))
        .await
        .body;
    metric_sum(&parse_metrics(&body), name, labels)
}

/// `GET /api/cluster` on `gw`.
async fn cluster(gw: &Gateway) -> serde_json::Value {
    let r = get(&client(), &gw.admin_url("/api/cluster")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

async fn wait_metric(gw: &Gateway, name: &str, want: f64, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if metric(gw, name, &[]).await == want {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_converge_on_each_push() {
    let etcd = Etcd::start();
    let p = prefix();
    let (a, b) = (Origin::start("a"), Origin::start("b"));
    let gw1 = Gateway::start(&local_file("gw-1", &etcd.endpoints_toml(), &p, ""));
    let gw2 = Gateway::start(&local_file("gw-2", &etcd.endpoints_toml(), &p, ""));
    // No document yet: nothing is routed.
    assert!(wait_origin(&gw1, None, Duration::from_secs(1)).await);

    let r1 = push_ok(&etcd, &p, &document(&[&a]));
    for gw in [&gw1, &gw2] {
        assert!(
            wait_origin(gw, Some("a"), Duration::from_secs(2)).await,
            "{}",
            gw.log()
        );
    }
    let r2 = push_ok(&etcd, &p, &document(&[&b]));
    assert!(r2 > r1);
    for gw in [&gw1, &gw2] {
        assert!(wait_origin(gw, Some("b"), Duration::from_secs(2)).await);
        assert!(
            wait_metric(
                gw,
                "switchyard_config_revision",
                r2 as f64,
                Duration::from_secs(2)
            )
            .await
        );
        assert_eq!(metric(gw, "switchyard_config_source_up", &[]).await, 1.0);
    }
    // pull prints what was pushed.
    let (code, out, err) = run_cli(&["pull", "--etcd", &etcd.endpoint(), "--prefix", &p]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, document(&[&b]));
    assert!(err.contains(&format!("revision {r2}")), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_validates_and_leaves_local_sections_out() {
    let etcd = Etcd::start();
    let p = prefix();
    let a = Origin::start("a");
    // A full file: its local sections are not pushed.
    let full = format!("{}{}", server_section("push"), document(&[&a]));
    let (code, _, err) = push(&etcd, &p, &full, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("section `server` is local"), "{err}");
    let stored = etcd.get(&format!("{p}/config")).unwrap();
    assert!(!stored.contains("instance_id"), "{stored}");
    assert!(stored.contains("[[routes]]"));

    // An invalid file: exit 2, key path and line, nothing written.
    let before = etcd.get(&format!("{p}/config"));
    let bad = document(&[&a]).replace("upstream = \"api\"", "upstream = \"nope\"");
    let (code, _, err) = push(&etcd, &p, &bad, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("routes[0].upstream (line 4"), "{err}");
    assert_eq!(etcd.get(&format!("{p}/config")), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_revision_guard_refuses_a_stale_push() {
    let etcd = Etcd::start();
    let p = prefix();
    let a = Origin::start("a");
    let r1 = push_ok(&etcd, &p, &document(&[&a]));
    // Another push landed since revision r1 - 1 was read: refused with exit 3.
    let stale = (r1 - 1).to_string();
    let (code, _, err) = push(&etcd, &p, &document(&[&a]), &["--expect-revision", &stale]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("revision guard failed"), "{err}");
    let cur = r1.to_string();
    let (code, out, err) = push(&etcd, &p, &document(&[&a]), &["--expect-revision", &cur]);
    assert_eq!(code, 0, "{err}");
    let r2: i64 = out.trim().parse().unwrap();
    assert!(r2 > r1);
    // The old revision again: refused, unless forced.
    let (code, _, _) = push(&etcd, &p, &document(&[&a]), &["--expect-revision", &cur]);
    assert_eq!(code, 3);
    let (code, out, err) = push(&etcd, &p, &document(&[&a]), &["--force"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.trim().parse::<i64>().unwrap() > r2);
    // A first push to an empty prefix is guarded by revision 0.
    let (code, _, err) = push(
        &etcd,
        &format!("{p}-new"),
        &document(&[&a]),
        &["--expect-revision", "0"],
    );
    assert_eq!(code, 0, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_documents_written_directly_are_rejected_per_instance() {
    let etcd = Etcd::start();
    let p = prefix();
    let (a, b) = (Origin::start("a"), Origin::start("b"));
    let gw = Gateway::start(&local_file("gw-bad", &etcd.endpoints_toml(), &p, ""));
    let r1 = push_ok(&etcd, &p, &document(&[&a]));
    assert!(wait_origin(&gw, Some("a"), Duration::from_secs(2)).await);

    // A route to an unknown upstream, written around `push`: the gateway keeps revision r1.
    let bad = document(&[&b]).replace("upstream = \"api\"", "upstream = \"nope\"");
    etcd.put(&format!("{p}/config"), &bad);
    let deadline = Instant::now() + Duration::from_secs(2);
    let view = loop {
        let v = cluster(&gw).await;
        if !v["last_error"].is_null() || Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let err = view["last_error"].as_str().unwrap_or_default().to_string();
    assert!(err.contains("routes[0].upstream (line 4"), "{view}");
    assert_eq!(view["applied_revision"], r1);
    assert!(view["latest_revision"].as_i64().unwrap() > r1);
    assert!(wait_origin(&gw, Some("a"), Duration::from_secs(1)).await);
    assert_eq!(
        metric(&gw, "switchyard_config_revision", &[]).await,
        r1 as f64
    );
    assert!(metric(&gw, "switchyard_cluster_errors_total", &[("kind", "apply")]).await >= 1.0);
    // The status page shows it too.
    let page = get(&client(), &gw.admin_url("/status")).await.body;
    assert!(page.contains("id=\"cluster\""), "{page}");
    assert!(page.contains("routes[0].upstream"), "{page}");

    // A document naming a listener this instance lacks is this instance's error.
    let edge = document(&[&b]).replace(
        "upstream = \"api\"\n",
        "upstream = \"api\"\nlisteners = [\"edge\"]\n",
    );
    etcd.put(&format!("{p}/config"), &edge);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let view = cluster(&gw).await;
    assert!(
        view["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("routes[0].listeners[0]"),
        "{view}"
    );
    assert!(wait_origin(&gw, Some("a"), Duration::from_secs(1)).await);

    // A valid one is applied again.
    let r3 = push_ok(&etcd, &p, &document(&[&b]));
    assert!(wait_origin(&gw, Some("b"), Duration::from_secs(2)).await);
    let view = cluster(&gw).await;
    assert_eq!(view["applied_revision"], r3);
    assert!(view["last_error"].is_null(), "{view}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_outage_keeps_serving_and_the_watch_resumes() {
    let mut etcd = Etcd::start();
    let p = prefix();
    let (a, b) = (Origin::start("a"), Origin::start("b"));
    let gw = Gateway::start(&local_file("gw-out", &etcd.endpoints_toml(), &p, ""));
    push_ok(&etcd, &p, &document(&[&a]));
    assert!(wait_origin(&gw, Some("a"), Duration::from_secs(2)).await);

    etcd.stop();
    assert!(
        wait_metric(
            &gw,
            "switchyard_config_source_up",
            0.0,
            Duration::from_secs(10)
        )
        .await,
        "{}",
        gw.log()
    );
    // Serving goes on.
    let client = fresh_client();
    for _ in 0..20 {
        assert_eq!(
            get(&client, &gw.url("/")).await.origin().as_deref(),
            Some("a")
        );
    }
    assert_eq!(cluster(&gw).await["source_up"], false);

    etcd.restart();
    assert!(
        wait_metric(
            &gw,
            "switchyard_config_source_up",
            1.0,
            Duration::from_secs(10)
        )
        .await,
        "{}",
        gw.log()
    );
    let r = push_ok(&etcd, &p, &document(&[&b]));
    assert!(wait_origin(&gw, Some("b"), Duration::from_secs(2)).await);
    assert_eq!(
        metric(&gw, "switchyard_config_revision", &[]).await,
        r as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_revision_forces_a_full_read() {
    let mut etcd = Etcd::start();
    let p = prefix();
    let (a, b) = (Origin::start("a"), Origin::start("b"));
    let gw = Gateway::start(&local_file("gw-compact", &etcd.endpoints_toml(), &p, ""));
    push_ok(&etcd, &p, &document(&[&a]));
    assert!(wait_origin(&gw, Some("a"), Duration::from_secs(2)).await);
    etcd.stop();
    assert!(
        wait_metric(
            &gw,
            "switchyard_config_source_up",
            0.0,
            Duration::from_secs(10)
        )
        .await
    );
    etcd.restart();
    // While the gateway is away: several revisions, then a compaction past its resume point.
    let r = {
        push_ok(&etcd, &p, &document(&[&a, &b]));
        let r = push_ok(&etcd, &p, &document(&[&b]));
        etcd.compact_now();
        r
    };
    assert!(
        wait_origin(&gw, Some("b"), Duration::from_secs(10)).await,
        "{}",
        gw.log()
    );
    assert!(
        wait_metric(
            &gw,
            "switchyard_config_revision",
            r as f64,
            Duration::from_secs(2)
        )
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_from_the_cache() {
    let mut etcd = Etcd::start();
    let p = prefix();
    let a = Origin::start("a");
    let keep = tempfile::tempdir().unwrap();
    let cache = keep.path().join("cache.toml");
    let extra = format!("cache_path = \"{}\"\n", cache.display());
    let r = push_ok(&etcd, &p, &document(&[&a]));
    {
        let gw = Gateway::start(&local_file("gw-cold", &etcd.endpoints_toml(), &p, &extra));
        assert!(wait_origin(&gw, Some("a"), Duration::from_secs(2)).await);
    }
    assert!(Path::new(&cache).is_file());
    etcd.stop();
    // etcd down at start-up: the cached document serves.
    let gw = Gateway::start(&local_file("gw-cold", &etcd.endpoints_toml(), &p, &extra));
    assert!(
        wait_origin(&gw, Some("a"), Duration::from_secs(1)).await,
        "{}",
        gw.log()
    );
    assert_eq!(metric(&gw, "switchyard_config_source_up", &[]).await, 0.0);
    assert_eq!(
        metric(&gw, "switchyard_config_revision", &[]).await,
        r as f64
    );
    // Without a cache: nothing routed, and it keeps trying.
    let bare = Gateway::start(&local_file("gw-bare", &etcd.endpoints_toml(), &p, ""));
    assert!(wait_origin(&bare, None, Duration::from_secs(1)).await);
    etcd.restart();
    assert!(
        wait_origin(&bare, Some("a"), Duration::from_secs(10)).await,
        "{}",
        bare.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_under_load_fail_no_request() {
    let etcd = Etcd::start();
    let p = prefix();
    let (a, b) = (Origin::start("a"), Origin::start("b"));
    let gw = Gateway::start(&local_file("gw-load", &etcd.endpoints_toml(), &p, ""));
    push_ok(&etcd, &p, &document(&[&a]));
    assert!(wait_origin(&gw, Some("a"), Duration::from_secs(2)).await);
    let url = gw.url("/");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (url, stop) = (url.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let client = client();
            let (mut ok, mut failed) = (0u32, 0u32);
            // Bounded: at most 5000 requests or until told to stop.
            for _ in 0..5000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => ok += 1,
                    _ => failed += 1,
                }
            }
            (ok, failed)
        }));
    }
    for i in 0..6 {
        let doc = if i % 2 == 0 {
            document(&[&a, &b])
        } else {
            document(&[&b])
        };
        tokio::task::spawn_blocking({
            let (etcd_ep, p) = (etcd.endpoint(), p.clone());
            move || {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("f.toml");
                std::fs::write(&path, doc).unwrap();
                let (code, _, err) = run_cli(&[
                    "push",
                    "-c",
                    path.to_str().unwrap(),
                    "--etcd",
                    &etcd_ep,
                    "--prefix",
                    &p,
                ]);
                assert_eq!(code, 0, "{err}");
            }
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, 0);
    for h in load {
        let (o, f) = h.await.unwrap();
        ok += o;
        failed += f;
    }
    assert!(ok > 100, "only {ok} requests went through");
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed during pushes",
        ok + failed
    );
    assert_eq!(
        metric(
            &gw,
            "switchyard_config_reloads_total",
            &[("result", "failure")]
        )
        .await,
        0.0
    );
}

/// The members listed by `GET /api/cluster` on `gw`, by instance id.
async fn members(gw: &Gateway) -> Vec<serde_json::Value> {
    cluster(gw).await["members"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn wait_member_count(gw: &Gateway, n: usize, timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let m = members(gw).await.len();
        if m == n || Instant::now() > deadline {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_members(gw: &Gateway, want: &[&str], timeout: Duration) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let m = members(gw).await;
        let ids: Vec<&str> = m.iter().filter_map(|m| m["instance_id"].as_str()).collect();
        if ids == want || Instant::now() > deadline {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_appear_flag_the_behind_and_leave() {
    let etcd = Etcd::start();
    let p = prefix();
    let a = Origin::start("a");
    let id = |n: &str| format!("{}-{n}", unique_id("m"));
    let (id1, id2, id3) = (id("1"), id("2"), id("3"));
    let gw1 = Gateway::start(&local_file(&id1, &etcd.endpoints_toml(), &p, ""));
    // gw2 also has a listener `edge`.
    let gw2_text =
        local_file(&id2, &etcd.endpoints_toml(), &p, "") + &listener_section("edge", &free_addr());
    let gw2 = Gateway::start(&gw2_text);
    let mut gw3 = Gateway::start(&local_file(&id3, &etcd.endpoints_toml(), &p, ""));
    let r1 = push_ok(&etcd, &p, &document(&[&a]));
    let mut want = [id1.as_str(), id2.as_str(), id3.as_str()];
    want.sort();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let m = wait_members(&gw1, &want, Duration::from_secs(3)).await;
        if m.iter().all(|m| m["applied_revision"] == r1) {
            for m in &m {
                assert_eq!(m["behind"], false, "{m}");
                assert_eq!(m["version"], env!("CARGO_PKG_VERSION"));
                assert!(m["last_error"].is_null());
                assert!(m["started_at"].as_u64().unwrap() > 1_600_000_000);
            }
            break;
        }
        assert!(Instant::now() < deadline, "members did not converge: {m:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(cluster(&gw1).await["latest_revision"], r1);

    // A document naming `edge`: gw2 applies it, gw1 and gw3 cannot and are flagged behind.
    let edge = document(&[&a]).replace(
        "upstream = \"api\"\n",
        "upstream = \"api\"\nlisteners = [\"edge\"]\n",
    );
    // push validates the merged view: a full file whose listeners are left out of the push.
    let full = format!(
        "{}{}{edge}",
        listener_section("web", &free_addr()),
        listener_section("edge", &free_addr())
    );
    let r2 = push_ok(&etcd, &p, &full);
    let deadline = Instant::now() + Duration::from_secs(3);
    let view = loop {
        let v = cluster(&gw2).await;
        let m = v["members"].as_array().cloned().unwrap_or_default();
        let done = m.iter().all(|m| {
            (m["instance_id"] == id2.as_str() && m["applied_revision"] == r2)
                || (m["instance_id"] != id2.as_str() && !m["last_error"].is_null())
        });
        if done || Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for m in view["members"].as_array().unwrap() {
        if m["instance_id"] == id2.as_str() {
            assert_eq!(m["behind"], false, "{view}");
        } else {
            assert_eq!(m["behind"], true, "{view}");
            assert_eq!(m["applied_revision"], r1, "{view}");
            assert!(m["last_error"]
                .as_str()
                .unwrap()
                .contains("routes[0].listeners[0]"));
        }
    }
    let page = get(&client(), &gw2.admin_url("/status")).await.body;
    assert!(
        page.contains(&format!("data-member=\"{id1}\" data-behind=\"true\"")),
        "{page}"
    );

    // A graceful shutdown revokes the lease: gone at once.
    gw3.signal("TERM");
    assert!(gw3.wait_exit(Duration::from_secs(10)).is_some());
    let mut two = [id1.as_str(), id2.as_str()];
    two.sort();
    let m = wait_members(&gw1, &two, Duration::from_secs(2)).await;
    assert_eq!(m.len(), 2, "{m:?}\n{}", gw3.log());
    // A killed member goes when its lease expires (10 s).
    let killed = Instant::now();
    drop(gw2);
    let m = wait_members(&gw1, &[id1.as_str()], Duration::from_secs(15)).await;
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(
        killed.elapsed() > Duration::from_secs(3),
        "the lease ended too early"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_instance_id_is_reported() {
    let etcd = Etcd::start();
    let p = prefix();
    let id = unique_id("dup");
    let gw1 = Gateway::start(&local_file(&id, &etcd.endpoints_toml(), &p, ""));
    assert_eq!(
        wait_members(&gw1, &[id.as_str()], Duration::from_secs(3))
            .await
            .len(),
        1
    );
    let gw2 = Gateway::start(&local_file(&id, &etcd.endpoints_toml(), &p, ""));
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let v = cluster(&gw2).await;
        let problems = v["problems"].to_string();
        if problems.contains("duplicate instance_id") {
            break;
        }
        assert!(Instant::now() < deadline, "{v}\n{}", gw2.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        metric(
            &gw2,
            "switchyard_cluster_errors_total",
            &[("kind", "duplicate_instance")]
        )
        .await
            >= 1.0
    );
    // The first instance's record is untouched.
    let rec = etcd.get(&format!("{p}/members/{id}")).unwrap();
    let rec: serde_json::Value = serde_json::from_str(&rec).unwrap();
    assert_eq!(rec["instance_id"], id.as_str());
    drop(gw1);
}

/// Which origins answer `n` requests through `gw`.
async fn spread(gw: &Gateway, n: usize) -> std::collections::BTreeMap<String, usize> {
    let client = fresh_client();
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..n {
        let r = get(&client, &gw.url("/")).await;
        *seen
            .entry(r.origin().unwrap_or(format!("status {}", r.status)))
            .or_insert(0) += 1;
    }
    seen
}

/// Waits until `n` requests through `gw` reach exactly the origins `want`.
async fn wait_spread(gw: &Gateway, want: &[&str], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = spread(gw, 8).await;
        let names: Vec<&str> = seen.keys().map(String::as_str).collect();
        if names == want {
            return true;
        }
        if Instant::now() > deadline {
            eprintln!("last spread: {seen:?}");
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_changes_reach_every_instance_and_survive_pushes_until_cleared() {
    let etcd = Etcd::start();
    let p = prefix();
    let (a, b) = (Origin::start("a"), Origin::start("b"));
    let gw1 = Gateway::start(&local_file(
        &unique_id("o1"),
        &etcd.endpoints_toml(),
        &p,
        "",
    ));
    let gw2 = Gateway::start(&local_file(
        &unique_id("o2"),
        &etcd.endpoints_toml(),
        &p,
        "",
    ));
    push_ok(&etcd, &p, &document(&[&a, &b]));
    for gw in [&gw1, &gw2] {
        assert!(wait_spread(gw, &["a", "b"], Duration::from_secs(3)).await);
    }
    // Disable `a` on gw1: gw2 follows.
    let server = format!("127.0.0.1:{}", a.port());
    let url = gw1.admin_url(&format!("/api/upstreams/api/servers/{server}/disable"));
    let r = send(&client(), "POST", &url, None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let stored = etcd.get(&format!("{p}/overrides/api/{server}")).unwrap();
    assert_eq!(stored, r#"{"enabled":false}"#);
    let changed = Instant::now();
    assert!(wait_spread(&gw2, &["b"], Duration::from_secs(2)).await);
    assert!(changed.elapsed() < Duration::from_secs(2));
    assert!(wait_spread(&gw1, &["b"], Duration::from_secs(1)).await);

    // It survives a push and a reload.
    push_ok(
        &etcd,
        &p,
        &(document(&[&a, &b]) + "\n[variables]\nv = \"2\"\n"),
    );
    gw2.signal("HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    for gw in [&gw1, &gw2] {
        assert_eq!(spread(gw, 10).await.keys().collect::<Vec<_>>(), ["b"]);
    }
    // Cleared on gw2: both serve `a` again.
    let url = gw2.admin_url(&format!("/api/upstreams/api/servers/{server}/override"));
    let r = send(&client(), "DELETE", &url, None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    for gw in [&gw1, &gw2] {
        assert!(wait_spread(gw, &["a", "b"], Duration::from_secs(2)).await);
    }
    let r = send(&client(), "DELETE", &url, None, &[]).await;
    assert_eq!(r.status, 404, "nothing left to clear");
    // An unknown server is refused before anything is written.
    let url = gw1.admin_url("/api/upstreams/api/servers/127.0.0.1:1/drain");
    assert_eq!(send(&client(), "POST", &url, None, &[]).await.status, 404);
    assert!(etcd.keys(&format!("{p}/overrides/")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_servers_join_and_leave_with_and_without_leases() {
    let etcd = Etcd::start();
    let p = prefix();
    let (a, b, c) = (Origin::start("a"), Origin::start("b"), Origin::start("c"));
    let gw1 = Gateway::start(&local_file(
        &unique_id("d1"),
        &etcd.endpoints_toml(),
        &p,
        "",
    ));
    let gw2 = Gateway::start(&local_file(
        &unique_id("d2"),
        &etcd.endpoints_toml(),
        &p,
        "",
    ));
    push_ok(&etcd, &p, &document(&[&a]));
    for gw in [&gw1, &gw2] {
        assert!(wait_spread(gw, &["a"], Duration::from_secs(3)).await);
    }
    let key_b = format!("{p}/upstreams/api/servers/g/127.0.0.1:{}", b.port());
    etcd.put(&key_b, "{}");
    for gw in [&gw1, &gw2] {
        assert!(wait_spread(gw, &["a", "b"], Duration::from_secs(2)).await);
    }
    // It survives a push of the document.
    push_ok(&etcd, &p, &(document(&[&a]) + "\n[variables]\nv = \"2\"\n"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(spread(&gw1, 8).await.len(), 2);
    // Under a lease: gone when the lease is revoked.
    let key_c = format!("{p}/upstreams/api/servers/g/127.0.0.1:{}", c.port());
    let lease = etcd.put_with_lease(&key_c, r#"{"weight": 1}"#, 30);
    for gw in [&gw1, &gw2] {
        assert!(wait_spread(gw, &["a", "b", "c"], Duration::from_secs(2)).await);
    }
    etcd.revoke(&lease);
    etcd.del(&key_b);
    for gw in [&gw1, &gw2] {
        assert!(wait_spread(gw, &["a"], Duration::from_secs(2)).await);
    }
    // A lease that expires by itself.
    etcd.put_with_lease(&key_c, "{}", 2);
    assert!(wait_spread(&gw1, &["a", "c"], Duration::from_secs(2)).await);
    assert!(wait_spread(&gw1, &["a"], Duration::from_secs(6)).await);
    // A disabled one receives nothing; a group the document lacks is reported.
    etcd.put(&key_b, r#"{"enabled": false}"#);
    let bad = format!("{p}/upstreams/api/servers/nope/127.0.0.1:{}", c.port());
    etcd.put(&bad, "{}");
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let v = cluster(&gw2).await;
        if v["problems"].to_string().contains("has no group nope") {
            break;
        }
        assert!(Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(spread(&gw2, 10).await.keys().collect::<Vec<_>>(), ["a"]);
    let ups = get(&client(), &gw2.admin_url("/api/upstreams/api"))
        .await
        .body;
    assert!(ups.contains(&format!("127.0.0.1:{}", b.port())), "{ups}");
}

/// Runs `switchyard push -c FILE` (the file's `[cluster]` gives endpoints, prefix, TLS and
/// auth) with `env`; returns (exit code, stdout, stderr).
fn push_with(text: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.toml");
    std::fs::write(&path, text).unwrap();
    let mut cmd = std::process::Command::new(switchyard_bin());
    cmd.arg("push").arg("-c").arg(&path).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.stdin(std::process::Stdio::null()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_over_tls_with_client_certificates_and_password_auth() {
    let certs = tempfile::tempdir().unwrap();
    let tls = EtcdTls::generate(certs.path());
    let mut etcd = Etcd::start_cluster(1, Some(tls.clone()));
    let p = prefix();
    etcd.enable_auth("gateway", "s3cret", &format!("{p}/"));
    let a = Origin::start("a");
    let cluster_tls = format!(
        "etcd_ca = \"{}\"\netcd_cert = \"{}\"\netcd_key = \"{}\"\n\
         etcd_user_env = \"FLEET_USER\"\netcd_password_env = \"FLEET_PASSWORD\"\n",
        tls.ca.display(),
        tls.client_cert.display(),
        tls.client_key.display()
    );
    let env = [("FLEET_USER", "gateway"), ("FLEET_PASSWORD", "s3cret")];
    let local = local_file(&unique_id("tls"), &etcd.endpoints_toml(), &p, &cluster_tls);
    let gw = Gateway::start_with_env(&local, &env);
    // push takes TLS and auth from the file's [cluster]; the password only from the environment.
    let full = format!("{local}{}", document(&[&a]));
    let (code, out, err) = push_with(&full, &[], &env);
    assert_eq!(code, 0, "{err}");
    let r: i64 = out.trim().parse().unwrap();
    assert!(
        wait_origin(&gw, Some("a"), Duration::from_secs(3)).await,
        "{}",
        gw.log()
    );
    assert_eq!(
        metric(&gw, "switchyard_config_revision", &[]).await,
        r as f64
    );
    assert_eq!(wait_member_count(&gw, 1, Duration::from_secs(3)).await, 1);
    // Secrets never reach etcd.
    let stored = etcd.get(&format!("{p}/config")).unwrap();
    assert!(
        !stored.contains("s3cret") && !stored.contains("FLEET_PASSWORD"),
        "{stored}"
    );

    // A wrong password: refused by etcd, the instance reports its source down.
    let bad_env = [("FLEET_USER", "gateway"), ("FLEET_PASSWORD", "wrong")];
    let local = local_file(
        &unique_id("tls-bad"),
        &etcd.endpoints_toml(),
        &p,
        &cluster_tls,
    );
    let bad = Gateway::start_with_env(&local, &bad_env);
    assert!(wait_origin(&bad, None, Duration::from_secs(1)).await);
    assert_eq!(metric(&bad, "switchyard_config_source_up", &[]).await, 0.0);
    let (code, _, err) = push_with(&full, &[], &bad_env);
    assert_eq!(code, 1, "{err}");
    // Without the client certificate the TLS handshake fails.
    let no_cert = cluster_tls
        .lines()
        .filter(|l| !l.starts_with("etcd_cert") && !l.starts_with("etcd_key"))
        .collect::<Vec<_>>()
        .join("\n");
    let local = local_file(
        &unique_id("tls-nocert"),
        &etcd.endpoints_toml(),
        &p,
        &no_cert,
    );
    let (code, out, err) = push_with(&format!("{local}{}", document(&[&a])), &[], &env);
    assert_eq!(code, 1, "{out}{err}\n{local}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_member_etcd_cluster_survives_losing_one() {
    let mut etcd = Etcd::start_cluster(3, None);
    let p = prefix();
    let (a, b) = (Origin::start("a"), Origin::start("b"));
    let gw = Gateway::start(&local_file(
        &unique_id("c3"),
        &etcd.endpoints_toml(),
        &p,
        "",
    ));
    let eps = etcd.endpoints();
    let push_to = |eps: &[String], doc: &str| {
        let mut args: Vec<&str> = vec!["--prefix", &p];
        for e in eps {
            args.push("--etcd");
            args.push(e);
        }
        push_with(doc, &args, &[])
    };
    let (code, _, err) = push_to(&eps, &document(&[&a]));
    assert_eq!(code, 0, "{err}");
    assert!(wait_origin(&gw, Some("a"), Duration::from_secs(3)).await);
    // Each member in turn is killed (so the one the gateway talks to is, at some point): pushes
    // through the other two still reach it.
    for killed in 0..3 {
        etcd.kill(killed);
        let live: Vec<String> = (0..3)
            .filter(|i| *i != killed)
            .map(|i| eps[i].clone())
            .collect();
        let origin = if killed % 2 == 0 { &b } else { &a };
        let (code, _, err) = push_to(&live, &document(&[origin]));
        assert_eq!(code, 0, "{err}");
        assert!(
            wait_origin(&gw, Some(origin.name()), Duration::from_secs(10)).await,
            "member {killed} killed: {}",
            gw.log()
        );
        etcd.restart();
    }
    assert!(
        wait_metric(
            &gw,
            "switchyard_config_source_up",
            1.0,
            Duration::from_secs(5)
        )
        .await
    );
    // The member lease may have been asked of the member just restarted: that call gives up
    // after its 3 s bound and is tried again 0.5 s later (`switchyard-cluster`'s `member.rs`), so
    // registration can take a few seconds more than the configuration did.
    assert_eq!(
        wait_member_count(&gw, 1, Duration::from_secs(10)).await,
        1,
        "{}",
        gw.log()
    );
}

/// CPU time (user + system, clock ticks) and resident memory (KiB) of process `pid`.
fn cpu_and_rss(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit_once(") ").unwrap().1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let cpu = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (cpu, rss)
}

/// The issue's measurement (run by hand: `cargo test --test fleet measure -- --ignored
/// --nocapture`): time from a push landing to both of 2 gateways running it, over 20 pushes,
/// with a bounded load running through the first gateway; then the idle cost of the watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore]
async fn measure_push_to_apply_and_idle_cost() {
    let etcd = Etcd::start();
    let p = prefix();
    let (a, b) = (Origin::start("a"), Origin::start("b"));
    let gw1 = Gateway::start(&local_file(
        &unique_id("ms1"),
        &etcd.endpoints_toml(),
        &p,
        "",
    ));
    let gw2 = Gateway::start(&local_file(
        &unique_id("ms2"),
        &etcd.endpoints_toml(),
        &p,
        "",
    ));
    push_ok(&etcd, &p, &document(&[&a]));
    assert!(wait_origin(&gw1, Some("a"), Duration::from_secs(3)).await);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (url, stop) = (gw1.url("/"), stop.clone());
            tokio::spawn(async move {
                let client = client();
                let (mut ok, mut failed) = (0u32, 0u32);
                for _ in 0..200_000 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    match client.get(&url).send().await {
                        Ok(r) if r.status() == 200 => ok += 1,
                        _ => failed += 1,
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    let mut took = Vec::new();
    for i in 0..20 {
        let doc = if i % 2 == 0 {
            document(&[&a, &b])
        } else {
            document(&[&a])
        };
        let r = tokio::task::block_in_place(|| push_ok(&etcd, &p, &doc));
        let landed = Instant::now();
        let mut pending = vec![&gw1, &gw2];
        while !pending.is_empty() {
            let mut still = Vec::new();
            for gw in pending {
                if metric(gw, "switchyard_config_revision", &[]).await != r as f64 {
                    still.push(gw);
                }
            }
            pending = still;
            assert!(
                landed.elapsed() < Duration::from_secs(5),
                "push {i} not applied"
            );
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        took.push(landed.elapsed());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, 0);
    for h in load {
        let (o, f) = h.await.unwrap();
        ok += o;
        failed += f;
    }
    took.sort();
    println!(
        "push -> applied on both gateways, 20 pushes: median {:?}, max {:?} (min {:?})",
        took[took.len() / 2],
        took[took.len() - 1],
        took[0]
    );
    println!("requests during pushes: {ok} ok, {failed} failed");

    // Idle: 10 s without changes, a fleet member beside a plain gateway.
    let plain = Gateway::start(&format!(
        "{}{}[[routes]]\nname = \"all\"\nupstream = \"api\"\n\n{}",
        server_section("plain"),
        listener_section("web", &free_addr()),
        upstream_section("api", &[&a])
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (c1, _) = cpu_and_rss(gw2.pid());
    let (c0, _) = cpu_and_rss(plain.pid());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (c1b, rss1) = cpu_and_rss(gw2.pid());
    let (c0b, rss0) = cpu_and_rss(plain.pid());
    println!(
        "idle 10 s: fleet member {} ticks CPU, {rss1} KiB RSS; plain gateway {} ticks, {rss0} KiB",
        c1b - c1,
        c0b - c0
    );
    assert_eq!(failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_servers_are_checked_before_traffic() {
    let etcd = Etcd::start();
    let p = prefix();
    let (a, b) = (Origin::start("a"), Origin::start("b"));
    let gw = Gateway::start(&local_file(
        &unique_id("hc"),
        &etcd.endpoints_toml(),
        &p,
        "",
    ));
    let doc = document(&[&a])
        + "  [upstreams.health.active]\n  protocol = \"tcp\"\n  interval_ms = 100\n  \
           healthy_threshold = 1\n  unhealthy_threshold = 1\n";
    push_ok(&etcd, &p, &doc);
    assert!(wait_spread(&gw, &["a"], Duration::from_secs(3)).await);
    // Nothing listens there: the server never passes a check, so never gets a request.
    let dead = free_port();
    etcd.put(
        &format!("{p}/upstreams/api/servers/g/127.0.0.1:{dead}"),
        "{}",
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let ups = get(&client(), &gw.admin_url("/api/upstreams/api"))
            .await
            .body;
        if ups.contains(&format!("127.0.0.1:{dead}")) {
            break;
        }
        assert!(Instant::now() < deadline, "{ups}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(spread(&gw, 30).await.keys().collect::<Vec<_>>(), ["a"]);
    let server = format!("g/127.0.0.1:{dead}");
    let tried = metric(
        &gw,
        "switchyard_upstream_requests_total",
        &[("upstream", "api"), ("server", &server)],
    )
    .await;
    assert_eq!(tried, 0.0, "an unchecked server got traffic");
    // A live one passes its check and joins.
    etcd.put(
        &format!("{p}/upstreams/api/servers/g/127.0.0.1:{}", b.port()),
        "{}",
    );
    assert!(wait_spread(&gw, &["a", "b"], Duration::from_secs(3)).await);
}
