//! Config snippets: server sections with unique ids, listeners and upstreams over test origins.

use super::*;

/// A process-wide unique instance id: `<prefix>-<pid>-<n>`.
pub fn unique_id(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A `[server]` table for tests: unique `instance_id`, one thread, 1 s grace period.
pub fn server_section(prefix: &str) -> String {
    format!(
        "[server]\ninstance_id = \"{}\"\nthreads = 1\ngrace_period_s = 1\n\n",
        unique_id(prefix)
    )
}

/// A `[[listeners]]` table: an `http` listener named `name` on `listen`.
pub fn listener_section(name: &str, listen: &str) -> String {
    format!("[[listeners]]\nname = \"{name}\"\nprotocol = \"http\"\nlisten = \"{listen}\"\n\n")
}

/// A `[[upstreams]]` table named `name` with one group `g` holding `origins` (default weights).
/// Server identities are `g/127.0.0.1:<port>`.
pub fn upstream_section(name: &str, origins: &[&Origin]) -> String {
    let mut s =
        format!("[[upstreams]]\nname = \"{name}\"\n  [[upstreams.groups]]\n  name = \"g\"\n");
    for o in origins {
        s.push_str(&format!(
            "    [[upstreams.groups.servers]]\n    address = \"{}\"\n    port = {}\n",
            o.addr().ip(),
            o.port()
        ));
    }
    s.push('\n');
    s
}

/// A gateway config with one http listener `web` and one route `r` for every path, without
/// retries, to upstream `u` at `origin`.
pub fn one_route_config(prefix: &str, origin: SocketAddr) -> String {
    format!(
        "{}{}[[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"u\"\nretries = 0\n\n{}",
        server_section(prefix),
        listener_section("web", &free_addr()),
        upstream_section_for("u", &[origin]),
    )
}
