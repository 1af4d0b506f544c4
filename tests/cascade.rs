//! API cascading over real sockets: gateway A (cascading) → gateway B (cascaded) → origin. B only
//! accepts correctly signed, fresh requests from allowed instances (401 / 403 otherwise), and the
//! origin never sees the signature header. Also: forwarding loops between gateways answer 463, a
//! missing key refuses the start, and `conf/cascade.toml` runs.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use support::*;

const KEY_ENV: &str = "SY_TEST_CASCADE_KEY";
const KEY: &str = "chain-shared-cascade-secret";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The header value the design specifies, computed independently of the gateway.
fn signed(key: &str, id: &str, ts: u64, method: &str, path: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(format!("{id}\n{ts}\n{method}\n{path}").as_bytes());
    let sig = hex::encode(mac.finalize().into_bytes());
    format!("id={id}, ts={ts}, sig={sig}")
}

/// Parses `id=.., ts=.., sig=..`.
fn parse(value: &str) -> (String, u64, String) {
    let mut id = None;
    let mut ts = None;
    let mut sig = None;
    for part in value.split(',') {
        let (k, v) = part.trim().split_once('=').unwrap();
        match k {
            "id" => id = Some(v.to_string()),
            "ts" => ts = Some(v.parse().unwrap()),
            "sig" => sig = Some(v.to_string()),
            other => panic!("unexpected field {other} in {value:?}"),
        }
    }
    (id.unwrap(), ts.unwrap(), sig.unwrap())
}

/// Gateway B: `require_cascade` on every path, `allowed_instances = allowed`, to `origin`.
fn cascaded_config(id: &str, allowed: &[&str], origin: &Origin) -> String {
    let allowed: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "[server]\ninstance_id = \"{id}\"\nthreads = 1\ngrace_period_s = 1\n\n\
         [metrics]\nlisten = \"{}\"\n\n\
         [cascade]\nkey_env = \"{KEY_ENV}\"\nallowed_instances = [{}]\n\n{}\
         [[routes]]\nname = \"internal\"\npath_prefix = \"/\"\nupstream = \"origin\"\n\
         require_cascade = true\n\n{}",
        free_addr(),
        allowed.join(", "),
        listener_section("web", &free_addr()),
        upstream_section("origin", &[origin]),
    )
}

/// Gateway A: `/api/users/{id}` rewritten to `/users/{id}` and sent, signed, to gateway `b`.
fn cascading_config(id: &str, b: &Gateway) -> String {
    let b = b.addr();
    format!(
        "[server]\ninstance_id = \"{id}\"\nthreads = 1\ngrace_period_s = 1\n\n\
         [cascade]\nkey_env = \"{KEY_ENV}\"\n\n{}\
         [[routes]]\nname = \"users\"\npath = \"/api/users/{{userId}}\"\nupstream = \"b\"\n\
         backend_path = \"/users/{{userId}}\"\n\n\
         [[routes]]\nname = \"rest\"\npath_prefix = \"/\"\nupstream = \"b\"\n\n\
         [[upstreams]]\nname = \"b\"\ncascade = true\n  [[upstreams.groups]]\n  name = \"g\"\n\
         \x20   [[upstreams.groups.servers]]\n    address = \"{}\"\n    port = {}\n",
        listener_section("web", &free_addr()),
        b.ip(),
        b.port(),
    )
}

/// Starts B (allowing `allowed`) and A (`a_id`, signing with `a_key`) in front of `origin`.
fn chain(origin: &Origin, a_id: &str, a_key: &str, allowed: &[&str]) -> (Gateway, Gateway) {
    let b = Gateway::start_with_env(
        &cascaded_config(&unique_id("core"), allowed, origin),
        &[(KEY_ENV, KEY)],
    );
    let a = Gateway::start_with_env(&cascading_config(a_id, &b), &[(KEY_ENV, a_key)]);
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_to_b_cascading_works_and_the_origin_never_sees_the_signature() {
    let origin = Origin::start("o");
    let a_id = unique_id("edge");
    let (a, b) = chain(&origin, &a_id, KEY, &[&a_id]);
    let c = client();

    // The path is rewritten by A and signed as rewritten; B verifies what it receives.
    let r = get(&c, &a.url("/api/users/42?expand=1")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.origin().as_deref(), Some("o"));
    let seen = origin.last_request().unwrap();
    assert_eq!(seen.uri, "/users/42?expand=1");
    assert_eq!(
        seen.header("switchyard-cascade"),
        None,
        "B strips the header"
    );
    let cdn_loop = seen.header_all("cdn-loop").join(", ");
    assert!(cdn_loop.contains(&a_id), "passed through A: {cdn_loop}");

    // Other methods and paths, and a client that tries to smuggle its own signature through A.
    let forged = signed("guess", &a_id, now(), "POST", "/orders");
    let resp = c
        .post(a.url("/orders"))
        .header("Switchyard-Cascade", forged)
        .body("{\"qty\":1}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let seen = origin.last_request().unwrap();
    assert_eq!(
        (seen.method.as_str(), seen.uri.as_str()),
        ("POST", "/orders")
    );
    assert_eq!(&seen.body[..], b"{\"qty\":1}");
    assert_eq!(seen.header("switchyard-cascade"), None);
    for i in 0..10 {
        let r = send(&c, "DELETE", &a.url(&format!("/items/{i}")), None, &[]).await;
        assert_eq!(r.status, 200, "DELETE {i}");
    }
    assert!(origin
        .requests()
        .iter()
        .all(|r| r.header("switchyard-cascade").is_none()));
    assert_eq!(origin.request_count(), 12);

    // B refuses the same requests sent to it directly, unsigned.
    let r = get(&c, &b.url("/users/42")).await;
    assert_eq!(r.status, 401);
    assert_eq!(origin.request_count(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cascaded_gateway_rejects_bad_signatures_before_the_origin() {
    let origin = Origin::start("o");
    let b_id = unique_id("core");
    let b = Gateway::start_with_env(
        &cascaded_config(&b_id, &["edge-1", "edge-2"], &origin),
        &[(KEY_ENV, KEY)],
    );
    let c = client();
    let url = b.url("/v1/orders/9?x=1");
    let path = "/v1/orders/9";
    let t = now();

    let cases: Vec<(&str, Option<String>, u16)> = vec![
        ("unsigned", None, 401),
        ("empty", Some(String::new()), 401),
        ("malformed", Some("id=edge-1; ts=1; sig=00".into()), 401),
        (
            "not hex",
            Some(format!("id=edge-1, ts={t}, sig=not-a-signature")),
            401,
        ),
        (
            "wrong key",
            Some(signed("wrong", "edge-1", t, "GET", path)),
            401,
        ),
        (
            "stale timestamp (-400 s)",
            Some(signed(KEY, "edge-1", t - 400, "GET", path)),
            401,
        ),
        (
            "future timestamp (+400 s)",
            Some(signed(KEY, "edge-1", t + 400, "GET", path)),
            401,
        ),
        (
            "signed for another path",
            Some(signed(KEY, "edge-1", t, "GET", "/v1/orders/10")),
            401,
        ),
        (
            "signed for another method",
            Some(signed(KEY, "edge-1", t, "POST", path)),
            401,
        ),
        (
            "signed with the query",
            Some(signed(KEY, "edge-1", t, "GET", "/v1/orders/9?x=1")),
            401,
        ),
        (
            "id swapped after signing",
            Some(signed(KEY, "edge-1", t, "GET", path).replacen("edge-1", "edge-2", 1)),
            401,
        ),
        (
            "correctly signed, not allowed",
            Some(signed(KEY, "edge-9", t, "GET", path)),
            403,
        ),
        (
            "correctly signed by B's own id, not allowed",
            Some(signed(KEY, &b_id, t, "GET", path)),
            403,
        ),
    ];
    for (what, header, want) in &cases {
        let headers: Vec<(&str, &str)> = header
            .as_deref()
            .map(|h| vec![("Switchyard-Cascade", h)])
            .unwrap_or_default();
        let r = send(&c, "GET", &url, None, &headers).await;
        assert_eq!(r.status, *want, "{what}: {:?}", r.body);
    }
    assert_eq!(
        origin.request_count(),
        0,
        "no rejected request reaches the origin"
    );
    let rejected = metric_sum(
        &b.metrics().await,
        "switchyard_rejected_requests_total",
        &[("reason", "cascade")],
    );
    assert_eq!(rejected, cases.len() as f64);

    // Accepted: fresh, within the 300 s window either way, from an allowed id; header stripped.
    for (i, ts) in [t, t - 290, t + 290].into_iter().enumerate() {
        let id = if i == 1 { "edge-2" } else { "edge-1" };
        let h = signed(KEY, id, ts, "GET", path);
        let r = send(&c, "GET", &url, None, &[("Switchyard-Cascade", &h)]).await;
        assert_eq!(r.status, 200, "ts {ts} (now {t}) from {id}");
        let seen = origin.last_request().unwrap();
        assert_eq!(seen.uri, "/v1/orders/9?x=1");
        assert_eq!(seen.header("switchyard-cascade"), None);
    }
    // The signature is over the method too: a signed POST passes.
    let h = signed(KEY, "edge-1", now(), "POST", path);
    let resp = c
        .post(&url)
        .header("Switchyard-Cascade", h)
        .body("b")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(origin.request_count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cascading_gateway_with_the_wrong_key_gets_401_and_an_unlisted_one_403() {
    let origin = Origin::start("o");
    let a_id = unique_id("edge");
    let (a, _b) = chain(&origin, &a_id, "not-the-chain-key", &[&a_id]);
    let r = get(&client(), &a.url("/api/users/1")).await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    drop((a, _b));

    let (a, _b) = chain(&origin, &a_id, KEY, &["somebody-else"]);
    let r = get(&client(), &a.url("/api/users/1")).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(origin.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signature_a_gateway_sends_is_the_specified_hmac() {
    // A cascade upstream that is a plain origin: it sees the header as A sends it.
    let origin = Origin::start("o");
    let a_id = unique_id("edge");
    let cfg = format!(
        "[server]\ninstance_id = \"{a_id}\"\nthreads = 1\ngrace_period_s = 1\n\n[cascade]\n\n{}\
         [[routes]]\nname = \"r\"\npath = \"/api/{{x}}\"\nupstream = \"u\"\n\
         backend_path = \"/internal/{{x}}\"\n\n{}",
        listener_section("web", &free_addr()),
        upstream_section("u", &[&origin]).replacen(
            "name = \"u\"\n",
            "name = \"u\"\ncascade = true\n",
            1
        ),
    );
    // An empty [cascade] table (required by validation): key_env defaults to SWITCHYARD_CASCADE_KEY.
    let a = Gateway::start_with_env(&cfg, &[("SWITCHYARD_CASCADE_KEY", KEY)]);
    let before = now();
    let r = send(&client(), "PUT", &a.url("/api/thing?q=2"), None, &[]).await;
    assert_eq!(r.status, 200);
    let after = now();
    let seen = origin.last_request().unwrap();
    assert_eq!(seen.uri, "/internal/thing?q=2");
    let values = seen.header_all("switchyard-cascade");
    assert_eq!(values.len(), 1, "{values:?}");
    let (id, ts, _) = parse(&values[0]);
    assert_eq!(id, a_id);
    assert!(
        before <= ts && ts <= after,
        "ts {ts} not in [{before}, {after}]"
    );
    assert_eq!(
        values[0],
        signed(KEY, &a_id, ts, "PUT", "/internal/thing"),
        "HMAC-SHA256 over id, ts, method and the path as sent upstream (no query)"
    );
}

#[test]
fn a_gateway_without_the_cascade_key_refuses_to_start() {
    let origin = Origin::start("o");
    let var = format!("SY_TEST_CASCADE_UNSET_{}", std::process::id());
    let signing = format!(
        "[server]\ninstance_id = \"{}\"\nthreads = 1\ngrace_period_s = 1\n\n\
         [cascade]\nkey_env = \"{var}\"\n\n{}\
         [[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"u\"\n\n{}",
        unique_id("nokey"),
        listener_section("web", &free_addr()),
        upstream_section("u", &[&origin]).replacen(
            "name = \"u\"\n",
            "name = \"u\"\ncascade = true\n",
            1
        ),
    );
    let verifying = signing.replace("cascade = true\n", "").replace(
        "upstream = \"u\"\n\n",
        "upstream = \"u\"\nrequire_cascade = true\n\n",
    );
    assert!(verifying.contains("require_cascade = true"));
    for (role, cfg) in [("cascading", &signing), ("cascaded", &verifying)] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = cfg.replacen(
            "[server]\n",
            &format!(
                "[server]\npid_file = \"{}\"\nupgrade_sock = \"{}\"\n",
                dir.path().join("pid").display(),
                dir.path().join("upgrade.sock").display()
            ),
            1,
        );
        let path = dir.path().join("switchyard.toml");
        std::fs::write(&path, &cfg).unwrap();
        let mut child = Command::new(switchyard_bin())
            .args(["run", "-c", path.to_str().unwrap()])
            .env_remove(&var)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break Some(st);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();
        let status = status.unwrap_or_else(|| {
            panic!("{role}: the gateway started without the cascade key; log:\n{stderr}")
        });
        assert!(!status.success(), "{role}: exit {status}; log:\n{stderr}");
        assert!(
            stderr.contains(&var),
            "{role}: the error names the variable; log:\n{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarding_loop_between_two_gateways_answers_463() {
    let origin = Origin::start("o");
    let (addr_a, addr_b) = (free_addr(), free_addr());
    let (id_a, id_b) = (unique_id("loop-a"), unique_id("loop-b"));
    let gw_cfg = |id: &str, listen: &str, to: &str, path_extra: &str| {
        let (host, port) = to.rsplit_once(':').unwrap();
        format!(
            "[server]\ninstance_id = \"{id}\"\nthreads = 1\ngrace_period_s = 1\n\n{}\
             {path_extra}\
             [[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"next\"\n\n\
             [[upstreams]]\nname = \"next\"\n  [[upstreams.groups]]\n  name = \"g\"\n\
             \x20   [[upstreams.groups.servers]]\n    address = \"{host}\"\n    port = {port}\n",
            listener_section("web", listen),
        )
    };
    // A → B for everything; B → A for everything except /ok, which B sends to the origin.
    let origin_route = format!(
        "[[routes]]\nname = \"ok\"\npath_prefix = \"/ok\"\nupstream = \"origin\"\n\n{}",
        upstream_section("origin", &[&origin])
    );
    let b = Gateway::start(&gw_cfg(&id_b, &addr_b, &addr_a, &origin_route));
    let a = Gateway::start(&gw_cfg(&id_a, &addr_a, &addr_b, ""));
    let c = client();
    let r = get(&c, &a.url("/ok/1")).await;
    assert_eq!(r.status, 200, "A → B → origin works");
    let seen = origin
        .last_request()
        .unwrap()
        .header_all("cdn-loop")
        .join(", ");
    assert!(seen.contains(&id_a) && seen.contains(&id_b), "{seen}");

    let r = get(&c, &a.url("/loop")).await;
    assert_eq!(r.status, 463, "A → B → A is a loop: {:?}", r.body);
    let r = get(&c, &b.url("/loop")).await;
    assert_eq!(r.status, 463, "B → A → B is a loop: {:?}", r.body);
    assert_eq!(origin.request_count(), 1, "nothing else reached the origin");
}

/// `conf/cascade.toml` with its listener and metrics on free ports and its servers on `origins`.
fn example_with(origins: &[&Origin]) -> String {
    let path = workspace_root().join("conf/cascade.toml");
    let mut table: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    for l in table["listeners"].as_array_mut().unwrap() {
        l["listen"] = toml::Value::String(free_addr());
    }
    if let Some(m) = table.get_mut("metrics") {
        m["listen"] = toml::Value::String(free_addr());
    }
    let mut next = origins.iter();
    for up in table["upstreams"].as_array_mut().unwrap() {
        for g in up["groups"].as_array_mut().unwrap() {
            for s in g["servers"].as_array_mut().unwrap() {
                let o = next
                    .next()
                    .expect("more servers in the example than origins");
                s["address"] = toml::Value::String("127.0.0.1".into());
                s["port"] = toml::Value::Integer(o.port().into());
            }
        }
    }
    assert!(next.next().is_none(), "fewer servers than origins");
    toml::to_string(&table).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_conf_cascade_toml_checks_and_runs() {
    let path = workspace_root().join("conf/cascade.toml");
    let (code, out, err) = check_file(&path);
    assert_eq!(code, 0, "conf/cascade.toml:\nstdout: {out}\nstderr: {err}");

    let (c1, c2) = (Origin::start("core-1"), Origin::start("core-2"));
    let key = "example-chain-key";
    let gw = Gateway::start_with_env(
        &example_with(&[&c1, &c2]),
        &[("SWITCHYARD_CASCADE_KEY", key)],
    );
    let c = client();
    // Unsigned, or from an edge that is not listed: refused.
    assert_eq!(get(&c, &gw.url("/orders/42")).await.status, 401);
    let h = signed(key, "edge-lhr", now(), "GET", "/orders/42");
    let r = send(
        &c,
        "GET",
        &gw.url("/orders/42"),
        None,
        &[("Switchyard-Cascade", &h)],
    )
    .await;
    assert_eq!(r.status, 403);
    // Signed by edge-fra: forwarded to core as /v2/orders/42, signed again as region-eu.
    for edge in ["edge-fra", "edge-ams"] {
        let h = signed(key, edge, now(), "GET", "/orders/42");
        let r = send(
            &c,
            "GET",
            &gw.url("/orders/42?full=1"),
            None,
            &[("Switchyard-Cascade", &h)],
        )
        .await;
        assert_eq!(r.status, 200, "{edge}: {:?}", r.body);
        let core = if r.origin().as_deref() == Some("core-1") {
            &c1
        } else {
            &c2
        };
        let seen = core.last_request().unwrap();
        assert_eq!(seen.uri, "/v2/orders/42?full=1");
        let values = seen.header_all("switchyard-cascade");
        assert_eq!(
            values.len(),
            1,
            "edge's header replaced, not passed on: {values:?}"
        );
        let (id, ts, _) = parse(&values[0]);
        assert_eq!(id, "region-eu");
        assert_eq!(
            values[0],
            signed(key, "region-eu", ts, "GET", "/v2/orders/42")
        );
    }
    assert_eq!(c1.request_count() + c2.request_count(), 2);
}
