use std::process::ExitCode;

use clap::Parser as _;
use claude_monitor::{
    cli::{self, Cli, Command},
    loader::{EXIT_ENVIRONMENT, LoadError},
    trace,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();

    let result = match cli.command {
        Command::Trace(args) => match args.into_config(cli::stdout_is_terminal()) {
            Ok(cfg) => run_async(trace::run(
                cfg,
                std::io::BufWriter::new(std::io::stdout().lock()),
            )),
            Err(e) => {
                eprintln!("claude-monitor: error: {e}");
                return ExitCode::from(2);
            }
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("claude-monitor: error: {err:#}");
            let environment = matches!(
                err.downcast_ref::<LoadError>(),
                Some(LoadError::Privileges { .. } | LoadError::NoBtf)
            );
            ExitCode::from(if environment {
                EXIT_ENVIRONMENT as u8
            } else {
                1
            })
        }
    }
}

fn run_async(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)?
        .block_on(fut)
}
