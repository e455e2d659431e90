use std::process::ExitCode;

use clap::Parser as _;
use claude_monitor::{
    cli::{self, Cli, Command, ConfigArgs},
    config,
    daemon::{self, service},
    kernel::loader::{EXIT_ENVIRONMENT, LoadError},
    report,
    signals::explain,
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
        Command::Daemon(args) => {
            let loaded = match args.config.load() {
                Ok(l) => l,
                Err(e) => return config_error(&e),
            };
            if args.unpin {
                daemon::unpin(&loaded.config.kernel.pin_dir)
            } else {
                let duration = match args.duration {
                    None => None,
                    Some(d) if d.is_finite() && d > 0.0 => {
                        Some(std::time::Duration::from_secs_f64(d))
                    }
                    Some(d) => {
                        eprintln!(
                            "claude-monitor: error: --duration must be a positive number of seconds, got {d}"
                        );
                        return ExitCode::from(2);
                    }
                };
                run_async(daemon::run(daemon::DaemonOptions {
                    config: loaded,
                    config_path: args.config.config.clone(),
                    flags: args.config.flags(),
                    stdout: args.stdout,
                    duration,
                }))
            }
        }
        Command::Config(args) if args.sample => {
            print!("{}", config::SAMPLE);
            Ok(())
        }
        Command::Config(args) => match args.config.load() {
            Ok(l) => {
                print!("{}", config::render(&l));
                Ok(())
            }
            Err(e) => return config_error(&e),
        },
        Command::Explain { what } => match explain::explain(&what) {
            Ok(x) => {
                println!("{x}");
                Ok(())
            }
            Err(e) => {
                eprintln!("claude-monitor: error: {e}");
                return ExitCode::from(2);
            }
        },
        Command::Reports(args) => match store(&args.config) {
            Err(code) => return code,
            Ok(store) => store
                .list(&report::ListFilter {
                    session: args.session,
                    cause: args.cause,
                    reason: args.reason,
                    limit: args.limit,
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
                }),
        },
        Command::Report(args) => match store(&args.config) {
            Err(code) => return code,
            Ok(store) => {
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
                found.map_err(anyhow::Error::from).map(|r| {
                    if args.json {
                        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
                    } else {
                        print!("{}", report::render_text(&r));
                    }
                })
            }
        },
        Command::Install(args) => match args.load() {
            Err(e) => return config_error(&e),
            Ok(l) => install(&args, &l.config),
        },
        Command::Uninstall(args) => match args.load() {
            Err(e) => return config_error(&e),
            Ok(l) => service::uninstall(
                std::path::Path::new(service::UNIT_DIR),
                &service::run_systemctl,
            )
            .and_then(|outcome| {
                println!("{outcome}");
                daemon::unpin(&l.config.kernel.pin_dir)
            }),
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

fn config_error(e: &config::ConfigError) -> ExitCode {
    eprintln!("claude-monitor: error: {e}");
    ExitCode::from(2)
}

fn store(args: &ConfigArgs) -> Result<report::ReportStore, ExitCode> {
    args.load()
        .map(|l| report::ReportStore::new(l.config.data_dir.join("reports")))
        .map_err(|e| config_error(&e))
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
