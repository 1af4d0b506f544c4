//! Request path normalisation (`normalize::normalize_path`): never panics, and what it returns is
//! normal — no `//`, no `.` or `..` segment, no lower-case or unreserved percent-encoding, no
//! encoded slash unless kept — and stays unchanged when normalised again.
#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use switchyard_proxy::normalize::{normalize_path, EncodedSlashes};

fn is_hex(b: u8) -> bool {
    b.is_ascii_hexdigit()
}

fn check_normal(out: &str, mode: EncodedSlashes) {
    assert!(out.starts_with('/'), "{out:?}");
    let bytes = out.as_bytes();
    let segments: Vec<&str> = out[1..].split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        assert!(!seg.is_empty() || last, "empty segment in {out:?}");
        assert!(*seg != "." && *seg != "..", "dot segment in {out:?}");
        if mode == EncodedSlashes::Keep {
            for piece in seg.split("%2F").flat_map(|p| p.split("%5C")) {
                assert!(piece != "." && piece != "..", "dot piece in {out:?}");
            }
        }
    }
    assert!(!out.contains('\\'), "raw backslash in {out:?}");
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            assert!(i + 2 < bytes.len(), "truncated escape in {out:?}");
            let (h, l) = (bytes[i + 1], bytes[i + 2]);
            assert!(is_hex(h) && is_hex(l), "bad escape in {out:?}");
            assert!(
                !h.is_ascii_lowercase() && !l.is_ascii_lowercase(),
                "lower-case escape in {out:?}"
            );
            let v = u8::from_str_radix(&out[i + 1..i + 3], 16).unwrap();
            assert!(
                !(v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~')),
                "encoded unreserved in {out:?}"
            );
            if mode == EncodedSlashes::Reject {
                assert!(v != b'/' && v != b'\\', "encoded slash in {out:?}");
            }
            i += 3;
        } else {
            i += 1;
        }
    }
}

fuzz_target!(|input: (bool, &str)| {
    let (keep, path) = input;
    let mode = if keep {
        EncodedSlashes::Keep
    } else {
        EncodedSlashes::Reject
    };
    let Ok(out) = normalize_path(path, mode) else {
        return;
    };
    if !path.starts_with('/') {
        assert!(matches!(out, Cow::Borrowed(p) if p == path));
        return;
    }
    // Borrowed exactly when nothing changed.
    match &out {
        Cow::Borrowed(p) => assert_eq!(*p, path),
        Cow::Owned(p) => assert_ne!(p, path),
    }
    check_normal(&out, mode);
    // Idempotent, and without allocation the second time.
    assert!(matches!(normalize_path(&out, mode), Ok(Cow::Borrowed(_))));
    // Never longer than the input, but for a backslash kept as `%5C` and a final `/`.
    let backslashes = path.bytes().filter(|&b| b == b'\\').count();
    assert!(out.len() <= path.len() + 2 * backslashes + 1);
    // What `reject` accepts, `keep` accepts the same way.
    if !keep {
        assert_eq!(normalize_path(path, EncodedSlashes::Keep).as_deref(), Ok(&*out));
    }
});
