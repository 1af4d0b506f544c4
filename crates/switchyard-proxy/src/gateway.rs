//! Builds a Pingora server from a configuration.

use std::sync::Arc;

use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use switchyard_config::{Config, ListenerProtocol};

use crate::background::Background;
use crate::runtime::{BuildError, Runtime};
use crate::service::{HttpGateway, Shared};

/// A built gateway: the Pingora server with every service added, and the shared state the
/// services read (for reloads and the admin API).
pub struct Gateway {
    /// The Pingora server, ready to run.
    pub server: Server,
    /// The state shared by the services.
    pub shared: Arc<Shared>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("shared", &self.shared)
            .finish()
    }
}

/// Pingora's server settings from `[server]`.
pub fn server_conf(cfg: &Config) -> ServerConf {
    ServerConf {
        threads: cfg.server.threads.max(1),
        work_stealing: cfg.server.work_stealing,
        grace_period_seconds: Some(cfg.server.grace_period_s),
        graceful_shutdown_timeout_seconds: Some(cfg.server.grace_period_s.max(1)),
        pid_file: cfg.server.pid_file.clone(),
        upgrade_sock: cfg.server.upgrade_sock.clone(),
        ..ServerConf::default()
    }
}

impl Gateway {
    /// Builds the server and its services from a validated configuration. `opt` carries
    /// Pingora's process options (e.g. `upgrade` for a graceful hand-off).
    pub fn build(cfg: Config, opt: Option<Opt>) -> Result<Gateway, BuildError> {
        Self::build_from(cfg, None, opt)
    }

    /// Like [`Gateway::build`], remembering the file `path` for reloads (SIGHUP, admin API).
    pub fn build_from(
        cfg: Config,
        path: Option<std::path::PathBuf>,
        opt: Option<Opt>,
    ) -> Result<Gateway, BuildError> {
        let conf = server_conf(&cfg);
        let mut server = Server::new_with_opt_and_conf(opt, conf);
        server.bootstrap();
        let cfg = Arc::new(cfg);
        let runtime = Runtime::build(Arc::clone(&cfg), None)?;
        initial_health_round(&runtime)?;
        let shared = Shared::new(runtime, path);
        server.add_service(pingora::services::background::background_service(
            "switchyard background",
            Background::new(Arc::clone(&shared)),
        ));
        let server_conf = Arc::clone(&server.configuration);
        for l in &cfg.listeners {
            match l.protocol {
                ListenerProtocol::Http if l.accept_proxy_protocol => {
                    server.add_service(crate::proxy_accept::http_service(
                        &server_conf,
                        HttpGateway::new(Arc::clone(&shared), &l.name),
                        l,
                    ));
                }
                ListenerProtocol::Tcp => {
                    server.add_service(crate::tcp::service(Arc::clone(&shared), l));
                }
                ListenerProtocol::Http => {
                    let mut svc = pingora::proxy::http_proxy_service_with_name(
                        &server_conf,
                        HttpGateway::new(Arc::clone(&shared), &l.name),
                        &format!("listener {}", l.name),
                    );
                    svc.add_tcp(&l.listen.to_string());
                    server.add_service(svc);
                }
                ListenerProtocol::Https => {
                    return Err(BuildError(format!(
                        "listener {}: protocol {:?} is not available in this build yet",
                        l.name, l.protocol
                    )));
                }
            }
        }
        if let Some(m) = &cfg.metrics {
            server.add_service(crate::metrics_endpoint::service(&m.listen.to_string()));
        }
        Ok(Gateway { server, shared })
    }

    /// Runs the server until it is told to stop; exits the process.
    pub fn run(self) -> ! {
        self.server.run_forever()
    }
}

/// Runs the first round of active checks of every upstream before any listener opens, so that
/// traffic only reaches servers that passed (bounded by each upstream's check timeout).
fn initial_health_round(rt: &Runtime) -> Result<(), BuildError> {
    if !rt.upstreams.iter().any(|u| u.health.has_active()) {
        return Ok(());
    }
    let tokio_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BuildError(format!("cannot start the health-check runtime: {e}")))?;
    tokio_rt.block_on(async {
        let mut rounds = tokio::task::JoinSet::new();
        for up in &rt.upstreams {
            let health = Arc::clone(&up.health);
            rounds.spawn(async move { health.initial_round().await });
        }
        while rounds.join_next().await.is_some() {}
    });
    Ok(())
}
