//! The attributes of the sticky cookie (issue #14, item 7c): `path`, `domain`, `secure`,
//! `http_only` and `same_site` in `[upstreams.sticky]`, and `Expires` (an IMF-fixdate, RFC 9110
//! §5.6.7) beside `Max-Age` when `ttl_s > 0`, for the browsers that ignore `Max-Age`. The exact
//! `Set-Cookie` lines are asserted.

mod support;

use std::time::{Duration, SystemTime};

use support::*;

const KEY_ENV: &str = "SY_TEST_STICKY_ATTR_KEY";

/// Listener `web`, a route to upstream `u` over `origin` with `[upstreams.sticky]` lines `sticky`.
fn config(prefix: &str, sticky: &str, origin: &Origin) -> String {
    let upstream = upstream_section("u", &[origin]).replacen(
        "name = \"u\"\n",
        &format!("name = \"u\"\n  [upstreams.sticky]\n  key_env = \"{KEY_ENV}\"\n{sticky}\n"),
        1,
    );
    format!(
        "{}{}[[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"u\"\n\n{upstream}",
        server_section(prefix),
        listener_section("web", &free_addr()),
    )
}

/// The only `Set-Cookie` of the first answer of a gateway started with `sticky`, split into the
/// cookie without its `Expires` attribute and the `Expires` date, if any.
async fn first_cookie(prefix: &str, sticky: &str) -> (String, Option<String>, SystemTime) {
    let origin = Origin::start("a");
    let gw = Gateway::start_with_env(&config(prefix, sticky, &origin), &[(KEY_ENV, "k")]);
    let sent = SystemTime::now();
    let r = get(&client(), &gw.url("/")).await;
    assert_eq!(r.status, 200);
    let all: Vec<String> = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(all.len(), 1, "{all:?}");
    let mut expires = None;
    let rest: Vec<&str> = all[0]
        .split("; ")
        .filter(|a| match a.strip_prefix("Expires=") {
            Some(date) => {
                expires = Some(date.to_string());
                false
            }
            None => true,
        })
        .collect();
    (rest.join("; "), expires, sent)
}

/// The cookie with its token replaced by `T`.
fn shape(cookie: &str) -> String {
    let (name, rest) = cookie.split_once('=').unwrap();
    let (token, attrs) = rest.split_once(';').unwrap_or((rest, ""));
    assert_eq!(token.len(), 16, "{cookie}");
    format!("{name}=T;{attrs}")
}

/// Asserts that `date` is an IMF-fixdate `ttl_s` after `sent` (± 5 s for slow machines).
fn assert_expires(date: &str, sent: SystemTime, ttl_s: u64) {
    let at = httpdate::parse_http_date(date).unwrap_or_else(|e| panic!("{date:?}: {e}"));
    assert_eq!(
        httpdate::fmt_http_date(at),
        date,
        "Expires is not an IMF-fixdate"
    );
    let want = sent + Duration::from_secs(ttl_s);
    let off = match at.duration_since(want) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    assert!(
        off <= Duration::from_secs(5),
        "Expires {date} is {off:?} off"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_sends_expires_beside_max_age() {
    let (cookie, expires, sent) = first_cookie("sticky-expires", "  ttl_s = 600\n").await;
    assert_eq!(
        shape(&cookie),
        "SWITCHYARD_STICKY=T; Path=/; HttpOnly; SameSite=Lax; Max-Age=600"
    );
    assert_expires(&expires.expect("no Expires beside Max-Age"), sent, 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attribute_is_configurable() {
    let sticky = "  cookie = \"route\"\n  ttl_s = 86400\n  path = \"/shop\"\n  \
                  domain = \"example.com\"\n  secure = true\n  http_only = false\n  \
                  same_site = \"strict\"\n";
    let (cookie, expires, sent) = first_cookie("sticky-attrs", sticky).await;
    assert_eq!(
        shape(&cookie),
        "route=T; Path=/shop; Domain=example.com; SameSite=Strict; Max-Age=86400; Secure"
    );
    assert_expires(&expires.unwrap(), sent, 86_400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_site_none_implies_secure_and_empty_omits_the_attribute() {
    let (cookie, expires, _) = first_cookie("sticky-none", "  same_site = \"none\"\n").await;
    assert_eq!(
        shape(&cookie),
        "SWITCHYARD_STICKY=T; Path=/; HttpOnly; SameSite=None; Secure",
        "browsers drop SameSite=None without Secure"
    );
    assert_eq!(expires, None, "a session cookie has no Expires");
    let (cookie, _, _) = first_cookie("sticky-omit", "  same_site = \"\"\n").await;
    assert_eq!(shape(&cookie), "SWITCHYARD_STICKY=T; Path=/; HttpOnly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_attributes_are_config_errors_with_their_key() {
    let origin = Origin::start("a");
    for (sticky, key) in [
        ("  same_site = \"sometimes\"\n", "same_site"),
        ("  path = \"shop\"\n", "path"),
        ("  path = \"/a;b\"\n", "path"),
        ("  domain = \"exa mple.com\"\n", "domain"),
    ] {
        let (code, _, err) = check(&config("sticky-bad", sticky, &origin));
        assert_eq!(code, 2, "{sticky}: {err}");
        assert!(
            err.contains(&format!("upstreams[0].sticky.{key} (line ")),
            "{sticky}: {err}"
        );
    }
}
