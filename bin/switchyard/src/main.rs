//! `switchyard`: the reference gateway. Loads one TOML file and runs the Pingora services it
//! describes.
//!
//! ```text
//! switchyard run -c conf/demo.toml        # run
//! switchyard run -c conf/demo.toml -u     # graceful upgrade: take over a running instance's sockets
//! switchyard check -c conf/demo.toml      # validate and summarise, like `nginx -t`
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod pid_file;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match switchyard_config::load_file(&config) {
            Ok(cfg) => {
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
            let pid_path = PathBuf::from(&cfg.server.pid_file);
            match switchyard_proxy::Gateway::build_from(cfg, Some(config.clone()), Some(opt)) {
                Ok(mut gw) => {
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
