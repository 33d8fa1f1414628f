//! `cargo xtask test`: every test suite of the project, in one command.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use xshell::cmd;

use crate::context::Context;

#[derive(clap::Args)]
pub struct TestArgs {
    /// Suites to run (default: all): `rust`, or the name of an app under apps/.
    suites: Vec<String>,
}

pub fn run(ctx: &Context, args: &TestArgs) -> Result<()> {
    let apps = python_apps(ctx)?;
    let wanted = |suite: &str| args.suites.is_empty() || args.suites.iter().any(|s| s == suite);
    for suite in &args.suites {
        let known = suite == "rust" || apps.iter().any(|app| app_name(app) == suite);
        if !known {
            let names: Vec<&str> = apps.iter().map(|app| app_name(app)).collect();
            bail!("unknown test suite `{suite}`: choose from rust, {}", names.join(", "));
        }
    }
    let mut tally = Tally::default();
    let mut outcome = Ok(());
    for app in apps.iter().filter(|app| wanted(app_name(app))) {
        outcome = run_python_suite(ctx, app, &mut tally).with_context(|| format!("test suite of {}", app_name(app)));
        if outcome.is_err() {
            break;
        }
    }
    if outcome.is_ok() && wanted("rust") {
        outcome = run_rust_suites(ctx, &mut tally);
    }
    // One closing line over every runner, for people and for CI log readers.
    println!("test: {} passed, {} failed", tally.passed, tally.failed);
    outcome
}

/// Passed and failed tests, added up from the runners' own summary lines.
#[derive(Default, Debug, PartialEq)]
struct Tally {
    passed: u64,
    failed: u64,
}

impl Tally {
    /// Reads a cargo (`test result: ok. 9 passed; 0 failed; ...`) or pytest (`=== 1 failed, 9 passed in 2s ===`)
    /// summary line; other lines are ignored.
    fn add_summary_line(&mut self, line: &str) {
        let is_cargo = line.starts_with("test result:");
        let is_pytest = line.starts_with('=') && line.trim_end().ends_with('=') && line.contains(" in ");
        if !is_cargo && !is_pytest {
            return;
        }
        let words: Vec<&str> = line.split(|c: char| c.is_whitespace() || c == ',' || c == ';').collect();
        for pair in words.windows(2) {
            let Ok(count) = pair[0].parse::<u64>() else { continue };
            match pair[1] {
                "passed" => self.passed += count,
                "failed" | "error" | "errors" => self.failed += count,
                _ => {}
            }
        }
    }
}

/// Runs a test command with its output streamed through, adding its summary lines to the tally.
fn run_counted(command: duct::Expression, tally: &mut Tally) -> Result<()> {
    let status = crate::context::stream_lines(command, |line| {
        print!("{line}");
        tally.add_summary_line(line);
    })?;
    if !status.success() {
        bail!("tests failed ({status})");
    }
    Ok(())
}

/// The launcher's and the xtask's suites, including the integration tests against the built images,
/// which are built first (at the current revision, as `cargo xtask build` does).
fn run_rust_suites(ctx: &Context, tally: &mut Tally) -> Result<()> {
    eprintln!("xtask: rust suites (launcher, xtask, images)");
    // The launcher's container test runs the static binary, as the images do.
    let static_launcher = crate::launcher::build_static(ctx)?;
    match crate::docker::engine_version(ctx) {
        Ok(_) => {
            let images = crate::images::with_companions(ctx, &[])?;
            crate::build::build_all(ctx, &images)?;
        }
        Err(error) if !Context::in_ci() => eprintln!("xtask: image tests will be skipped: {error:#}"),
        Err(error) => return Err(error),
    }
    // --all-targets: unit and integration tests; the crates have no doc tests to run.
    let command = duct::cmd!("cargo", "test", "--workspace", "--locked", "--all-targets")
        .dir(&ctx.root)
        .env("LAUNCHER_STATIC_BIN", static_launcher);
    run_counted(command, tally).context("cargo test --workspace")
}

/// Every folder of apps/ with a pyproject.toml is a Python app with its own pytest suite.
fn python_apps(ctx: &Context) -> Result<Vec<PathBuf>> {
    let mut apps = Vec::new();
    for entry in std::fs::read_dir(ctx.root.join("apps")).context("reading apps/")? {
        let path = entry?.path();
        if path.join("pyproject.toml").is_file() {
            apps.push(path);
        }
    }
    apps.sort();
    Ok(apps)
}

fn app_name(app: &Path) -> &str {
    app.file_name().and_then(|name| name.to_str()).unwrap_or_default()
}

/// Creates `.venv` from the hash-pinned locks (again only when a lock changed), then runs pytest.
fn run_python_suite(ctx: &Context, app: &Path, tally: &mut Tally) -> Result<()> {
    eprintln!("xtask: python suite of {}", app_name(app));
    let sh = &ctx.sh;
    let _dir = sh.push_dir(app);
    let venv = app.join(".venv");
    let locks = ["requirements.lock", "requirements-dev.lock"];
    let mut fingerprint = String::new();
    for lock in locks {
        fingerprint.push_str(&std::fs::read_to_string(app.join(lock)).with_context(|| format!("reading {lock}"))?);
    }
    let stamp = venv.join(".locks");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(fingerprint.as_str()) {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        cmd!(sh, "{python} -m venv --clear .venv").run().context("creating the virtual environment")?;
        cmd!(
            sh,
            ".venv/bin/pip install --quiet --require-hashes --no-deps -r requirements.lock -r requirements-dev.lock"
        )
        .run()
        .context("installing the hash-pinned locks")?;
        std::fs::write(&stamp, fingerprint)?;
    }
    run_counted(duct::cmd!(venv.join("bin/python"), "-m", "pytest").dir(app), tally).context("pytest")
}

#[cfg(test)]
mod tests {
    use super::Tally;

    #[test]
    fn tally_reads_cargo_and_pytest_summaries_and_nothing_else() {
        let mut tally = Tally::default();
        tally.add_summary_line("test result: ok. 9 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out");
        tally.add_summary_line("test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured");
        tally.add_summary_line("============ 1 failed, 192 passed, 1 error in 35.17s ============");
        tally.add_summary_line("============================= 100 passed in 7.49s ==============================");
        tally.add_summary_line("running 5 tests");
        tally.add_summary_line("  | #7 10.33 passed 4 of them");
        assert_eq!(tally, Tally { passed: 304, failed: 4 });
    }
}
