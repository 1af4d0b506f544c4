//! Builds a Pingora server from a configuration.

use std::sync::Arc;

use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use switchyard_config::Config;
use switchyard_metrics::Metrics;

use crate::background::Background;
use crate::error::BuildError;
use crate::extension::Extension;
use crate::runtime::Runtime;
use crate::shared::Shared;

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

/// Builds a [`Gateway`] with extensions and options; see [`Gateway::builder`].
pub struct GatewayBuilder {
    cfg: Config,
    path: Option<std::path::PathBuf>,
    opt: Option<Opt>,
    extensions: Vec<Arc<dyn Extension>>,
    metrics: Option<&'static Metrics>,
}

impl GatewayBuilder {
    /// The file reloads (SIGHUP, admin API) read.
    pub fn config_path(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.path = Some(path.into());
        self
    }
    /// Pingora's process options (e.g. `upgrade: true` for a graceful hand-off).
    pub fn options(mut self, opt: Option<Opt>) -> Self {
        self.opt = opt;
        self
    }
    /// Registers an extension; hooks run in registration order.
    pub fn extension(mut self, ext: Arc<dyn Extension>) -> Self {
        self.extensions.push(ext);
        self
    }
    /// The metric families every service reports to (default: the process's registry,
    /// [`Metrics::global`], which the `[metrics]` endpoint serves).
    pub fn metrics(mut self, metrics: &'static Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }
    /// Builds the server and its services.
    pub fn build(self) -> Result<Gateway, BuildError> {
        let metrics = self.metrics.unwrap_or_else(Metrics::global);
        Gateway::build_inner(self.cfg, self.path, self.opt, self.extensions, metrics)
    }
}

/// Pingora's server settings from `[server]`.
pub fn server_conf(cfg: &Config) -> ServerConf {
    ServerConf {
        threads: cfg.server.threads.max(1),
        work_stealing: cfg.server.work_stealing,
        grace_period_seconds: Some(cfg.server.grace_period_s),
        // After the grace period, the runtimes get one more second to stop (tokio cancels
        // their tasks at once; this only bounds blocking work): a SIGTERM stop ends within
        // `grace_period_s + 1`.
        graceful_shutdown_timeout_seconds: Some(1),
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
        let mut b = Gateway::builder(cfg).options(opt);
        b.path = path;
        b.build()
    }

    /// A builder, for embedders that register [`Extension`]s.
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # struct MyExt;
    /// # #[async_trait::async_trait]
    /// # impl switchyard_proxy::extension::Extension for MyExt { fn name(&self) -> &str { "mine" } }
    /// let cfg = switchyard_config::load_file("conf/demo.toml").unwrap();
    /// let gw = switchyard_proxy::Gateway::builder(cfg)
    ///     .config_path("conf/demo.toml")
    ///     .extension(Arc::new(MyExt))
    ///     .build()
    ///     .unwrap();
    /// gw.run();
    /// ```
    pub fn builder(cfg: Config) -> GatewayBuilder {
        GatewayBuilder {
            cfg,
            path: None,
            opt: None,
            extensions: Vec::new(),
            metrics: None,
        }
    }

    fn build_inner(
        cfg: Config,
        path: Option<std::path::PathBuf>,
        opt: Option<Opt>,
        extensions: Vec<Arc<dyn Extension>>,
        metrics: &'static Metrics,
    ) -> Result<Gateway, BuildError> {
        let conf = server_conf(&cfg);
        let mut server = Server::new_with_opt_and_conf(opt, conf);
        server.bootstrap();
        let cfg = Arc::new(cfg);
        let runtime = Runtime::build_with_metrics(Arc::clone(&cfg), None, metrics)?;
        initial_health_round(&runtime)?;
        let shared = Shared::with_extensions(runtime, path, extensions);
        shared.set_telemetry(crate::observe::Telemetry::start(&cfg, metrics)?);
        server.add_service(pingora::services::background::background_service(
            "switchyard background",
            Background::new(Arc::clone(&shared)),
        ));
        let server_conf = Arc::clone(&server.configuration);
        for l in &cfg.listeners {
            crate::listener::add(&mut server, &server_conf, &shared, l, &cfg.limits)?;
        }
        if let Some(m) = &cfg.metrics {
            server.add_service(crate::metrics_endpoint::service(
                &m.listen.to_string(),
                Arc::clone(&shared),
            ));
        }
        Ok(Gateway { server, shared })
    }

    /// Runs the server until it is told to stop (see [`crate::shutdown`] for the signals);
    /// exits the process.
    pub fn run(self) -> ! {
        self.server.run(pingora::server::RunArgs {
            shutdown_signal: Box::new(crate::shutdown::Signals),
        });
        // The last access-log lines and spans.
        self.shared.telemetry().close();
        std::process::exit(0)
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
        .map_err(|source| BuildError::Start {
            what: "the health-check runtime",
            source,
        })?;
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
