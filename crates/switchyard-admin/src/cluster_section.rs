//! The status page's "Fleet" section (with `[cluster]`): this instance's source and revision,
//! its last error and ignored keys, and every live member, those behind the latest revision
//! flagged. Markup for tools and tests: `<section id="cluster" data-latest-revision="N">`, each
//! member a `<tr class="member" data-member="ID" data-behind="true|false">`.

use std::fmt::Write as _;

use switchyard_proxy::ClusterView;

use crate::status::{esc, utc};

/// Appends the section for `view` to `out`.
pub fn render(out: &mut String, view: &ClusterView) {
    let _ = write!(
        out,
        "<section id=\"cluster\" data-latest-revision=\"{latest}\"><h2>Fleet</h2>\n\
         <p class=\"meta\">etcd {} · this instance ({}) runs revision {} of {latest}</p>\n",
        if view.source_up {
            "connected"
        } else {
            "<span class=\"rejected\">unreachable: serving the last applied configuration</span>"
        },
        esc(&view.instance_id),
        view.applied_revision,
        latest = view.latest_revision,
    );
    if let Some(e) = &view.last_error {
        let _ = writeln!(out, "<p class=\"rejected\">last error: {}</p>", esc(e));
    }
    for p in &view.problems {
        let _ = writeln!(out, "<p class=\"rejected\">{}</p>", esc(p));
    }
    out.push_str(
        "<table id=\"members\"><tr><th>Instance</th><th>Version</th><th class=\"num\">Revision</th>\
         <th>Started</th><th>Last error</th></tr>\n",
    );
    for m in &view.members {
        let _ = writeln!(
            out,
            "<tr class=\"member\" data-member=\"{id}\" data-behind=\"{behind}\"><td>{id}</td>\
             <td>{}</td><td class=\"num\">{}{}</td><td>{}</td><td>{}</td></tr>",
            esc(&m.version),
            m.applied_revision,
            if m.behind {
                " <span class=\"rejected\">behind</span>"
            } else {
                ""
            },
            utc(m.started_at),
            esc(m.last_error.as_deref().unwrap_or("")),
            id = esc(&m.instance_id),
            behind = m.behind,
        );
    }
    out.push_str("</table></section>\n");
}
