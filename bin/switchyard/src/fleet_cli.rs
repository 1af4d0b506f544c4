//! `switchyard push` and `switchyard pull`: the command-line side of fleets (`docs/fleet.md`).

use std::path::PathBuf;
use std::process::ExitCode;

/// Where `push` and `pull` find etcd.
#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    /// An etcd endpoint (repeatable); default: the file's `[cluster].etcd_endpoints`.
    #[arg(long = "etcd", value_name = "URL")]
    pub etcd: Vec<String>,
    /// The fleet's key prefix; default: the file's `[cluster].prefix`.
    #[arg(long, value_name = "P")]
    pub prefix: Option<String>,
}

impl TargetArgs {
    /// The target, taking TLS and auth (and defaults) from `file`'s `[cluster]` if it parses.
    fn target(self, file: Option<&std::path::Path>) -> Result<switchyard_cluster::Target, String> {
        let cluster = file
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|t| toml::from_str::<switchyard_config::Config>(&t).ok())
            .and_then(|c| c.cluster);
        let base = file
            .and_then(|f| f.parent())
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| std::path::Path::new("."));
        switchyard_cluster::Target::new(cluster, self.etcd, self.prefix, base)
    }
}

/// Runs `fut` on a small Tokio runtime (the CLI's etcd commands).
fn block_on<F: std::future::Future>(fut: F) -> Result<F::Output, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map(|rt| rt.block_on(fut))
        .map_err(|e| e.to_string())
}

/// `switchyard push`: exit 0 with the new revision on stdout, 2 invalid, 3 guard failed, 1 etcd.
pub fn push(
    config: PathBuf,
    target: TargetArgs,
    force: bool,
    expect_revision: Option<i64>,
) -> ExitCode {
    let target = match target.target(Some(&config)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let outcome = block_on(switchyard_cluster::push(
        &config,
        &target,
        force,
        expect_revision,
    ));
    match outcome {
        Ok(Ok(pushed)) => {
            for s in &pushed.left_out {
                eprintln!("note: section `{s}` is local to each instance and was not pushed");
            }
            println!("{}", pushed.revision);
            eprintln!(
                "pushed {}/config at revision {}",
                target.cluster.prefix, pushed.revision
            );
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            for line in e.to_string().lines() {
                eprintln!("error: {line}");
            }
            ExitCode::from(e.exit_code())
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// `switchyard pull`: the document on stdout, its revision on stderr.
pub fn pull(config: Option<PathBuf>, target: TargetArgs) -> ExitCode {
    let target = match target.target(config.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    match block_on(switchyard_cluster::pull(&target)) {
        Ok(Ok(Some((text, revision)))) => {
            print!("{text}");
            eprintln!("revision {revision}");
            ExitCode::SUCCESS
        }
        Ok(Ok(None)) => {
            eprintln!("error: no document at {}/config", target.cluster.prefix);
            ExitCode::from(1)
        }
        Ok(Err(e)) | Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
