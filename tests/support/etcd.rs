//! A real etcd (Debian's `etcd-server`) for the fleet tests: one member or a cluster of several,
//! on loopback with free ports and temporary data directories, optionally with TLS (client
//! certificates) — started by the test, health-checked, killed on drop. Keys are read and
//! written with `etcdctl` (Debian's `etcd-client`).

use super::*;

/// TLS material for an etcd member: files in a directory the caller keeps.
#[derive(Clone)]
pub struct EtcdTls {
    /// CA certificate (PEM) that signed the server and client certificates.
    pub ca: PathBuf,
    /// Server certificate and key.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// A client certificate and key signed by the CA.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl EtcdTls {
    /// Generates a CA, a server certificate for 127.0.0.1/localhost and a client certificate
    /// into `dir`.
    pub fn generate(dir: &Path) -> EtcdTls {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        };
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "fleet test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose, cn: &str| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(names).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.extended_key_usages = vec![usage];
            p.key_usages = vec![
                rcgen::KeyUsagePurpose::DigitalSignature,
                rcgen::KeyUsagePurpose::KeyEncipherment,
            ];
            let cert = p.signed_by(&key, &issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_pem, server_key) = leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
            "etcd",
        );
        let (client_pem, client_key) = leaf(
            vec!["gateway".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
            "gateway",
        );
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        EtcdTls {
            ca: write("ca.pem", &ca.pem()),
            server_cert: write("etcd.pem", &server_pem),
            server_key: write("etcd-key.pem", &server_key),
            client_cert: write("client.pem", &client_pem),
            client_key: write("client-key.pem", &client_key),
        }
    }
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// A running etcd (one or more members). Dropping it kills every member.
pub struct Etcd {
    members: Vec<Member>,
    dir: tempfile::TempDir,
    tls: Option<EtcdTls>,
    /// `root` password when auth is on.
    auth: Option<String>,
}

impl Etcd {
    /// One member over plain HTTP.
    pub fn start() -> Etcd {
        Etcd::start_cluster(1, None)
    }

    /// `n` members, optionally serving clients over TLS with client certificates required.
    pub fn start_cluster(n: usize, tls: Option<EtcdTls>) -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                child: None,
            })
            .collect();
        let mut etcd = Etcd {
            members,
            dir,
            tls,
            auth: None,
        };
        for i in 0..n {
            etcd.spawn(i);
        }
        etcd.wait_healthy(Duration::from_secs(20));
        etcd
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    fn spawn(&mut self, i: usize) {
        let cluster: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect();
        let m = &self.members[i];
        let client_url = format!("{}://127.0.0.1:{}", self.scheme(), m.client_port);
        let peer_url = format!("http://127.0.0.1:{}", m.peer_port);
        let data = self.dir.path().join(&m.name);
        let log = std::fs::File::create(self.dir.path().join(format!("{}.log", m.name))).unwrap();
        let mut cmd = Command::new("etcd");
        cmd.arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&data)
            .arg("--listen-client-urls")
            .arg(&client_url)
            .arg("--advertise-client-urls")
            .arg(&client_url)
            .arg("--listen-peer-urls")
            .arg(&peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer_url)
            .arg("--initial-cluster")
            .arg(cluster.join(","))
            .arg("--initial-cluster-token")
            .arg(self.dir.path().to_string_lossy().as_ref())
            .arg("--heartbeat-interval")
            .arg("50")
            .arg("--election-timeout")
            .arg("500")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(tls) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&tls.server_cert)
                .arg("--key-file")
                .arg(&tls.server_key)
                .arg("--trusted-ca-file")
                .arg(&tls.ca)
                .arg("--client-cert-auth");
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start etcd (install Debian's etcd-server): {e}"));
        self.members[i].child = Some(child);
    }

    /// Client URLs of the members, comma-separated list as a TOML array body.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("{}://127.0.0.1:{}", self.scheme(), m.client_port))
            .collect()
    }

    /// `["url", ...]` for `etcd_endpoints = ...`.
    pub fn endpoints_toml(&self) -> String {
        let list: Vec<String> = self
            .endpoints()
            .iter()
            .map(|e| format!("\"{e}\""))
            .collect();
        format!("[{}]", list.join(", "))
    }

    /// The first member's client URL.
    pub fn endpoint(&self) -> String {
        self.endpoints()[0].clone()
    }

    /// The TLS material, if any.
    pub fn tls(&self) -> Option<&EtcdTls> {
        self.tls.as_ref()
    }

    fn live_endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| format!("{}://127.0.0.1:{}", self.scheme(), m.client_port))
            .collect()
    }

    /// Runs `etcdctl` against the live members; returns (success, stdout, stderr).
    pub fn ctl(&self, args: &[&str]) -> (bool, String, String) {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(self.live_endpoints().join(","))
            .arg("--command-timeout=5s")
            .arg("--dial-timeout=2s");
        if let Some(tls) = &self.tls {
            cmd.arg("--cacert")
                .arg(&tls.ca)
                .arg("--cert")
                .arg(&tls.client_cert)
                .arg("--key")
                .arg(&tls.client_key);
        }
        if let Some(pw) = &self.auth {
            cmd.arg("--user").arg(format!("root:{pw}"));
        }
        let out = cmd
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run etcdctl (install Debian's etcd-client): {e}"));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ctl_ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.ctl(args);
        assert!(ok, "etcdctl {args:?} failed: {err}{out}");
        out
    }

    /// Writes `value` at `key`.
    pub fn put(&self, key: &str, value: &str) {
        self.ctl_ok(&["put", key, "--", value]);
    }

    /// Writes `value` at `key` under a new lease of `ttl_s` seconds; returns the lease id (hex).
    pub fn put_with_lease(&self, key: &str, value: &str, ttl_s: u64) -> String {
        let out = self.ctl_ok(&["lease", "grant", &ttl_s.to_string()]);
        // "lease 694d7d5f1c0a6a0b granted with TTL(2s)"
        let id = out.split_whitespace().nth(1).unwrap().to_string();
        self.ctl_ok(&["put", "--lease", &id, key, "--", value]);
        id
    }

    /// Revokes lease `id` (its keys go).
    pub fn revoke(&self, id: &str) {
        self.ctl_ok(&["lease", "revoke", id]);
    }

    /// The value at `key`.
    pub fn get(&self, key: &str) -> Option<String> {
        let out = self.ctl_ok(&["get", "--print-value-only", key]);
        let v = out.strip_suffix('\n').unwrap_or(&out);
        (!out.is_empty()).then(|| v.to_string())
    }

    /// Keys under `prefix`.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.ctl_ok(&["get", "--prefix", "--keys-only", prefix])
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Deletes `key`.
    pub fn del(&self, key: &str) {
        self.ctl_ok(&["del", key]);
    }

    /// Compacts the history up to the current revision.
    pub fn compact_now(&self) {
        let out = self.ctl_ok(&["endpoint", "status", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let rev = v[0]["Status"]["header"]["revision"].as_i64().unwrap();
        self.ctl_ok(&["compaction", &rev.to_string()]);
    }

    /// Turns on etcd auth with user `root` (password `pw`), and user `user` with `password`
    /// allowed to read and write keys under `prefix`.
    pub fn enable_auth(&mut self, user: &str, password: &str, prefix: &str) {
        self.ctl_ok(&["user", "add", &format!("root:{password}-root")]);
        self.ctl_ok(&["role", "add", "fleet"]);
        self.ctl_ok(&[
            "role",
            "grant-permission",
            "fleet",
            "--prefix=true",
            "readwrite",
            prefix,
        ]);
        self.ctl_ok(&["user", "add", &format!("{user}:{password}")]);
        self.ctl_ok(&["user", "grant-role", user, "fleet"]);
        self.ctl_ok(&["auth", "enable"]);
        self.auth = Some(format!("{password}-root"));
    }

    /// Kills member `i` (SIGKILL) and waits for it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills every member.
    pub fn stop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }

    /// Starts every stopped member again on the same ports and data, and waits for health.
    pub fn restart(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                self.spawn(i);
            }
        }
        self.wait_healthy(Duration::from_secs(20));
    }

    /// Waits until `etcdctl endpoint health` succeeds on the live members.
    pub fn wait_healthy(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let (ok, _, err) = self.ctl(&["endpoint", "health"]);
            if ok {
                return;
            }
            if Instant::now() > deadline {
                let logs: String = self
                    .members
                    .iter()
                    .map(|m| {
                        std::fs::read_to_string(self.dir.path().join(format!("{}.log", m.name)))
                            .unwrap_or_default()
                    })
                    .collect();
                panic!("etcd not healthy within {timeout:?}: {err}\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}
