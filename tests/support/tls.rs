//! TLS: a test PKI and a TLS origin.

use super::*;

/// The ring crypto provider, passed explicitly so that no process-wide default is needed.
pub fn ring_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate authority generated for one test (rcgen), issuing server and client certificates.
pub struct TestCa {
    cert_pem: String,
    cert_der: rustls::pki_types::CertificateDer<'static>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// A certificate issued by a [`TestCa`] (or self-signed), with its private key.
#[derive(Clone)]
pub struct IssuedCert {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The PKCS#8 private key (PEM).
    pub key_pem: String,
    /// The certificate (DER).
    pub cert_der: rustls::pki_types::CertificateDer<'static>,
    /// The PKCS#8 private key (DER).
    pub key_der: Vec<u8>,
}

impl IssuedCert {
    /// The private key for rustls.
    pub fn private_key(&self) -> rustls::pki_types::PrivateKeyDer<'static> {
        rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
            self.key_der.clone(),
        ))
    }

    /// Writes `<stem>.pem` (certificate) and `<stem>-key.pem` (key) into `dir`; returns both paths.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}-key.pem"));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }
}

impl TestCa {
    /// A new self-signed CA whose common name is `name`.
    pub fn new(name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name.to_string());
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// The CA certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate (DER).
    pub fn cert_der(&self) -> rustls::pki_types::CertificateDer<'static> {
        self.cert_der.clone()
    }

    /// Writes the CA certificate to `dir/<file>`; returns the path.
    pub fn write(&self, dir: &Path, file: &str) -> PathBuf {
        let p = dir.join(file);
        std::fs::write(&p, &self.cert_pem).unwrap();
        p
    }

    /// Issues a leaf certificate for `names` (DNS names or IP addresses; the first is also the
    /// common name), usable both as a server and as a client certificate.
    pub fn issue(&self, names: &[&str]) -> IssuedCert {
        self.issue_with(names, |_| {})
    }

    /// Like [`TestCa::issue`], with `edit` applied to the parameters before signing (validity,
    /// subject, ...).
    pub fn issue_with(
        &self,
        names: &[&str],
        edit: impl FnOnce(&mut rcgen::CertificateParams),
    ) -> IssuedCert {
        let sans: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(sans).unwrap();
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, first.to_string());
        }
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::KeyEncipherment,
        ];
        edit(&mut params);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }
}

/// State shared between a [`TlsOrigin`] handle and its tasks.
struct TlsOriginState {
    name: String,
    requests: Mutex<Vec<RecordedRequest>>,
    snis: Mutex<Vec<Option<String>>>,
    client_certs: Mutex<Vec<bool>>,
    handshakes_ok: AtomicUsize,
    handshakes_failed: AtomicUsize,
}

/// An in-process HTTPS (HTTP/1.1 over TLS) origin: serves `cert`, optionally requires a client
/// certificate issued by a given CA, answers `200` with header `x-origin: <name>` and body
/// `<name>`, and records every request, the SNI of every handshake and handshake outcomes.
pub struct TlsOrigin {
    addr: SocketAddr,
    state: Arc<TlsOriginState>,
    rt: Option<Runtime>,
}

impl TlsOrigin {
    /// Starts on `127.0.0.1:0` with `cert`; with `client_ca`, a client certificate issued by that
    /// CA is required (handshakes without one fail).
    pub fn start(name: &str, cert: &IssuedCert, client_ca: Option<&TestCa>) -> TlsOrigin {
        let builder = rustls::ServerConfig::builder_with_provider(ring_provider())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(ca.cert_der()).unwrap();
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    ring_provider(),
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(vec![cert.cert_der.clone()], cert.private_key())
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("tls-origin-{name}"))
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(TlsOriginState {
            name: name.to_string(),
            requests: Mutex::new(Vec::new()),
            snis: Mutex::new(Vec::new()),
            client_certs: Mutex::new(Vec::new()),
            handshakes_ok: AtomicUsize::new(0),
            handshakes_failed: AtomicUsize::new(0),
        });
        let listener = {
            let _guard = rt.enter();
            let std_listener = StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            std_listener.set_nonblocking(true).unwrap();
            tokio::net::TcpListener::from_std(std_listener).unwrap()
        };
        let addr = listener.local_addr().unwrap();
        let st = state.clone();
        rt.spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                let acceptor = acceptor.clone();
                let st = st.clone();
                tokio::spawn(async move {
                    let tls = match tokio::time::timeout(
                        Duration::from_secs(10),
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(tls)) => tls,
                        _ => {
                            st.handshakes_failed.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    };
                    st.handshakes_ok.fetch_add(1, Ordering::SeqCst);
                    {
                        let (_, conn) = tls.get_ref();
                        st.snis
                            .lock()
                            .unwrap()
                            .push(conn.server_name().map(|s| s.to_string()));
                        st.client_certs
                            .lock()
                            .unwrap()
                            .push(conn.peer_certificates().is_some_and(|c| !c.is_empty()));
                    }
                    let svc_state = st.clone();
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let st = svc_state.clone();
                        async move {
                            let recorded = record(req, peer).await;
                            st.requests.lock().unwrap().push(recorded);
                            let mut resp = Response::new(Full::new(Bytes::from(st.name.clone())));
                            resp.headers_mut()
                                .insert("x-origin", HeaderValue::from_str(&st.name).unwrap());
                            resp.headers_mut()
                                .insert("content-type", HeaderValue::from_static("text/plain"));
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        TlsOrigin {
            addr,
            state,
            rt: Some(rt),
        }
    }

    /// The origin's name.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The number of requests received so far.
    pub fn request_count(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }

    /// The last request received, if any.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.state.requests.lock().unwrap().last().cloned()
    }

    /// The SNI of every completed handshake (`None`: the client sent none, e.g. for an IP).
    pub fn snis(&self) -> Vec<Option<String>> {
        self.state.snis.lock().unwrap().clone()
    }

    /// For every completed handshake: whether the client presented a certificate.
    pub fn client_certs(&self) -> Vec<bool> {
        self.state.client_certs.lock().unwrap().clone()
    }

    /// Completed handshakes.
    pub fn handshakes_ok(&self) -> usize {
        self.state.handshakes_ok.load(Ordering::SeqCst)
    }

    /// Failed (or timed out) handshakes.
    pub fn handshakes_failed(&self) -> usize {
        self.state.handshakes_failed.load(Ordering::SeqCst)
    }
}

impl Drop for TlsOrigin {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
