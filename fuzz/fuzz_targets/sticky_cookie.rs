//! Sticky cookie token decoding: `Sticky::decode` never panics on hostile cookie values, only
//! decodes a value that is exactly some server's token, and every server's token decodes back to
//! a server with that token.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use switchyard_balance::ServerId;
use switchyard_config::{SameSite, StickyConfig};
use switchyard_proxy::sticky::{token_for, Sticky, TOKEN_LEN};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    upstream: &'a str,
    key: &'a [u8],
    servers: Vec<&'a str>,
    value: &'a str,
}

fuzz_target!(|input: Input<'_>| {
    let cfg = StickyConfig {
        cookie: "SWITCHYARD_STICKY".to_string(),
        ttl_s: 0,
        // Unset: the key is derived from the upstream's name.
        key_env: "SWITCHYARD_FUZZ_NO_SUCH_VARIABLE".to_string(),
        // The cookie attributes' defaults; tokens do not depend on them.
        path: "/".to_string(),
        domain: String::new(),
        secure: false,
        http_only: true,
        same_site: SameSite::Lax,
    };
    let ids: Vec<ServerId> = input
        .servers
        .iter()
        .map(|s| ServerId::from_raw(s))
        .collect();
    let sticky = Sticky::new(input.upstream, cfg, ids.iter().cloned());

    // `decode` returns the server by reference or by value depending on the version: `&id` fits
    // both.
    if let Some(id) = sticky.decode(input.value) {
        assert_eq!(
            sticky.token(&id),
            input.value,
            "decoded a value that is not a token"
        );
    }
    for id in &ids {
        let t = sticky.token(id);
        assert_eq!(t.len(), TOKEN_LEN);
        assert!(t
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        let back = sticky
            .decode(&t)
            .expect("a server's own token does not decode");
        assert_eq!(sticky.token(&back), t);
        let _ = sticky.set_cookie(id, true);
    }
    // Any key works and yields a well-formed token.
    let t = token_for(input.key, input.value);
    assert_eq!(t.len(), TOKEN_LEN);
});
