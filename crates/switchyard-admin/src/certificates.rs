//! The certificates of `https` listeners as the admin API and the status page show them: for
//! each, the file, the names it is chosen for and its expiry, as loaded by the running runtime
//! (so a reload that re-read a rotated file shows the new expiry at once).

use std::fmt::Write as _;

use switchyard_proxy::Runtime;

use crate::status::{esc, utc};

/// Adds `loaded_certificates` to each `https` listener's `tls` table of `config` (the running
/// configuration as JSON, listeners in runtime order).
pub(crate) fn annotate_config(rt: &Runtime, config: &mut serde_json::Value) {
    let Some(listeners) = config.get_mut("listeners").and_then(|l| l.as_array_mut()) else {
        return;
    };
    for (json, l) in listeners.iter_mut().zip(&rt.listeners) {
        let (Some(tls), Some(table)) = (
            l.tls.as_ref(),
            json.get_mut("tls").and_then(|t| t.as_object_mut()),
        ) else {
            continue;
        };
        if let Ok(v) = serde_json::to_value(&tls.certificates) {
            table.insert("loaded_certificates".to_string(), v);
        }
    }
}

/// Certificates expiring within this many days are marked on the status page.
const WARN_DAYS: i64 = 21;

/// Appends the status page's certificate table (nothing when no listener has TLS).
pub(crate) fn table(rt: &Runtime, now_unix: u64, out: &mut String) {
    if rt.listeners.iter().all(|l| l.tls.is_none()) {
        return;
    }
    out.push_str(
        "<h2>TLS certificates</h2>\n<table id=\"certificates\"><tr><th>Listener</th>\
         <th>Certificate</th><th>Names (chosen by SNI)</th><th>Subject</th><th>Expires</th>\
         <th class=\"num\">Days left</th></tr>\n",
    );
    let now = i64::try_from(now_unix).unwrap_or(i64::MAX);
    for l in &rt.listeners {
        for c in l.tls.iter().flat_map(|t| &t.certificates) {
            let days = (c.not_after_unix - now).div_euclid(86_400);
            let names = if c.served_names.is_empty() {
                "–".to_string()
            } else {
                esc(&c.served_names.join(", "))
            };
            let expires = utc(u64::try_from(c.not_after_unix).unwrap_or(0));
            let _ = writeln!(
                out,
                "<tr class=\"certificate\" data-listener=\"{}\" data-cert=\"{}\"><td>{}</td>\
                 <td><code>{}</code>{}</td><td>{names}</td><td>{}</td><td>{expires}</td>\
                 <td class=\"num{}\">{days}</td></tr>",
                esc(&l.cfg.name),
                esc(&c.key_path),
                esc(&l.cfg.name),
                esc(&c.cert),
                if c.default { " (default)" } else { "" },
                esc(&c.subject),
                if days < WARN_DAYS { " rejected" } else { "" },
            );
        }
    }
    out.push_str("</table>\n");
}
