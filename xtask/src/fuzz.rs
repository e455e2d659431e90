//! `cargo xtask fuzz [TARGET] [--secs N]`: libFuzzer on the targets of `monitor/src/fuzz/`,
//! through the `fuzz/` crate and cargo-fuzz, on the pinned nightly (libFuzzer needs
//! `-Z sanitizer`), N seconds per target.
//!
//! Each target starts from the committed seeds (`fuzz/corpus/<target>/`, read only) and
//! from what earlier runs found (`target/fuzz/corpus/<target>/`, kept between runs, not
//! committed). A crash, a timeout (an input that takes over 10 s) or an out-of-memory is
//! saved under `target/fuzz/artifacts/<target>/` and makes the command fail once every
//! target has run. To keep a crash as a regression, fix it and copy its file into
//! `fuzz/corpus/<target>/`: the unit tests replay that directory on stable.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    cargo::{describe, run_checked, status_of, workspace_root},
    setup::{self, NIGHTLY},
};

#[derive(clap::Args)]
pub struct Options {
    /// The target to run (one of `fuzz/fuzz_targets/*.rs`); all of them when omitted.
    pub target: Option<String>,
    /// Seconds of fuzzing per target.
    #[arg(long, default_value_t = 30)]
    pub secs: u64,
}

/// What one target's run came to.
struct Outcome {
    target: String,
    runs: Option<u64>,
    execs_per_sec: Option<u64>,
    new_units: usize,
    failures: Vec<PathBuf>,
    ok: bool,
}

pub fn run(opts: &Options) -> Result<()> {
    let toolchain = setup::run(&setup::Options::default())?;
    ensure_cargo_fuzz()?;
    let root = workspace_root();
    let fuzz_dir = root.join("fuzz");
    let all = targets(&fuzz_dir)?;
    let chosen = match &opts.target {
        Some(t) if all.contains(t) => vec![t.clone()],
        Some(t) => bail!("no fuzz target `{t}`; the targets are {}", all.join(", ")),
        None => all,
    };

    let work = root.join("target/fuzz");
    // One build for every target (cargo fuzz would otherwise check it for each).
    let mut build = fuzz_command("build", &root, &work);
    toolchain.apply(&mut build);
    eprintln!("xtask: building the fuzz targets: {}", describe(&build));
    run_checked(&mut build).context("building the fuzz targets")?;

    let mut outcomes = Vec::new();
    for target in &chosen {
        let found = work.join("corpus").join(target);
        let artifacts = work.join("artifacts").join(target);
        fs::create_dir_all(&found).with_context(|| format!("create {}", found.display()))?;
        fs::create_dir_all(&artifacts)
            .with_context(|| format!("create {}", artifacts.display()))?;
        let before_units = count_files(&found);
        let before_failures = files(&artifacts);
        let log = work.join(format!("{target}.log"));

        let mut cmd = fuzz_command("run", &root, &work);
        cmd.arg(target)
            .arg(&found)
            .arg(fuzz_dir.join("corpus").join(target))
            .arg("--")
            .arg(format!("-max_total_time={}", opts.secs))
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .args(["-timeout=10", "-max_len=65536", "-print_final_stats=1"]);
        toolchain.apply(&mut cmd);
        let log_file =
            fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        cmd.stdout(Stdio::null()).stderr(log_file);
        eprintln!(
            "xtask: fuzzing {target} for {} s (libFuzzer's output in {})",
            opts.secs,
            log.display()
        );
        let status = status_of(&mut cmd)?;
        let text = fs::read_to_string(&log).unwrap_or_default();
        let stat = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("stat::{name}:")))
                .and_then(|v| v.trim().parse().ok())
        };
        let failures: Vec<PathBuf> = files(&artifacts)
            .into_iter()
            .filter(|f| !before_failures.contains(f))
            .collect();
        let ok = status.success() && failures.is_empty();
        if !ok {
            // The crash report: the panic message and libFuzzer's summary.
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            for line in tail.into_iter().rev() {
                eprintln!("  {line}");
            }
        }
        outcomes.push(Outcome {
            target: target.clone(),
            runs: stat("number_of_executed_units"),
            execs_per_sec: stat("average_exec_per_sec"),
            new_units: count_files(&found).saturating_sub(before_units),
            failures,
            ok,
        });
    }

    println!(
        "{:<12} {:>10} {:>8} {:>10}  result",
        "target", "runs", "exec/s", "new units"
    );
    let show = |v: Option<u64>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
    for o in &outcomes {
        let result = if o.ok {
            "ok".to_owned()
        } else if o.failures.is_empty() {
            "failed (see its log)".to_owned()
        } else {
            let names: Vec<String> = o.failures.iter().map(|f| f.display().to_string()).collect();
            format!("CRASH: {}", names.join(", "))
        };
        println!(
            "{:<12} {:>10} {:>8} {:>10}  {result}",
            o.target,
            show(o.runs),
            show(o.execs_per_sec),
            o.new_units
        );
    }
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| !o.ok)
        .map(|o| o.target.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "fuzz targets failed: {}; reproduce with `rustup run {NIGHTLY} cargo fuzz run --fuzz-dir fuzz TARGET FILE`",
            failed.join(", ")
        );
    }
    Ok(())
}

/// `rustup run <nightly> cargo fuzz <subcommand>` on `fuzz/`, with the build kept under
/// `target/fuzz/build`.
fn fuzz_command(subcommand: &str, root: &Path, work: &Path) -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", NIGHTLY, "cargo", "fuzz", subcommand])
        .arg("--fuzz-dir")
        .arg(root.join("fuzz"))
        .arg("--target-dir")
        .arg(work.join("build"))
        .current_dir(root);
    cmd
}

/// cargo-fuzz, installed from crates.io when missing.
fn ensure_cargo_fuzz() -> Result<()> {
    let works = Command::new("rustup")
        .args(["run", NIGHTLY, "cargo", "fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if works {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-fuzz (cargo install cargo-fuzz --locked)");
    run_checked(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
        .context("could not install cargo-fuzz; check network access to crates.io")
}

/// The targets: `fuzz/fuzz_targets/<name>.rs`, sorted.
fn targets(fuzz_dir: &Path) -> Result<Vec<String>> {
    let dir = fuzz_dir.join("fuzz_targets");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .with_context(|| format!("list {}", dir.display()))?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".rs")
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    Ok(names)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn count_files(dir: &Path) -> usize {
    files(dir).len()
}
