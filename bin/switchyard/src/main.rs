//! `switchyard`: the reference gateway. Loads one TOML file and runs the Pingora services it
//! describes.
//!
//! ```text
//! switchyard run -c conf/demo.toml        # run
//! switchyard run -c conf/demo.toml -u     # graceful upgrade: take over a running instance's sockets
//! switchyard check -c conf/demo.toml      # validate and summarise, like `nginx -t`
//! switchyard push -c fleet.toml --etcd http://127.0.0.1:2379 --prefix /switchyard/prod
//! switchyard pull --etcd http://127.0.0.1:2379 --prefix /switchyard/prod
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod fleet_cli;
mod pid_file;

use fleet_cli::TargetArgs;

/// mimalloc as the global allocator (feature `mimalloc`, on by default): measured +30% requests
/// per proxy CPU-second over glibc's malloc (`docs/benchmarks.md`, "Levers"). It is built without
/// transparent huge pages (`no_thp`): with them, peak RSS grew from 14 to 22 MiB for no gain.
/// The usual `MIMALLOC_*` environment variables still tune it.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The allocator this binary was built with, for the start-up log line.
const ALLOCATOR: &str = if cfg!(feature = "mimalloc") {
    "mimalloc"
} else {
    "system"
};

/// The commit this binary was built from, when the build said so (`SWITCHYARD_COMMIT` at build
/// time, as `make dist` sets it); exported as the `commit` label of `switchyard_build_info`.
const BUILD_COMMIT: &str = match option_env!("SWITCHYARD_COMMIT") {
    Some(c) if !c.is_empty() => c,
    _ => switchyard_metrics::build_info::UNKNOWN_COMMIT,
};

#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    about = "A programmable reverse proxy and load balancer on Pingora"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        /// The configuration file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Take over the listening sockets of a running instance (graceful upgrade; send the old
        /// process SIGQUIT once this one has started).
        #[arg(short, long)]
        upgrade: bool,
    },
    /// Validate a configuration file and print a summary; exit 2 on errors.
    Check {
        /// The configuration file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Validate a file like `check` and write its shared sections to `<prefix>/config` in etcd;
    /// prints the new revision. Exit 2 on a validation error, 3 when the revision guard fails.
    Push {
        /// The configuration file (local sections are left out, with a note).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        #[command(flatten)]
        target: TargetArgs,
        /// Write even if another push landed since the revision read.
        #[arg(long)]
        force: bool,
        /// Write only if `<prefix>/config` is at this revision (0 = absent).
        #[arg(long, value_name = "N", conflicts_with = "force")]
        expect_revision: Option<i64>,
    },
    /// Print the shared document at `<prefix>/config` (its revision goes to standard error).
    Pull {
        /// A file whose `[cluster]` gives endpoints, prefix, TLS and auth.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        target: TargetArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Push {
            config,
            target,
            force,
            expect_revision,
        } => fleet_cli::push(config, target, force, expect_revision),
        Command::Pull { config, target } => fleet_cli::pull(config, target),
        Command::Check { config } => match switchyard_config::load_file(&config) {
            Ok(cfg) => {
                // Like `nginx -t`: the listeners' certificates must load (parse, match their
                // keys, not be expired, have names), not only exist.
                if let Err(e) = switchyard_proxy::listener_tls::load_all(&cfg) {
                    eprintln!("error: {e}");
                    eprintln!("configuration file {} has 1 error(s)", config.display());
                    return ExitCode::from(2);
                }
                print_summary(&cfg);
                println!("configuration file {} is valid", config.display());
                ExitCode::SUCCESS
            }
            Err(errs) => {
                for e in &errs.errors {
                    eprintln!("error: {e}");
                }
                eprintln!(
                    "configuration file {} has {} error(s)",
                    config.display(),
                    errs.errors.len()
                );
                ExitCode::from(2)
            }
        },
        Command::Run { config, upgrade } => {
            env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
                .init();
            let cfg = match switchyard_config::load_file(&config) {
                Ok(cfg) => cfg,
                Err(errs) => {
                    for e in &errs.errors {
                        log::error!("{e}");
                        eprintln!("error: {e}");
                    }
                    return ExitCode::from(2);
                }
            };
            let opt = pingora::server::configuration::Opt {
                upgrade,
                ..Default::default()
            };
            let admin_cfg = cfg.admin.clone();
            // With `[cluster]`, the shared sections come from etcd (or the cache).
            let (cfg, fleet) = match switchyard_cluster::bootstrap(cfg.clone(), &config) {
                Some(b) => (b.config, Some(b.agent)),
                None => (cfg, None),
            };
            let pid_path = PathBuf::from(&cfg.server.pid_file);
            match switchyard_proxy::Gateway::build_from(cfg, Some(config.clone()), Some(opt)) {
                Ok(mut gw) => {
                    if let Some(agent) = fleet {
                        switchyard_cluster::attach(&agent, &gw.shared);
                        gw.server
                            .add_service(pingora::services::background::background_service(
                                "switchyard cluster",
                                switchyard_cluster::FleetService::new(
                                    agent,
                                    std::sync::Arc::clone(&gw.shared),
                                ),
                            ));
                    }
                    if let Some(admin) = admin_cfg {
                        match switchyard_admin::service(&admin, std::sync::Arc::clone(&gw.shared)) {
                            Ok(svc) => {
                                gw.server.add_service(svc);
                            }
                            Err(e) => {
                                log::error!("cannot start the admin listener: {e}");
                                eprintln!("error: {e}");
                                return ExitCode::from(1);
                            }
                        }
                    }
                    if let Err(e) = switchyard_metrics::build_info::register(
                        env!("CARGO_PKG_VERSION"),
                        BUILD_COMMIT,
                    ) {
                        log::warn!("switchyard_build_info is not exported: {e}");
                    }
                    // Name this process in the PID file: with `-u` the old process has handed
                    // its listening sockets over by now (bootstrap), so the file moves to the new
                    // process before the old one exits.
                    let pid = std::process::id();
                    match pid_file::write(&pid_path, pid) {
                        Ok(()) => log::info!("PID {pid} written to {}", pid_path.display()),
                        Err(e) => log::warn!(
                            "cannot write server.pid_file {}: {e} (upgrades read it)",
                            pid_path.display()
                        ),
                    }
                    log::info!(
                        "switchyard {} starting (allocator: {ALLOCATOR})",
                        env!("CARGO_PKG_VERSION")
                    );
                    gw.run()
                }
                Err(e) => {
                    log::error!("cannot start: {e}");
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn print_summary(cfg: &switchyard_config::Config) {
    println!("{}", switchyard_config::summary(cfg));
}
