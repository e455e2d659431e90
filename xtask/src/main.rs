//! Developer tasks that cargo alone cannot do: bootstrap the eBPF toolchain, run the agent
//! with the privileges it needs, and run the test binaries (escalating only the privileged
//! ones), on this machine's kernel or on other kernels under qemu (`vm`), and benchmark it
//! (`bench`), and fuzz it (`fuzz`). Each subcommand lives in its own module.

mod bench;
mod cargo;
mod fuzz;
mod run;
mod setup;
mod test;
mod totals;
mod vm;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "claude-monitor developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what the eBPF build needs (nightly rust-src, bpf-linker linked against the
    /// nightly's own LLVM). Idempotent: a second run takes a second or two.
    Setup(setup::Options),
    /// Set up, build the agent (release) and start it: `cargo xtask run -- ARGS`. With no
    /// arguments it runs the host agent, `daemon --stdout`. Escalates with sudo when not root.
    Run(run::Options),
    /// Set up, build, and run every test: unit tests as you, the real-kernel integration
    /// tests as root (sudo when you are not root). Under CI=true they never skip.
    /// `--kernel 6.1|6.12|all` runs the real-kernel scenarios on Debian's cloud kernels too,
    /// booted under qemu (no root needed for those).
    Test(test::Options),
    /// Set up, build (release) and benchmark the agent as root (sudo when you are not):
    /// capture rate and cost in a spawn storm, a signal storm and flood, an OOM loop and
    /// at idle, side by side with an untraced run and with bpftrace. Prints a table per
    /// scenario with the targets of issue 4 and writes target/bench/<time>.json.
    /// `--quick` runs a small version in about a minute.
    Bench(bench::Options),
    /// Run libFuzzer (cargo-fuzz, installed when missing, on the nightly toolchain) on the
    /// fuzz targets of monitor/src/fuzz for `--secs` seconds each (default 30), from the
    /// committed seeds in fuzz/corpus; crashes are saved under target/fuzz/artifacts and
    /// make it fail. `cargo xtask test` replays the corpus on stable.
    Fuzz(fuzz::Options),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup(opts) => setup::run(&opts).map(|_| ()),
        Command::Run(opts) => run::run(&opts),
        Command::Test(opts) => test::run(&opts),
        Command::Bench(opts) => bench::run(&opts),
        Command::Fuzz(opts) => fuzz::run(&opts),
    };
    if let Err(err) = result {
        eprintln!("xtask: error: {err:#}");
        std::process::exit(1);
    }
}
