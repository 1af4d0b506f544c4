//! The admin API: bearer-token authentication (401s), the loopback rule, `GET /api/upstreams`,
//! `GET /api/config`, and run-time server changes (disable, enable, drain, weight) observed in the
//! traffic distribution, undone by a reload.

mod support;

use std::collections::BTreeMap;

use serde_json::Value;
use support::*;

const TOKEN_ENV: &str = "SWITCHYARD_TEST_ADMIN_TOKEN";
const TOKEN: &str = "test-token-7f3a";

fn server(o: &Origin) -> String {
    format!(
        "    [[upstreams.groups.servers]]\n    address = \"127.0.0.1\"\n    port = {}\n",
        o.port()
    )
}

/// A gateway config: listener `web`, route `all` → upstream `api` (wrr, group `g`, servers
/// `origins`), `[metrics]` and `[admin]` on free ports.
fn config(prefix: &str, origins: &[&Origin]) -> String {
    let servers: String = origins.iter().map(|o| server(o)).collect();
    format!(
        "{}[metrics]\nlisten = \"{}\"\n\n[admin]\nlisten = \"{}\"\ntoken_env = \"{TOKEN_ENV}\"\n\n{}\
         [[routes]]\nname = \"all\"\npath_prefix = \"/\"\nupstream = \"api\"\n\n\
         [[upstreams]]\nname = \"api\"\nalgorithm = \"wrr\"\n  [[upstreams.groups]]\n  name = \"g\"\n{servers}",
        server_section(prefix),
        free_addr(),
        free_addr(),
        listener_section("web", &free_addr()),
    )
}

fn start(prefix: &str, origins: &[&Origin]) -> Gateway {
    Gateway::start_with_env(&config(prefix, origins), &[(TOKEN_ENV, TOKEN)])
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

/// `method url` with the right token and an optional JSON body; returns (status, JSON body).
async fn admin(method: &str, url: &str, body: Option<&str>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = client()
        .request(method, url)
        .header("authorization", bearer());
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, json)
}

async fn distribution(gw: &Gateway, n: usize) -> BTreeMap<String, usize> {
    let c = client();
    let mut m = BTreeMap::new();
    for i in 0..n {
        let r = get(&c, &gw.url(&format!("/d/{i}"))).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
        *m.entry(r.origin().unwrap()).or_insert(0) += 1;
    }
    m
}

fn server_json<'a>(upstreams: &'a Value, upstream: &str, host_port: &str) -> &'a Value {
    upstreams["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == upstream)
        .and_then(|u| {
            u["servers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["host_port"] == host_port)
        })
        .unwrap_or_else(|| panic!("no server {upstream}/{host_port} in {upstreams:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_wrong_token_is_401() {
    let a = Origin::start("a");
    let gw = start("admin-401", &[&a]);
    let c = client();
    for path in ["/api/upstreams", "/api/config", "/status", "/api/reload"] {
        let url = gw.admin_url(path);
        let r = get(&c, &url).await;
        assert_eq!(r.status, 401, "no token: GET {path}: {}", r.body);
        assert!(r.header("www-authenticate").is_some(), "GET {path}");
        for wrong in [
            "Bearer wrong".to_string(),
            format!("Bearer {TOKEN}x"),
            format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]),
            TOKEN.to_string(),
            "Basic dXNlcjp3cm9uZw==".to_string(), // user:wrong
        ] {
            let r = send(&c, "GET", &url, None, &[("authorization", &wrong)]).await;
            assert_eq!(r.status, 401, "GET {path} with {wrong:?}");
        }
    }
    // Mutations are refused too, and change nothing.
    let url = gw.admin_url(&format!(
        "/api/upstreams/api/servers/127.0.0.1:{}/disable",
        a.port()
    ));
    let r = send(&c, "POST", &url, None, &[("authorization", "Bearer nope")]).await;
    assert_eq!(r.status, 401);
    assert_eq!(get(&c, &gw.url("/")).await.status, 200);
    let r = send(&c, "POST", &gw.admin_url("/api/reload"), None, &[]).await;
    assert_eq!(r.status, 401);

    // The right token, as Bearer or as the Basic password.
    let (status, _) = admin("GET", &gw.admin_url("/api/upstreams"), None).await;
    assert_eq!(status, 200);
    let basic = "Basic YWRtaW46dGVzdC10b2tlbi03ZjNh"; // admin:test-token-7f3a
    let r = send(
        &c,
        "GET",
        &gw.admin_url("/status"),
        None,
        &[("authorization", basic)],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("<html"));
}

#[test]
fn refuses_to_start_off_loopback_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.toml");
    let text = format!(
        "[server]\npid_file = \"{}\"\nupgrade_sock = \"{}\"\n\n[admin]\nlisten = \"0.0.0.0:{}\"\n\
         token_env = \"SWITCHYARD_TEST_UNSET_TOKEN_VARIABLE\"\n\n{}\
         [[routes]]\nname = \"all\"\nupstream = \"api\"\n\n[[upstreams]]\nname = \"api\"\n\
         [[upstreams.groups]]\nname = \"g\"\nservers = [{{ address = \"127.0.0.1\", port = 9 }}]\n",
        dir.path().join("pid").display(),
        dir.path().join("upgrade.sock").display(),
        free_port(),
        listener_section("web", &free_addr()),
    );
    std::fs::write(&path, text).unwrap();
    let (code, out, err) = run_cli(&["run", "-c", path.to_str().unwrap()]);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains("SWITCHYARD_TEST_UNSET_TOKEN_VARIABLE") && err.contains("loopback"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_without_a_token_needs_no_credentials() {
    let a = Origin::start("a");
    // token_env names a variable that is not set.
    let cfg =
        config("admin-open", &[&a]).replace(TOKEN_ENV, "SWITCHYARD_TEST_UNSET_TOKEN_VARIABLE");
    let gw = Gateway::start(&cfg);
    let r = get(&client(), &gw.admin_url("/api/upstreams")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(gw.wait_for_log("needs no credentials", std::time::Duration::from_secs(5)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_and_config_json() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let gw = start("admin-json", &[&a, &b]);
    distribution(&gw, 4).await;
    let (status, v) = admin("GET", &gw.admin_url("/api/upstreams"), None).await;
    assert_eq!(status, 200);
    assert!(v["instance_id"].as_str().unwrap().starts_with("admin-json"));
    let up = &v["upstreams"][0];
    assert_eq!(up["name"], "api");
    assert_eq!(up["algorithm"], "wrr");
    assert_eq!(up["servers"].as_array().unwrap().len(), 2);
    let s = server_json(&v, "api", &format!("127.0.0.1:{}", a.port()));
    assert_eq!(s["id"], format!("g/127.0.0.1:{}", a.port()));
    assert_eq!(s["group"], "g");
    assert_eq!(s["weight"], 1);
    assert_eq!(s["configured_weight"], 1);
    assert_eq!(s["enabled"], true);
    assert_eq!(s["standby"], false);
    assert_eq!(s["health"], "healthy");
    assert_eq!(s["healthy"], true);
    assert_eq!(s["in_flight"], 0);
    assert_eq!(s["requests"], 2);
    assert_eq!(s["failures"], 0);
    assert!(s["ewma_ms"].as_f64().unwrap() >= 0.0);
    for key in [
        "request_rate_per_s",
        "last_transition_ago_ms",
        "reason",
        "consecutive_passes",
    ] {
        assert!(s.get(key).is_some(), "missing {key} in {s:#}");
    }

    let (status, one) = admin("GET", &gw.admin_url("/api/upstreams/api"), None).await;
    assert_eq!((status, &one["name"]), (200, &Value::from("api")));
    let (status, _) = admin("GET", &gw.admin_url("/api/upstreams/nope"), None).await;
    assert_eq!(status, 404);

    let (status, cfg) = admin("GET", &gw.admin_url("/api/config"), None).await;
    assert_eq!(status, 200);
    assert_eq!(cfg["upstreams"][0]["name"], "api");
    assert_eq!(cfg["routes"][0]["upstream"], "api");
    assert_eq!(cfg["admin"]["token_env"], TOKEN_ENV);
    let text = cfg.to_string();
    assert!(!text.contains(TOKEN), "the token's value leaked: {text}");

    let (status, e) = admin("GET", &gw.admin_url("/api/nothing"), None).await;
    assert_eq!(status, 404);
    assert!(e["error"].is_string());
    let (status, _) = admin("DELETE", &gw.admin_url("/api/upstreams"), None).await;
    assert_eq!(status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_enable_drain_weight_change_traffic_until_reload() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let gw = start("admin-ops", &[&a, &b]);
    let server_url = |o: &Origin, action: &str| {
        gw.admin_url(&format!(
            "/api/upstreams/api/servers/127.0.0.1:{}/{action}",
            o.port()
        ))
    };
    let d = distribution(&gw, 20).await;
    assert_eq!((d["a"], d["b"]), (10, 10), "{d:?}");

    // disable a: everything goes to b.
    let (status, v) = admin("POST", &server_url(&a, "disable"), None).await;
    assert_eq!(status, 200, "{v:#}");
    assert_eq!(v["servers"][0]["enabled"], false);
    let d = distribution(&gw, 20).await;
    assert_eq!(d.get("a"), None, "{d:?}");
    assert_eq!(d["b"], 20);

    // enable a: both again.
    let (status, _) = admin("POST", &server_url(&a, "enable"), None).await;
    assert_eq!(status, 200);
    let d = distribution(&gw, 20).await;
    assert_eq!((d["a"], d["b"]), (10, 10), "{d:?}");

    // drain b: weight 0, everything goes to a; b stays enabled.
    let (status, v) = admin("POST", &server_url(&b, "drain"), None).await;
    assert_eq!(status, 200);
    assert_eq!(v["servers"][0]["weight"], 0);
    assert_eq!(v["servers"][0]["enabled"], true);
    let d = distribution(&gw, 20).await;
    assert_eq!(d.get("b"), None, "{d:?}");

    // weight b = 3: a:b = 1:3.
    let (status, v) = admin("PUT", &server_url(&b, "weight"), Some(r#"{"weight": 3}"#)).await;
    assert_eq!(status, 200, "{v:#}");
    assert_eq!(v["servers"][0]["weight"], 3);
    assert_eq!(v["servers"][0]["configured_weight"], 1);
    let d = distribution(&gw, 40).await;
    assert!(
        d["a"].abs_diff(10) <= 1 && d["b"].abs_diff(30) <= 1,
        "{d:?}"
    );

    // Bad changes: 400 / 404 / 405, nothing changes.
    for body in [
        r#"{"weight": 10001}"#,
        r#"{"weight": -1}"#,
        r#"{"w": 2}"#,
        "nope",
    ] {
        let (status, v) = admin("PUT", &server_url(&b, "weight"), Some(body)).await;
        assert_eq!(status, 400, "{body}: {v:#}");
        assert!(v["error"].as_str().unwrap().contains("weight"), "{v:#}");
    }
    let (status, _) = admin(
        "POST",
        &gw.admin_url("/api/upstreams/nope/servers/127.0.0.1:1/disable"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, v) = admin(
        "POST",
        &gw.admin_url("/api/upstreams/api/servers/127.0.0.1:1/disable"),
        None,
    )
    .await;
    assert_eq!(status, 404, "{v:#}");
    let (status, _) = admin("POST", &server_url(&b, "explode"), None).await;
    assert_eq!(status, 404);
    let (status, _) = admin("GET", &server_url(&b, "disable"), None).await;
    assert_eq!(status, 405);
    let (_, v) = admin("GET", &gw.admin_url("/api/upstreams"), None).await;
    assert_eq!(
        server_json(&v, "api", &format!("127.0.0.1:{}", b.port()))["weight"],
        3
    );

    // A reload restores the file's values.
    let (status, report) = admin("POST", &gw.admin_url("/api/reload"), None).await;
    assert_eq!(status, 200, "{report:#}");
    assert_eq!(report["applied"], true);
    let (_, v) = admin("GET", &gw.admin_url("/api/upstreams"), None).await;
    assert_eq!(
        server_json(&v, "api", &format!("127.0.0.1:{}", b.port()))["weight"],
        1
    );
    let d = distribution(&gw, 20).await;
    assert_eq!((d["a"], d["b"]), (10, 10), "{d:?}");
}
