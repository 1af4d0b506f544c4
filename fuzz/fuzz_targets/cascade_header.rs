//! Cascade header parsing and verification (`Switchyard-Cascade: id=.., ts=.., sig=..`):
//! `parse_header` and `verify` never panic on hostile values, a parsed header survives a round
//! trip, only a correct signature within the time window is accepted, and a header signed by
//! `header_value` always verifies.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use switchyard_proxy::cascade::{header_value, parse_header, sign, verify, Verdict, MAX_SKEW_S};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    value: &'a str,
    key: &'a [u8],
    id: &'a str,
    ts: u64,
    now: u64,
    method: &'a str,
    path: &'a str,
}

fuzz_target!(|input: Input<'_>| {
    // Arbitrary header values.
    if let Some(h) = parse_header(input.value) {
        assert!(!h.id.is_empty());
        assert!(!h.sig.is_empty() && h.sig.bytes().all(|b| b.is_ascii_hexdigit()));
        let again = format!("id={}, ts={}, sig={}", h.id, h.ts, h.sig);
        assert_eq!(
            parse_header(&again),
            Some(h.clone()),
            "round trip of {again:?}"
        );
    }
    let allowed = vec![input.id.to_string()];
    let verdict = verify(
        input.key,
        &allowed,
        Some(input.value),
        input.now,
        input.method,
        input.path,
    );
    if verdict != Verdict::Unauthorized {
        let h = parse_header(input.value).expect("accepted an unparsable header");
        assert!(
            input.now.abs_diff(h.ts) <= MAX_SKEW_S,
            "stale header accepted"
        );
        assert_eq!(
            h.sig.to_ascii_lowercase(),
            sign(input.key, h.id, h.ts, input.method, input.path),
            "bad signature accepted"
        );
        assert_eq!(verdict == Verdict::Accept, h.id == input.id);
    }

    // Headers this instance signs always verify (for ids a header can carry).
    let id = input.id;
    if !id.is_empty() && !id.contains(',') && id.trim() == id {
        let v = header_value(input.key, id, input.ts, input.method, input.path);
        let now = input.ts.saturating_add(input.now % (MAX_SKEW_S + 1));
        assert_eq!(
            verify(input.key, &allowed, Some(&v), now, input.method, input.path),
            Verdict::Accept,
            "own header {v:?} rejected"
        );
        assert_eq!(
            verify(input.key, &[], Some(&v), now, input.method, input.path),
            Verdict::Forbidden
        );
        // Any other method or path breaks the signature.
        let other_path = format!("{}/x", input.path);
        assert_eq!(
            verify(
                input.key,
                &allowed,
                Some(&v),
                now,
                input.method,
                &other_path
            ),
            Verdict::Unauthorized
        );
    }
});
