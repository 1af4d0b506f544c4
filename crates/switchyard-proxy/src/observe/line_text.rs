//! The pieces of an access-log line, appended to a byte buffer without `fmt`: JSON fields with
//! their string escaping, integers (`itoa`), milliseconds with three decimals, IP addresses and
//! NGINX's log escaping.
//!
//! Escaping scans the bytes and copies runs that need none in one piece: a line is mostly such
//! runs, so formatting one costs little more than copying it.

use std::net::IpAddr;
use std::time::Duration;

use super::ip_text::IpText;

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";
const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";

/// The prefix of a field, `,"key":`, made at compile time from the key's literal.
macro_rules! key {
    ($k:literal) => {
        concat!(",\"", $k, "\":")
    };
}
pub(crate) use key;

/// `,"key":"value"` (JSON-escaped) or `,"key":null`; `key` is the field's prefix ([`key!`]),
/// a literal: inlined, its copy has a constant length.
#[inline(always)]
pub(crate) fn str_field(out: &mut Vec<u8>, key: &str, value: Option<&str>) {
    out.extend_from_slice(key.as_bytes());
    match value {
        Some(v) => json_str(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// [`str_field`] for header bytes (invalid UTF-8 replaced by U+FFFD, as
/// `String::from_utf8_lossy` does). Printable ASCII, the usual case, is copied without a UTF-8
/// check.
#[inline(always)]
pub(crate) fn bytes_field(out: &mut Vec<u8>, key: &str, value: Option<&[u8]>) {
    out.extend_from_slice(key.as_bytes());
    match value {
        Some(v) if json_clean(v, true) => {
            out.push(b'"');
            out.extend_from_slice(v);
            out.push(b'"');
        }
        Some(v) => json_bytes_slow(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// Bytes that need escaping or are not ASCII, as a JSON string.
#[cold]
#[inline(never)]
fn json_bytes_slow(out: &mut Vec<u8>, v: &[u8]) {
    match std::str::from_utf8(v) {
        Ok(v) => json_escaped(out, v),
        Err(_) => json_escaped(out, &String::from_utf8_lossy(v)),
    }
}

/// `,"key":n` or `,"key":null`.
#[inline(always)]
pub(crate) fn num_field(out: &mut Vec<u8>, key: &str, value: Option<u64>) {
    out.extend_from_slice(key.as_bytes());
    match value {
        Some(v) => push_u64(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// `,"key":` followed by the milliseconds of `d` with three decimals ([`push_millis`]).
#[inline(always)]
pub(crate) fn millis_field(out: &mut Vec<u8>, key: &str, d: Duration) {
    out.extend_from_slice(key.as_bytes());
    push_millis(out, d);
}

/// `0x01` in every byte of a word.
const ONES: u64 = 0x0101_0101_0101_0101;
/// The high bit of every byte of a word.
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// True if none of the eight bytes of `w` needs escaping in a JSON string (a control character,
/// `"` or `\`), and with `ascii` none is above 0x7f: the word-at-a-time tests of "Bit Twiddling
/// Hacks" (`hasless`, `haszero`), which never miss such a byte.
#[inline(always)]
fn word_is_clean(w: u64, ascii: bool) -> bool {
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
    let quote = w ^ (ONES * u64::from(b'"'));
    let quote = quote.wrapping_sub(ONES) & !quote & HIGHS;
    let backslash = w ^ (ONES * u64::from(b'\\'));
    let backslash = backslash.wrapping_sub(ONES) & !backslash & HIGHS;
    let high = if ascii { w & HIGHS } else { 0 };
    control | quote | backslash | high == 0
}

#[inline]
fn json_needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// True if no byte of `bytes` needs escaping in a JSON string, and with `ascii` all are ASCII:
/// eight bytes at a time, the last word overlapping the one before it.
#[inline(always)]
pub(crate) fn json_clean(bytes: &[u8], ascii: bool) -> bool {
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[i..i + 8]);
        u64::from_le_bytes(w)
    };
    if bytes.len() < 8 {
        return bytes
            .iter()
            .all(|&b| !json_needs_escape(b) && (!ascii || b < 0x80));
    }
    let mut i = 0;
    while i + 8 < bytes.len() {
        if !word_is_clean(word(i), ascii) {
            return false;
        }
        i += 8;
    }
    word_is_clean(word(bytes.len() - 8), ascii)
}

/// `s` as a JSON string, quotes included: `"` and `\` escaped, control characters as `\n`,
/// `\r`, `\t` or `\u00XX` (what `serde_json` writes). A string that needs no escaping (checked
/// eight bytes at a time) is copied in one piece.
#[inline(always)]
pub(crate) fn json_str(out: &mut Vec<u8>, s: &str) {
    if json_clean(s.as_bytes(), false) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        json_escaped(out, s);
    }
}

/// [`json_str`] for a string that needs escaping: clean stretches are copied whole.
#[cold]
#[inline(never)]
fn json_escaped(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut clean = 0;
    for (j, &b) in bytes.iter().enumerate() {
        if json_needs_escape(b) {
            out.extend_from_slice(&bytes[clean..j]);
            clean = j + 1;
            json_escape(out, b);
        }
    }
    out.extend_from_slice(&bytes[clean..]);
    out.push(b'"');
}

fn json_escape(out: &mut Vec<u8>, b: u8) {
    match b {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        0x08 => out.extend_from_slice(b"\\b"),
        0x0c => out.extend_from_slice(b"\\f"),
        _ => out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX_LOWER[usize::from(b >> 4)],
            HEX_LOWER[usize::from(b & 0xf)],
        ]),
    }
}

/// `n` in decimal.
#[inline]
pub(crate) fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// The milliseconds of `d` with three decimals (`12.345`), rounded to the microsecond.
pub(crate) fn push_millis(out: &mut Vec<u8>, d: Duration) {
    let micros = (d.as_nanos() + 500) / 1000;
    let micros = u64::try_from(micros).unwrap_or(u64::MAX);
    push_u64(out, micros / 1000);
    let frac = micros % 1000;
    out.extend_from_slice(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

/// An IP address as `Display` writes it (dotted quad; RFC 5952 for IPv6).
#[inline]
pub(crate) fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    out.extend_from_slice(IpText::of(ip).as_bytes());
}

/// NGINX's default log escaping: `"`, `\` and bytes outside printable ASCII as `\xHH`.
pub(crate) fn nginx_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut clean = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b != b'"' && b != b'\\' && (0x20..0x7f).contains(&b) {
            continue;
        }
        out.extend_from_slice(&bytes[clean..i]);
        clean = i + 1;
        out.extend_from_slice(&[
            b'\\',
            b'x',
            HEX_UPPER[usize::from(b >> 4)],
            HEX_UPPER[usize::from(b & 0xf)],
        ]);
    }
    out.extend_from_slice(&bytes[clean..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn json_strings_match_serde_json() {
        for s in [
            "",
            "plain",
            "a\"b\\c",
            "tab\there\nnew\rline",
            "\u{0}\u{1}\u{8}\u{c}\u{1f}\u{7f}",
            "héllo → 世界",
            "\"\"",
            "end\\",
        ] {
            let ours = text(|o| json_str(o, s));
            let theirs = serde_json::to_string(s).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(ours, theirs, "{s:?}");
        }
    }

    /// Random strings mixing clean runs, escapes and multi-byte characters, at every offset of
    /// the eight-byte words.
    #[test]
    fn json_strings_match_serde_json_at_every_offset() {
        let pieces = [
            "a",
            "bcdefghij",
            "\"",
            "\\",
            "\n",
            "\u{1}",
            "é",
            "世",
            "\u{7f}",
            " ",
        ];
        for _ in 0..2000 {
            let n = rand::random::<u32>() % 40;
            let s: String = (0..n)
                .map(|_| pieces[rand::random::<u32>() as usize % pieces.len()])
                .collect();
            let ours = text(|o| json_str(o, &s));
            let theirs = serde_json::to_string(&s).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(ours, theirs, "{s:?}");
        }
    }

    /// The fast check against a byte-by-byte one, at every length up to 40 and with the odd
    /// byte at every position (the overlapping last word included).
    #[test]
    fn clean_check_never_misses_a_byte() {
        for len in 0..40 {
            for at in 0..len {
                for odd in [0u8, 0x1f, b'"', b'\\', 0x7f, 0x80, 0xff, b' ', b'~'] {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = odd;
                    for ascii in [false, true] {
                        let want = bytes
                            .iter()
                            .all(|&b| !json_needs_escape(b) && (!ascii || b < 0x80));
                        assert_eq!(json_clean(&bytes, ascii), want, "{bytes:?} ascii={ascii}");
                    }
                }
            }
        }
    }

    /// Header bytes of every kind (quotes, backslashes, control characters, non-ASCII,
    /// invalid UTF-8), at random, give what serde_json writes for their lossy UTF-8 text.
    #[test]
    fn hostile_header_bytes_match_serde_json() {
        let pieces: [&[u8]; 12] = [
            b"a",
            b"Mozilla/5.0 (X11)",
            b"\"",
            b"\\",
            b"\n",
            b"\x01",
            b"\x7f",
            "é".as_bytes(),
            "世".as_bytes(),
            b"\xff",
            b"\xc3",
            b"\xe4\xb8",
        ];
        for _ in 0..3000 {
            let n = rand::random::<u32>() % 24;
            let bytes: Vec<u8> = (0..n)
                .flat_map(|_| {
                    pieces[rand::random::<u32>() as usize % pieces.len()]
                        .iter()
                        .copied()
                })
                .collect();
            let ours = text(|o| bytes_field(o, key!("ua"), Some(&bytes)));
            let lossy = String::from_utf8_lossy(&bytes);
            let theirs = serde_json::to_string(&lossy).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(ours, format!(",\"ua\":{theirs}"), "{bytes:?}");
            let parsed: serde_json::Value = serde_json::from_str(&format!("{{{}}}", &ours[1..]))
                .unwrap_or_else(|e| panic!("{ours}: {e}"));
            assert_eq!(parsed["ua"], serde_json::Value::String(lossy.into_owned()));
        }
    }

    #[test]
    fn header_bytes_are_replaced_when_not_utf8() {
        let line = text(|o| bytes_field(o, key!("ua"), Some(b"a\xffb")));
        assert_eq!(line, ",\"ua\":\"a\u{fffd}b\"");
        assert_eq!(text(|o| bytes_field(o, key!("ua"), None)), ",\"ua\":null");
    }

    #[test]
    fn numbers_millis_and_addresses() {
        assert_eq!(
            text(|o| num_field(o, key!("n"), Some(u64::MAX))),
            ",\"n\":18446744073709551615"
        );
        assert_eq!(text(|o| num_field(o, key!("n"), None)), ",\"n\":null");
        for (d, want) in [
            (Duration::from_micros(12_345), "12.345"),
            (Duration::from_nanos(12_345_500), "12.346"),
            (Duration::from_nanos(499), "0.000"),
            (Duration::from_secs(3), "3000.000"),
            (Duration::from_micros(7), "0.007"),
        ] {
            assert_eq!(text(|o| push_millis(o, d)), want);
        }
        for ip in [
            "127.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "2001:db8::8a2e:370:7334",
        ] {
            let parsed: IpAddr = ip.parse().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(text(|o| push_ip(o, parsed)), ip);
        }
    }

    #[test]
    fn nginx_escaping() {
        assert_eq!(
            text(|o| nginx_escaped(o, b"/a\"b\\c\x01\x7f\xc3\xa9 ok")),
            "/a\\x22b\\x5Cc\\x01\\x7F\\xC3\\xA9 ok"
        );
        assert_eq!(text(|o| nginx_escaped(o, b"")), "");
    }
}
