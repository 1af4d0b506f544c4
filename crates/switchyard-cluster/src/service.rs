//! The fleet's background service: the watch ([`crate::sync`]) and the membership keeper
//! ([`crate::member`]) side by side on a Pingora background runtime, both stopped by the
//! server's shutdown (which revokes the member lease).

use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use switchyard_proxy::Shared;

use crate::agent::FleetAgent;

/// Runs an agent for the life of the server.
#[derive(Debug)]
pub struct FleetService {
    agent: Arc<FleetAgent>,
    shared: Arc<Shared>,
}

impl FleetService {
    /// The service running `agent` for `shared`.
    pub fn new(agent: Arc<FleetAgent>, shared: Arc<Shared>) -> FleetService {
        FleetService { agent, shared }
    }
}

#[async_trait]
impl BackgroundService for FleetService {
    async fn start(&self, shutdown: ShutdownWatch) {
        let watch = crate::sync::run(
            Arc::clone(&self.agent),
            Arc::clone(&self.shared),
            shutdown.clone(),
        );
        let member = crate::member::run(Arc::clone(&self.agent), shutdown);
        tokio::join!(watch, member);
    }
}
