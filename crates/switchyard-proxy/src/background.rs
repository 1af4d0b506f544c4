//! The gateway's background service: starts health checkers and DNS re-resolution, reloads on
//! SIGHUP and reopens the access log on SIGUSR1.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::shared::Shared;

/// Runs for the life of the server on its own Pingora runtime.
#[derive(Debug)]
pub struct Background {
    shared: Arc<Shared>,
}

impl Background {
    /// The service for `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        Background { shared }
    }
}

#[async_trait]
impl BackgroundService for Background {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        self.shared
            .set_background(tokio::runtime::Handle::current());
        let rt = self.shared.runtime();
        for up in &rt.upstreams {
            if let Err(e) = up.health.start() {
                log::error!("upstream {}: cannot start health checks: {e}", up.cfg.name);
            }
        }
        rt.start_dns();
        drop(rt);
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                log::error!(
                    "cannot install the SIGHUP handler, reload only via the admin API: {e}"
                );
                None
            }
        };
        let mut usr1 =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()) {
                Ok(s) => Some(s),
                Err(e) => {
                    log::error!(
                    "cannot install the SIGUSR1 handler, the access log cannot be reopened: {e}"
                );
                    None
                }
            };
        let telemetry = self.shared.telemetry();
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(()) = async {
                    match usr1.as_mut() {
                        Some(s) => s.recv().await,
                        None => std::future::pending().await,
                    }
                } => telemetry.reopen_log(),
                Some(()) = async {
                    match hup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    log::info!("SIGHUP: reloading the configuration");
                    let _ = self.shared.reload().await;
                }
            }
        }
        self.shared.snapshot().dns.stop();
    }
}
