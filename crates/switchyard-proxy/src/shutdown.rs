//! Process signals that stop the gateway, and what each one does.
//!
//! | signal | effect |
//! |---|---|
//! | `SIGTERM` | graceful: listeners stop accepting, in-flight requests get `grace_period_s` |
//! | `SIGQUIT` | graceful upgrade: listening sockets handed to the new process, then as `SIGTERM` |
//! | `SIGINT`  | fast: the process exits at once (NGINX's fast shutdown) |
//!
//! Pingora 0.9.1 implements `SIGINT` by shutting its runtimes down without first telling the
//! listeners' accept loops to stop. With several worker threads per service, an accept loop can
//! run on another thread than the one whose reactor registered the listening socket; when that
//! reactor shuts down first, `accept()` fails at once, every time, and the loop (which only
//! backs off on `EMFILE`) spins on its thread forever: the process never exits and logs
//! `Accept() failed … Tokio context … being shutdown` millions of times. Nothing a fast shutdown
//! must still do needs those runtimes (in-flight requests are abandoned either way), so
//! [`Signals`] ends the process itself on `SIGINT`.

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};

/// Switchyard's [`ShutdownSignalWatch`]: Pingora's signals, with `SIGINT` exiting the process
/// directly (see the module documentation for why).
#[derive(Debug, Default, Clone, Copy)]
pub struct Signals;

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut quit), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            log::error!("cannot install signal handlers; stopping");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = quit.recv() => ShutdownSignal::GracefulUpgrade,
            _ = term.recv() => ShutdownSignal::GracefulTerminate,
            _ = int.recv() => fast_exit(),
        }
    }
}

/// `SIGINT`: exit now, as Pingora's fast shutdown would once its runtimes had stopped.
fn fast_exit() -> ! {
    log::info!("SIGINT received, exiting");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(0)
}
