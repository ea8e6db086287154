//! The `castgate` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use castgate::config::Config;

#[derive(Parser)]
#[command(
    name = "castgate",
    version,
    about = "RTMP ingest gateway: remux to CMAF, serve HLS/DASH, relay"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// TOML config file for `serve` when no command is given
    /// (`castgate --config FILE`).
    #[arg(long, short)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default when no command is given).
    Serve {
        /// TOML config file; embedded defaults apply to anything it omits,
        /// and CASTGATE__SECTION__KEY environment variables override both.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check a config file (with the environment applied) and exit.
    CheckConfig { file: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve { config: cli.config }) {
        Command::CheckConfig { file } => match Config::load(Some(&file)) {
            Ok(config) => {
                for w in config.warnings() {
                    eprintln!("{}: warning: {w}", file.display());
                }
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                ExitCode::FAILURE
            }
        },
        Command::Serve { config } => {
            let config_path = config.clone();
            let config = match Config::load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("castgate: bad configuration: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let filter = EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new(&config.log.level));
            use std::io::IsTerminal;
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(std::io::stdout().is_terminal())
                .init();
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("castgate: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = runtime.block_on(castgate::run_from(config, config_path));
            // Tasks still running (connections being dropped) get a moment,
            // not a say in whether the process exits.
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("castgate: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
