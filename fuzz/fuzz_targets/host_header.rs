//! The `Host` validator (`host::parse_host`) and the names routes match (`host::route_name`,
//! `headers::strip_port`): never panic; an accepted value is exactly `host[:port]` with a host
//! of RFC 3986 characters only, and the router's port stripping agrees with the validator.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_proxy::headers::strip_port;
use switchyard_proxy::host::{parse_host, route_name};

fn allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b)
}

fuzz_target!(|value: &[u8]| {
    let Ok(hp) = parse_host(value) else {
        return;
    };
    assert!(!hp.host.is_empty());
    // The parts are the whole value.
    let rebuilt = match hp.port {
        Some(p) => format!("{}:{p}", hp.host),
        None => hp.host.to_string(),
    };
    assert_eq!(rebuilt.as_bytes(), value);
    if let Some(p) = hp.port {
        assert!(p.bytes().all(|b| b.is_ascii_digit()), "{p:?}");
    }
    if hp.host.starts_with('[') {
        assert!(hp.host.ends_with(']'));
    } else {
        assert!(hp.host.bytes().all(allowed), "{:?}", hp.host);
    }
    // The router strips the port the same way (a value that is all ASCII is valid UTF-8).
    let text = std::str::from_utf8(value).unwrap();
    assert_eq!(strip_port(text), hp.host);
    let name = route_name(hp.host);
    assert!(name.len() + 1 >= hp.host.len() && hp.host.starts_with(name));
});
