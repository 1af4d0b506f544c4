//! The gateway under test: the real binary started on a config in a temporary directory.

use super::*;

/// A running `switchyard run -c <file>` process. Dropping it kills the process (SIGKILL) and
/// waits for it; if the test is panicking, the gateway's log is printed to stderr first.
pub struct Gateway {
    child: Child,
    dir: tempfile::TempDir,
    config_path: PathBuf,
    listeners: Vec<(String, SocketAddr)>,
    metrics: Option<SocketAddr>,
    admin: Option<SocketAddr>,
}

/// Turns a wildcard listen address into one a client can connect to.
fn connectable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

/// The `listen` addresses of a config: `(listener name, addr)`, `[metrics]`, `[admin]`.
#[allow(clippy::type_complexity)]
fn listen_addrs(
    toml_text: &str,
) -> (
    Vec<(String, SocketAddr)>,
    Option<SocketAddr>,
    Option<SocketAddr>,
) {
    let table: toml::Table = toml_text
        .parse()
        .unwrap_or_else(|e| panic!("test config is not valid TOML: {e}\n{toml_text}"));
    let parse = |v: &toml::Value| -> SocketAddr {
        connectable(
            v.as_str()
                .unwrap_or_else(|| panic!("listen must be a string: {v}"))
                .parse()
                .unwrap_or_else(|e| panic!("bad listen address {v}: {e}")),
        )
    };
    let mut listeners = Vec::new();
    if let Some(arr) = table.get("listeners").and_then(|v| v.as_array()) {
        for l in arr {
            let name = l
                .get("name")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string();
            if let Some(addr) = l.get("listen") {
                listeners.push((name, parse(addr)));
            }
        }
    }
    let metrics = table
        .get("metrics")
        .and_then(|m| m.get("listen"))
        .map(parse);
    let admin = table.get("admin").map(|a| {
        a.get("listen")
            .map(parse)
            .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::LOCALHOST, 9000)))
    });
    (listeners, metrics, admin)
}

/// Adds `pid_file` and `upgrade_sock` inside `dir` to `[server]` unless the config sets them, so
/// that gateways of parallel tests never share `/tmp/switchyard.pid` or the upgrade socket. The rest
/// of the text is kept verbatim (only lines after `[server]` shift).
fn isolate_server_paths(toml_text: &str, dir: &Path) -> String {
    let table: toml::Table = toml_text.parse().unwrap();
    let server = table.get("server").and_then(|v| v.as_table());
    let mut extra = String::new();
    if server.is_none_or(|s| !s.contains_key("pid_file")) {
        extra.push_str(&format!(
            "pid_file = {}\n",
            toml::Value::String(dir.join("switchyard.pid").display().to_string())
        ));
    }
    if server.is_none_or(|s| !s.contains_key("upgrade_sock")) {
        extra.push_str(&format!(
            "upgrade_sock = {}\n",
            toml::Value::String(dir.join("upgrade.sock").display().to_string())
        ));
    }
    if extra.is_empty() {
        return toml_text.to_string();
    }
    let mut out = String::with_capacity(toml_text.len() + extra.len() + 16);
    let mut done = false;
    for line in toml_text.lines() {
        out.push_str(line);
        out.push('\n');
        if !done && line.trim() == "[server]" {
            out.push_str(&extra);
            done = true;
        }
    }
    if !done {
        return format!("[server]\n{extra}\n{toml_text}");
    }
    out
}

impl Gateway {
    /// Starts `switchyard run -c <file>` with `toml` written into a temporary directory and
    /// `RUST_LOG=info`; returns once every `listen` address (listeners, `[metrics]`, `[admin]`)
    /// accepts TCP connections. Panics with the gateway's log if that takes over 30 s or the
    /// process exits.
    pub fn start(toml: &str) -> Gateway {
        Gateway::start_with_env(toml, &[])
    }

    /// Like [`Gateway::start`] with extra environment variables (tokens, keys).
    pub fn start_with_env(toml: &str, env: &[(&str, &str)]) -> Gateway {
        Gateway::spawn(switchyard_bin(), &["run", "-c"], toml, env)
    }

    /// Starts an example program of `switchyard-proxy` (an embedder's gateway built with
    /// `Gateway::builder`) as `<example> <config file>`, building it when missing.
    pub fn start_example(example: &str, toml: &str, env: &[(&str, &str)]) -> Gateway {
        Gateway::spawn(example_bin(example), &[], toml, env)
    }

    fn spawn(program: PathBuf, args: &[&str], toml: &str, env: &[(&str, &str)]) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("switchyard.toml");
        let text = isolate_server_paths(toml, dir.path());
        std::fs::write(&config_path, &text).unwrap();
        let (listeners, metrics, admin) = listen_addrs(&text);
        let stdout = std::fs::File::create(dir.path().join("stdout.log")).unwrap();
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let mut cmd = Command::new(program);
        cmd.args(args)
            .arg(&config_path)
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let mut gw = Gateway {
            child,
            dir,
            config_path,
            listeners,
            metrics,
            admin,
        };
        gw.wait_ready(Duration::from_secs(30));
        gw
    }

    fn wait_ready(&mut self, timeout: Duration) {
        let started = Instant::now();
        let deadline = started + timeout;
        let mut addrs: Vec<SocketAddr> = self.listeners.iter().map(|(_, a)| *a).collect();
        addrs.extend(self.metrics);
        addrs.extend(self.admin);
        for addr in addrs {
            loop {
                if let Some(status) = self.child.try_wait().unwrap() {
                    panic!(
                        "switchyard exited ({status}) before {addr} accepted connections; log:\n{}",
                        self.log()
                    );
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    break;
                }
                if Instant::now() > deadline {
                    panic!(
                        "switchyard did not accept connections on {addr} within {timeout:?}; log:\n{}",
                        self.log()
                    );
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        }
        // Readiness normally takes well under a second; say so when it did not, to find the
        // occasional slow test run.
        if started.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "note: switchyard ({}) took {:?} to accept connections",
                self.config_path.display(),
                started.elapsed()
            );
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the gateway wrote so far (stdout, then stderr).
    pub fn log(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        let out = read("stdout.log");
        let err = read("stderr.log");
        format!("{out}{err}")
    }

    /// Waits (≤ `timeout`) until the log contains `needle`; returns whether it did.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The path of the config file the gateway was started with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The temporary directory holding the config and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Overwrites the config file (for reload tests).
    pub fn write_config(&self, toml: &str) {
        let text = isolate_server_paths(toml, self.dir.path());
        std::fs::write(&self.config_path, text).unwrap();
    }

    /// Sends a signal (`"HUP"`, `"TERM"`, ...) to the process with `kill(1)`.
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(st.success(), "kill -{sig} {} failed", self.pid());
    }

    /// Waits (≤ `timeout`) for the process to exit; returns its exit code (-1 for a signal) or
    /// `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st.code().unwrap_or(-1));
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The address of the listener named `name`.
    pub fn listener(&self, name: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no listener named {name}"))
    }

    /// The address of the first listener.
    pub fn addr(&self) -> SocketAddr {
        self.listeners.first().expect("config has no listeners").1
    }

    /// `http://<first listener><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr(), path)
    }

    /// `http://<listener name><path>`.
    pub fn listener_url(&self, name: &str, path: &str) -> String {
        format!("http://{}{}", self.listener(name), path)
    }

    /// The `[metrics]` address.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics.expect("config has no [metrics]")
    }

    /// The `[admin]` address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.expect("config has no [admin]")
    }

    /// `http://<admin><path>`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin_addr(), path)
    }

    /// Fetches `/metrics` and returns its text (panics on a non-200 answer).
    pub async fn metrics_text(&self) -> String {
        let url = format!("http://{}/metrics", self.metrics_addr());
        let resp = client().get(url).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "GET /metrics");
        resp.text().await.unwrap()
    }

    /// Fetches and parses `/metrics`.
    pub async fn metrics(&self) -> Vec<Sample> {
        parse_metrics(&self.metrics_text().await)
    }

    /// `/metrics` once the sum of `name{labels}` reaches `want` (or after 3 s, whatever it is
    /// then). A request's outcome is counted in Pingora's `logging` hook, which runs after the
    /// response was written: a client may have read it a moment before the count moves.
    pub async fn metrics_once(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        want: f64,
    ) -> Vec<Sample> {
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        loop {
            let samples = self.metrics().await;
            if metric_sum(&samples, name, labels) >= want || std::time::Instant::now() > deadline {
                return samples;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `switchyard_upstream_requests_total{upstream}` by outcome, read once the `success`
    /// outcome reaches `successes` (or after 3 s): `outcomes("stale_connection")`.
    pub async fn upstream_outcomes(&self, upstream: &str, successes: f64) -> impl Fn(&str) -> f64 {
        const NAME: &str = "switchyard_upstream_requests_total";
        let samples = self
            .metrics_once(
                NAME,
                &[("upstream", upstream), ("outcome", "success")],
                successes,
            )
            .await;
        let upstream = upstream.to_string();
        move |outcome| {
            metric_sum(
                &samples,
                NAME,
                &[("upstream", &upstream), ("outcome", outcome)],
            )
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let tail: String = {
                let chars: Vec<char> = log.chars().collect();
                let start = chars.len().saturating_sub(16_000);
                chars[start..].iter().collect()
            };
            eprintln!(
                "----- switchyard log ({}) -----\n{tail}\n----- end of log -----",
                self.config_path.display()
            );
        }
    }
}
