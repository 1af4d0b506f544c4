//! Empty hash keys (issue #14, item 6): `consistent_hash` on a query parameter, a header, a cookie
//! or the Host whose value is empty treats the request like one without the key — the algorithm's
//! fallback (smooth weighted round robin) spreads it over the servers — instead of hashing the
//! empty string and sending every such request to one server. NGINX does the same (`hash` with an
//! empty key falls back to round robin).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::*;

const N: usize = 30;

/// Listener `web`; for each `(prefix, hash_on)` a route `path_prefix = "/<prefix>"` to upstream
/// `<prefix>` (`consistent_hash` on `hash_on`) over the same three origins.
fn config(origins: &[&Origin], keys: &[(&str, &str)]) -> String {
    let mut s = format!(
        "{}{}",
        server_section("empty-key"),
        listener_section("web", &free_addr())
    );
    for (prefix, hash_on) in keys {
        s.push_str(&format!(
            "[[routes]]\nname = \"{prefix}\"\npath_prefix = \"/{prefix}\"\nupstream = \"{prefix}\"\n\n"
        ));
        s.push_str(&upstream_section(prefix, origins).replacen(
            &format!("name = \"{prefix}\"\n"),
            &format!(
                "name = \"{prefix}\"\nalgorithm = \"consistent_hash\"\nhash_on = \"{hash_on}\"\n"
            ),
            1,
        ));
    }
    s
}

/// How many requests under `/<prefix>/<series>/` each origin received, largest first.
fn spread(origins: &[&Origin], prefix: &str, series: &str) -> Vec<usize> {
    let want = format!("/{prefix}/{series}/");
    let mut counts: Vec<usize> = origins
        .iter()
        .map(|o| {
            o.requests()
                .iter()
                .filter(|r| r.path().starts_with(&want))
                .count()
        })
        .collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    counts
}

fn by_origin(names: &[String]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for n in names {
        *m.entry(n.clone()).or_insert(0) += 1;
    }
    m
}

/// Three origins behind upstream `k` (`consistent_hash` on `hash_on`, route `/k`).
struct Setup {
    origins: [Origin; 3],
    gw: Gateway,
}

impl Setup {
    fn start(hash_on: &str) -> Setup {
        let origins = [Origin::start("a"), Origin::start("b"), Origin::start("c")];
        let refs: Vec<&Origin> = origins.iter().collect();
        let gw = Gateway::start(&config(&refs, &[("k", hash_on)]));
        Setup { origins, gw }
    }

    fn spread(&self, series: &str) -> Vec<usize> {
        let refs: Vec<&Origin> = self.origins.iter().collect();
        spread(&refs, "k", series)
    }

    /// Sends `N` requests without the key, then `N` with an empty one (`query` appended to the
    /// path, `headers` added), and checks that both spread alike, over every server. `tag` names
    /// the series in the paths.
    async fn empty_spreads_like_missing(&self, tag: &str, query: &str, headers: &[(&str, &str)]) {
        let cl = client();
        for i in 0..N {
            let r = get(&cl, &self.gw.url(&format!("/k/missing-{tag}/{i}"))).await;
            assert_eq!(r.status, 200);
        }
        for i in 0..N {
            let url = self.gw.url(&format!("/k/empty-{tag}/{i}{query}"));
            let r = send(&cl, "GET", &url, None, headers).await;
            assert_eq!(r.status, 200);
        }
        let missing = self.spread(&format!("missing-{tag}"));
        assert_eq!(missing, [N / 3; 3], "{tag}: requests without the key");
        assert_eq!(
            self.spread(&format!("empty-{tag}")),
            missing,
            "{tag}: requests with an empty key must spread like requests without it"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_query_parameter_spreads_like_a_missing_one() {
    let s = Setup::start("query:a");
    s.empty_spreads_like_missing("eq", "?a=", &[]).await;
    s.empty_spreads_like_missing("bare", "?b=1&a", &[]).await;
    // A non-empty value still pins: one origin for every request of one user.
    let cl = client();
    let mut seen = Vec::new();
    for i in 0..10 {
        let r = get(&cl, &s.gw.url(&format!("/k/set/{i}?a=user-7"))).await;
        seen.push(r.origin().unwrap());
    }
    assert_eq!(by_origin(&seen).len(), 1, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_header_spreads_like_a_missing_one() {
    let s = Setup::start("header:X-User");
    s.empty_spreads_like_missing("h", "", &[("X-User", "")])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_cookie_spreads_like_a_missing_one() {
    let s = Setup::start("cookie:s");
    s.empty_spreads_like_missing("c", "", &[("Cookie", "s=; other=1")])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_host_spreads_over_the_servers() {
    let s = Setup::start("host");
    // An HTTP/1.0 request without Host has an empty host. (A Host of only a port, `:8080`, is
    // not a valid Host and is answered 400 before routing: tests/hygiene.rs.)
    let addr = s.gw.addr();
    tokio::task::spawn_blocking(move || {
        for i in 0..N {
            let resp = raw_http(
                addr,
                &format!("GET /k/empty/{i} HTTP/1.0\r\n\r\n"),
                Duration::from_secs(5),
            );
            assert!(resp.contains(" 200 "), "{resp}");
        }
    })
    .await
    .unwrap();
    let empty_host = s.spread("empty");
    assert_eq!(
        empty_host,
        [N / 3; 3],
        "requests with an empty Host must spread over every server"
    );
}
