//! Config parsing and validation: any text either parses into a valid `Config` or returns
//! errors that name a key path; it never panics. An accepted config must also survive the
//! summary and the per-route lookups the gateway does when it builds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match switchyard_config::parse_str(text) {
        Ok(cfg) => {
            let _ = switchyard_config::summary(&cfg);
            for route in &cfg.routes {
                let _ = cfg.upstream(&route.upstream);
            }
        }
        Err(errs) => {
            // Every error renders, and a located error points inside the text.
            let _ = errs.to_string();
            let lines = text.matches('\n').count() + 1;
            for e in &errs.errors {
                if let Some(line) = e.line {
                    assert!(line >= 1 && line <= lines, "line {line} out of 1..={lines}");
                }
            }
        }
    }
});
