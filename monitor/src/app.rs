//! The commands: from the parsed command line to each command, and the exit status, decided
//! in one place ([`exit_status`]).

use std::process::ExitCode;

use clap::Parser as _;

use crate::{
    api,
    cli::{self, Cli, Command, ConfigArgs},
    config,
    daemon::{self, service},
    kernel::loader::{EXIT_ENVIRONMENT, LoadError},
    report,
    signals::explain,
    trace,
};

/// How a command failed.
#[derive(Debug)]
pub enum Failure {
    /// A flag or argument that cannot be used (the command did nothing).
    Usage(String),
    /// The configuration is invalid (the error names the key and where it came from).
    Config(config::ConfigError),
    /// The command ran and failed.
    Run(anyhow::Error),
}

/// The exit status of a command: 0 when it succeeded; 2 for usage and configuration errors
/// and for a machine that cannot run the agent (a missing capability, no BTF:
/// `EXIT_ENVIRONMENT`); 1 for anything else that failed.
pub fn exit_status(result: &Result<(), Failure>) -> u8 {
    match result {
        Ok(()) => 0,
        Err(Failure::Usage(_) | Failure::Config(_)) => 2,
        Err(Failure::Run(e)) => {
            let environment = matches!(
                e.downcast_ref::<LoadError>(),
                Some(LoadError::Privileges { .. } | LoadError::NoBtf)
            );
            if environment {
                EXIT_ENVIRONMENT as u8
            } else {
                1
            }
        }
    }
}

/// The binary's `main`: parses the command line, runs the command, reports a failure on
/// stderr in one line and exits with [`exit_status`].
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet = matches!(cli.command, Command::Run(_));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                // `run` shares the command's terminal: only problems.
                tracing_subscriber::EnvFilter::new(if quiet {
                    "warn"
                } else {
                    "warn,claude_monitor=info"
                })
            }),
        )
        .init();
    if let Command::Run(args) = cli.command {
        return ExitCode::from(run_command(args));
    }
    let result = run(cli);
    match &result {
        Ok(()) => {}
        Err(Failure::Usage(e)) => eprintln!("claude-monitor: error: {e}"),
        Err(Failure::Config(e)) => eprintln!("claude-monitor: error: {e}"),
        Err(Failure::Run(e)) => eprintln!("claude-monitor: error: {e:#}"),
    }
    ExitCode::from(exit_status(&result))
}

/// Status of `run` when it failed before starting the command (as `env` and `timeout`):
/// the command's own statuses are passed through.
pub const RUN_FAILED: u8 = 125;

/// `claude-monitor run`: the command's status, or [`RUN_FAILED`] (2 for bad arguments).
fn run_command(args: cli::RunArgs) -> u8 {
    let opts = match args.into_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("claude-monitor: error: {e}");
            return 2;
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    match runtime
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(crate::run::run(opts)))
    {
        Ok(status) => status,
        Err(e) => {
            eprintln!("claude-monitor: error: {e:#}");
            RUN_FAILED
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Trace(args) => match args.into_config(cli::stdout_is_terminal()) {
            Ok(cfg) => run_async(trace::run(
                cfg,
                std::io::BufWriter::new(std::io::stdout().lock()),
            ))
            .map_err(Failure::Run),
            Err(e) => Err(Failure::Usage(e.to_string())),
        },
        Command::Daemon(args) => {
            let loaded = args.config.load().map_err(Failure::Config)?;
            daemon::trusted_config(&loaded).map_err(|e| Failure::Usage(e.to_string()))?;
            if !args.unpin {
                // A non-loopback api.tcp without a sound token file: refused before anything.
                let api = &loaded.config.api;
                crate::api::tcp::token(api.tcp, api.token_file.as_deref())
                    .map_err(Failure::Usage)?;
            }
            if args.unpin {
                unpin(&loaded.config.kernel.pin_dir).map_err(Failure::Run)
            } else {
                let duration =
                    cli::duration(args.duration).map_err(|e| Failure::Usage(e.to_string()))?;
                run_async(daemon::run(daemon::DaemonOptions {
                    config: loaded,
                    config_path: args.config.config.clone(),
                    flags: args.config.flags(),
                    stdout: args.stdout,
                    duration,
                }))
                .map_err(Failure::Run)
            }
        }
        Command::Config(args) if args.sample => {
            print!("{}", config::SAMPLE);
            Ok(())
        }
        Command::Config(args) => {
            let l = args.config.load().map_err(Failure::Config)?;
            print!("{}", config::render(&l));
            Ok(())
        }
        Command::Explain { what } => match explain::explain(&what) {
            Ok(x) => {
                println!("{x}");
                Ok(())
            }
            Err(e) => Err(Failure::Usage(e.to_string())),
        },
        Command::Reports(args) => {
            let store = store(&args.config)?;
            store
                .list(&report::ListFilter {
                    session: args.session,
                    cause: args.cause,
                    reason: args.reason,
                    limit: args.limit,
                    uid: None,
                })
                .map_err(anyhow::Error::from)
                .map(|list| {
                    if args.json {
                        for r in &list {
                            println!("{}", serde_json::to_string(r).unwrap_or_default());
                        }
                    } else {
                        print!("{}", report::render_list(&list));
                    }
                })
                .map_err(Failure::Run)
        }
        Command::Report(args) => {
            let store = store(&args.config)?;
            {
                let found = if args.last {
                    store.last().and_then(|r| {
                        r.ok_or_else(|| {
                            std::io::Error::new(
                                std::io::ErrorKind::NotFound,
                                format!("no reports in {}", store.dir().display()),
                            )
                        })
                    })
                } else {
                    store.get(args.id.as_deref().unwrap_or_default())
                };
                found.map_err(|e| Failure::Run(e.into())).map(|r| {
                    if args.json {
                        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
                    } else {
                        print!("{}", report::render_text(&r));
                    }
                })
            }
        }
        // `main` runs it before this match: its exit status is the command's, not a Failure.
        Command::Run(_) => unreachable!("`run` is dispatched by main"),
        Command::Status(args) => crate::run::status(args.json).map_err(Failure::Run),
        Command::Stop(args) => {
            if !(args.timeout > 0.0 && args.timeout <= cli::MAX_DURATION_SECS) {
                return Err(Failure::Usage(format!(
                    "--timeout must be a number of seconds greater than 0, got {}",
                    args.timeout
                )));
            }
            crate::run::stop(&args.id, std::time::Duration::from_secs_f64(args.timeout))
                .map_err(Failure::Run)
        }
        Command::Events(args) => {
            let text = args.format.map_or_else(cli::stdout_is_terminal, |f| {
                f == crate::output::sink::Format::Text
            });
            run_async(api::client::run(api::client::Options {
                socket: args.socket.socket,
                follow: args.follow,
                kinds: args.kinds,
                session: args.session,
                cause: args.cause.map(|c| c.as_str().to_owned()),
                since: args.since,
                limit: args.limit,
                text,
            }))
            .map_err(Failure::Run)
        }
        Command::Install(args) => {
            let l = args.load().map_err(Failure::Config)?;
            // The service will read it as root at every start.
            daemon::trusted_config(&l).map_err(|e| Failure::Usage(e.to_string()))?;
            install(&args, &l.config).map_err(Failure::Run)
        }
        Command::Uninstall(args) => {
            let l = args.load().map_err(Failure::Config)?;
            daemon::trusted_config(&l).map_err(|e| Failure::Usage(e.to_string()))?;
            service::uninstall(
                std::path::Path::new(service::UNIT_DIR),
                &service::run_systemctl,
            )
            .and_then(|outcome| {
                println!("{outcome}");
                unpin(&l.config.kernel.pin_dir)
            })
            .map_err(Failure::Run)
        }
        Command::PreparePinDir { dir } => {
            if !dir.is_absolute() {
                return Err(Failure::Usage(format!(
                    "the pin directory {} must be an absolute path",
                    dir.display()
                )));
            }
            crate::kernel::loader::pin::ensure_bpffs(&dir)
                .map_err(|e| Failure::Run(anyhow::Error::from(e)))
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

fn store(args: &ConfigArgs) -> Result<report::ReportStore, Failure> {
    args.load()
        .map(|l| report::ReportStore::in_data_dir(&l.config.data_dir))
        .map_err(Failure::Config)
}

/// `daemon --unpin` and `uninstall`: removes the pinned objects and says what it did.
fn unpin(dir: &std::path::Path) -> anyhow::Result<()> {
    if daemon::unpin(dir)? {
        eprintln!(
            "claude-monitor: removed the pinned objects in {}",
            dir.display()
        );
    } else {
        eprintln!("claude-monitor: nothing pinned in {}", dir.display());
    }
    Ok(())
}

fn install(args: &ConfigArgs, cfg: &config::Config) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let params = service::UnitParams {
        exe,
        config: args
            .config
            .clone()
            .unwrap_or_else(|| config::DEFAULT_PATH.into()),
        data_dir: cfg.data_dir.clone(),
        pin_dir: cfg.kernel.pin_dir.clone(),
        tcp: cfg.api.tcp.is_some() || cfg.export.otlp.endpoint.is_some(),
    };
    let outcome = service::install(
        &params,
        std::path::Path::new(service::UNIT_DIR),
        &service::run_systemctl,
    )?;
    println!("{outcome}");
    if let service::InstallOutcome::NoSystemd { unit, .. } = outcome {
        println!();
        print!("{unit}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses() {
        assert_eq!(exit_status(&Ok(())), 0);
        assert_eq!(exit_status(&Err(Failure::Usage("x".into()))), 2);
        assert_eq!(
            exit_status(&Err(Failure::Run(anyhow::anyhow!("disk full")))),
            1
        );
        let no_btf = Failure::Run(anyhow::Error::from(LoadError::NoBtf).context("loading"));
        assert_eq!(exit_status(&Err(no_btf)), EXIT_ENVIRONMENT as u8);
    }
}
