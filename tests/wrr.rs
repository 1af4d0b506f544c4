//! Smooth weighted round robin (`algorithm = "wrr"`): interleaving, proportions, disabled servers
//! and weight inheritance from groups.

mod support;

use std::collections::BTreeMap;

use support::*;

/// One server line set: (origin, extra TOML lines such as `weight = 5`).
fn server(o: &Origin, extra: &str) -> String {
    format!(
        "    [[upstreams.groups.servers]]\n    address = \"127.0.0.1\"\n    port = {}\n    {extra}\n",
        o.port()
    )
}

fn config(prefix: &str, upstream_body: &str) -> String {
    format!(
        "{}{}[[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"u\"\n\n\
         [[upstreams]]\nname = \"u\"\nalgorithm = \"wrr\"\n{upstream_body}",
        server_section(prefix),
        listener_section("web", &free_addr()),
    )
}

/// Sends `n` sequential GETs and returns the answering origins in order.
async fn sequence(gw: &Gateway, n: usize) -> Vec<String> {
    let c = client();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let r = get(&c, &gw.url(&format!("/req/{i}"))).await;
        assert_eq!(r.status, 200, "request {i}: {:?}", r.body);
        out.push(r.origin().expect("x-origin"));
    }
    out
}

fn counts(seq: &[String]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for s in seq {
        *m.entry(s.clone()).or_insert(0) += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_5_1_interleave_smoothly() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let cfg = config(
        "wrr-51",
        &format!(
            "  [[upstreams.groups]]\n  name = \"g\"\n{}{}",
            server(&a, "weight = 5"),
            server(&b, "weight = 1")
        ),
    );
    let gw = Gateway::start(&cfg);
    let seq = sequence(&gw, 12).await;
    assert_eq!(
        seq.join(" "),
        "a a a b a a a a a b a a",
        "smooth WRR 5:1 interleaves (NGINX order)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_3_1_proportions_over_400_requests() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let cfg = config(
        "wrr-31",
        &format!(
            "  [[upstreams.groups]]\n  name = \"g\"\n{}{}",
            server(&a, "weight = 3"),
            server(&b, "weight = 1")
        ),
    );
    let gw = Gateway::start(&cfg);
    let seq = sequence(&gw, 400).await;
    let m = counts(&seq);
    let na = m.get("a").copied().unwrap_or(0);
    let nb = m.get("b").copied().unwrap_or(0);
    assert_eq!(na + nb, 400);
    assert!(na.abs_diff(300) <= 2, "a got {na}, want 300±2");
    assert!(nb.abs_diff(100) <= 2, "b got {nb}, want 100±2");
    // Never more than three in a row for a.
    assert!(
        !seq.windows(4).any(|w| w.iter().all(|s| s == "a")),
        "a got four in a row: not smooth"
    );
    assert_eq!(a.request_count(), na);
    assert_eq!(b.request_count(), nb);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_server_gets_nothing() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let c = Origin::start("c");
    let cfg = config(
        "wrr-disabled",
        &format!(
            "  [[upstreams.groups]]\n  name = \"g\"\n{}{}{}",
            server(&a, ""),
            server(&b, "enabled = false"),
            server(&c, "")
        ),
    );
    let gw = Gateway::start(&cfg);
    let seq = sequence(&gw, 30).await;
    let m = counts(&seq);
    assert_eq!(m.get("b"), None, "disabled server answered: {m:?}");
    assert_eq!(b.request_count(), 0);
    assert_eq!(b.connections(), 0);
    assert_eq!(m.get("a"), Some(&15), "{m:?}");
    assert_eq!(m.get("c"), Some(&15), "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_inherit_group_weight_unless_they_set_one() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let c = Origin::start("c");
    // blue weight 3: a inherits 3, b overrides with 1; green weight 2: c inherits 2. Total 6.
    let cfg = config(
        "wrr-groups",
        &format!(
            "  [[upstreams.groups]]\n  name = \"blue\"\n  weight = 3\n{}{}\
             \n  [[upstreams.groups]]\n  name = \"green\"\n  weight = 2\n{}",
            server(&a, ""),
            server(&b, "weight = 1"),
            server(&c, "")
        ),
    );
    let gw = Gateway::start(&cfg);
    let seq = sequence(&gw, 60).await;
    let m = counts(&seq);
    let got = |n: &str| m.get(n).copied().unwrap_or(0);
    // Smooth WRR is exact over whole cycles of the total weight (6): 10 cycles.
    assert_eq!(
        (got("a"), got("b"), got("c")),
        (30, 10, 20),
        "weights 3 (inherited), 1 (override), 2 (inherited): {m:?}"
    );
}
