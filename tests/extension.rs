//! The extension trait, through the example programs an embedder would write: the real example
//! binaries, real sockets, real origins.

mod support;

use support::*;

fn config(origin: &Origin) -> (String, String) {
    let listen = free_addr();
    let toml = format!(
        r#"{server}
{listener}

[[routes]]
name = "private-api"
path_prefix = "/private"
upstream = "u"

[[routes]]
name = "public"
path_prefix = "/"
upstream = "u"

{upstream}
"#,
        server = server_section("ext"),
        listener = listener_section("web", &listen),
        upstream = upstream_section("u", &[origin]),
    );
    (toml, listen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_extension_guards_private_routes_only() {
    let origin = Origin::start("a");
    let (toml, listen) = config(&origin);
    let _gw = Gateway::start_example("api_key_auth", &toml, &[("API_KEYS", "k-1,k-2")]);
    let c = client();

    let denied = c
        .get(format!("http://{listen}/private/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    let wrong = c
        .get(format!("http://{listen}/private/x"))
        .header("x-api-key", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        origin.request_count(),
        0,
        "refused requests must not reach the origin"
    );

    let ok = c
        .get(format!("http://{listen}/private/x"))
        .header("x-api-key", "k-2")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let seen = origin.last_request().unwrap();
    assert_eq!(seen.path(), "/private/x");
    assert!(
        seen.header("x-api-key").is_none(),
        "the key is removed before going upstream"
    );

    let public = c.get(format!("http://{listen}/open")).send().await.unwrap();
    assert_eq!(public.status(), 200);
    assert_eq!(origin.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_rule_extension_changes_request_and_response_headers() {
    let origin = Origin::start("a");
    let (toml, listen) = config(&origin);
    let _gw = Gateway::start_example("header_rule", &toml, &[]);
    let c = client();

    let r1 = c.get(format!("http://{listen}/one")).send().await.unwrap();
    assert_eq!(r1.status(), 200);
    let served_by = r1.headers()["x-served-by"].to_str().unwrap().to_string();
    assert_eq!(served_by, format!("public g/127.0.0.1:{}", origin.port()));
    let first_id = origin
        .last_request()
        .unwrap()
        .header("x-request-seq")
        .unwrap();
    assert!(first_id.starts_with("sy-"), "{first_id}");

    let r2 = c.get(format!("http://{listen}/two")).send().await.unwrap();
    assert_eq!(r2.status(), 200);
    let second_id = origin
        .last_request()
        .unwrap()
        .header("x-request-seq")
        .unwrap();
    assert_ne!(first_id, second_id, "each request gets its own id");

    let kept = c
        .get(format!("http://{listen}/three"))
        .header("x-request-seq", "client-chosen")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.status(), 200);
    assert_eq!(
        origin
            .last_request()
            .unwrap()
            .header("x-request-seq")
            .as_deref(),
        Some("client-chosen")
    );
}
