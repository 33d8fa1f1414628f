//! `cargo xtask test`: every test suite of the project, in one command.
//!
//! Every runner runs, whatever happened to the ones before it, and the end lists each with its result: a
//! pytest suite per app, one runner per cargo test binary of each workspace package, and the browser suite
//! ([`browser`]). A runner that stops before printing its summary (a compile error, a pip failure, a crash)
//! counts as one failure and is named.

mod browser;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use xshell::cmd;

use crate::context::Context;
use crate::platform::Platform;
use crate::stamp::{self, Stamp};

#[derive(clap::Args, Default)]
pub struct TestArgs {
    /// Suites to run (default: all): `rust`, `browser`, or the name of an app under apps/.
    pub suites: Vec<String>,
}

/// One suite of `cargo xtask test`, planned before anything runs.
#[derive(Debug, PartialEq)]
enum Suite {
    /// An app's pytest suite in its own virtual environment.
    Python(PathBuf),
    /// The static launcher, which the launcher's container test and the images run.
    StaticLauncher,
    /// The images, which the image integration tests run (skipped outside CI when no engine answers).
    Images,
    /// `cargo test` of one workspace package: one runner per test binary.
    Cargo(String),
    /// The browser suite, tests/browser/, against the images built by [`Suite::Images`].
    Browser,
}

/// The suites the arguments name (all when none is named), in the order they run.
fn plan(ctx: &Context, args: &TestArgs) -> Result<Vec<Suite>> {
    let apps = python_apps(ctx)?;
    for suite in &args.suites {
        let known = suite == "rust" || suite == "browser" || apps.iter().any(|app| app_name(app) == suite);
        if !known {
            let names: Vec<&str> = apps.iter().map(|app| app_name(app)).collect();
            bail!("unknown test suite `{suite}`: choose from rust, browser, {}", names.join(", "));
        }
    }
    let wanted = |suite: &str| args.suites.is_empty() || args.suites.iter().any(|s| s == suite);
    let mut plan: Vec<Suite> = apps.into_iter().filter(|app| wanted(app_name(app))).map(Suite::Python).collect();
    if wanted("rust") {
        plan.extend([Suite::StaticLauncher, Suite::Images]);
        plan.extend(workspace_packages(ctx)?.into_iter().map(Suite::Cargo));
    }
    if wanted("browser") {
        // Chosen alone, the browser suite still needs the images of this revision: built once either way.
        if !plan.contains(&Suite::Images) {
            plan.push(Suite::Images);
        }
        plan.push(Suite::Browser);
    }
    Ok(plan)
}

pub fn run(ctx: &Context, args: &TestArgs) -> Result<()> {
    let mut runners = Vec::new();
    let mut static_launcher = None;
    for suite in plan(ctx, args)? {
        match suite {
            Suite::Python(app) => runners.push(run_pytest(ctx, &app, &APP_LOCKS, &[])),
            Suite::StaticLauncher => match crate::static_launcher::build(ctx, Platform::Amd64) {
                Ok(path) => static_launcher = Some(path),
                Err(error) => runners.push(Runner::died("static launcher build", format!("{error:#}"))),
            },
            Suite::Images => runners.extend(build_images(ctx)),
            Suite::Cargo(package) => runners.extend(run_cargo_test(ctx, &package, static_launcher.as_deref())),
            Suite::Browser => runners.extend(browser::run(ctx)),
        }
    }
    // One closing block over every runner, for people and for CI log readers.
    println!("\n{}", report(&runners));
    let failed: Vec<&str> =
        runners.iter().filter(|runner| !runner.passed()).map(|runner| runner.name.as_str()).collect();
    if !failed.is_empty() {
        bail!("tests failed in {}", failed.join(", "));
    }
    record_pass(ctx, args, &runners)
}

/// What `release` checks before it publishes anything: that every suite passed for exactly this commit.
#[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
struct Pass {
    commit: String,
    passed: u64,
    finished: String,
}

/// After a full run that passed on a committed tree, records it in `out/test/passed.json`.
fn record_pass(ctx: &Context, args: &TestArgs, runners: &[Runner]) -> Result<()> {
    let revision = ctx.revision()?;
    if !args.suites.is_empty() || revision.dirty {
        return Ok(());
    }
    let pass = Pass {
        commit: revision.commit.clone(),
        passed: runners.iter().map(|runner| runner.passed).sum(),
        finished: jiff::Timestamp::now().to_string(),
    };
    let path = ctx.out.test_record();
    crate::files::write(&path, serde_json::to_string_pretty(&pass)?)
}

/// Whether `cargo xtask test` passed in full for the commit checked out, with a clean tree.
pub fn passed_for_this_commit(ctx: &Context) -> Result<bool> {
    let revision = ctx.revision()?;
    let recorded: Option<Pass> =
        std::fs::read_to_string(ctx.out.test_record()).ok().and_then(|text| serde_json::from_str(&text).ok());
    Ok(!revision.dirty && recorded.is_some_and(|pass| pass.commit == revision.commit))
}

/// What one test runner (a pytest suite, a cargo test binary, a build the tests need) reported.
#[derive(Debug, PartialEq)]
struct Runner {
    name: String,
    passed: u64,
    failed: u64,
    /// Why the runner itself failed when its tests cannot say it: it died, or never ran.
    problem: Option<String>,
}

impl Runner {
    fn new(name: impl Into<String>) -> Self {
        Runner { name: name.into(), passed: 0, failed: 0, problem: None }
    }

    /// A runner that could not run or did not finish: one failure, whatever it printed before.
    fn died(name: impl Into<String>, problem: impl Into<String>) -> Self {
        Runner { name: name.into(), passed: 0, failed: 1, problem: Some(problem.into()) }
    }

    fn passed(&self) -> bool {
        self.failed == 0 && self.problem.is_none()
    }

    /// Settles a runner that printed its summary (or not) and exited with `status`: a non-zero exit
    /// without a failure in the summary still counts as one failure.
    fn finish(mut self, saw_summary: bool, status: std::process::ExitStatus) -> Self {
        if !saw_summary {
            self.problem = Some(format!("exited ({status}) before printing its summary"));
            self.failed += 1;
        } else if !status.success() && self.failed == 0 {
            self.problem = Some(format!("exited ({status}) without reporting a failed test"));
            self.failed += 1;
        }
        self
    }

    /// Adds a cargo (`test result: ok. 9 passed; 0 failed; ...`) or pytest (`=== 1 failed, 9 passed in 2s ===`)
    /// summary line; returns whether the line was one.
    fn add_summary_line(&mut self, line: &str) -> bool {
        let is_cargo = line.starts_with("test result:");
        let is_pytest = line.starts_with('=') && line.trim_end().ends_with('=') && line.contains(" in ");
        if !is_cargo && !is_pytest {
            return false;
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
        true
    }
}

/// The closing block: each runner with its result, then `test: N passed, N failed` over all of them.
fn report(runners: &[Runner]) -> String {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    for runner in runners {
        let verdict = match (&runner.problem, runner.passed()) {
            (Some(_), _) => "DIED",
            (None, true) => "passed",
            (None, false) => "FAILED",
        };
        let counts = format!("{} passed, {} failed", runner.passed, runner.failed);
        table.add_row([verdict, &runner.name, &counts, runner.problem.as_deref().unwrap_or_default()]);
    }
    let passed: u64 = runners.iter().map(|runner| runner.passed).sum();
    let failed: u64 = runners.iter().map(|runner| runner.failed).sum();
    format!("test: results by runner\n{table}\ntest: {passed} passed, {failed} failed")
}

/// Builds every image at the current revision (as `cargo xtask build` does) for the image integration tests.
fn build_images(ctx: &Context) -> Option<Runner> {
    match ctx.engine() {
        Ok(_) => {}
        Err(error) if !Context::in_ci() => {
            eprintln!("xtask: image tests will be skipped: {error:#}");
            return None;
        }
        Err(error) => return Some(Runner::died("Docker engine", format!("{error:#}"))),
    }
    let built =
        ctx.with_companions(&[]).and_then(|images| super::build::build_all(ctx, &images, &Platform::defaults()));
    let error = built.err()?;
    eprintln!("xtask: the image build failed: {error:#}");
    Some(Runner::died("image build", format!("{error:#}")))
}

/// The members of the cargo workspace, from the root Cargo.toml.
fn workspace_packages(ctx: &Context) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Manifest {
        workspace: Workspace,
    }
    #[derive(serde::Deserialize)]
    struct Workspace {
        members: Vec<String>,
    }
    let path = ctx.root.join("Cargo.toml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let manifest: Manifest = toml::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
    Ok(manifest.workspace.members)
}

/// One `cargo test --package`, streamed through, as one runner per test binary it ran.
fn run_cargo_test(ctx: &Context, package: &str, static_launcher: Option<&Path>) -> Vec<Runner> {
    let sh = &ctx.sh;
    // --all-targets: unit and integration tests (the crates have no doc tests to run); --no-fail-fast: a failing
    // test binary does not keep the next ones from running.
    let mut command = cmd!(sh, "cargo test --locked --package {package} --all-targets --no-fail-fast");
    if let Some(path) = static_launcher {
        // The launcher's container test runs the static binary, as the images do.
        command = command.env("LAUNCHER_STATIC_BIN", path);
    }
    let mut binaries = CargoBinaries::new(package);
    let status = crate::process::stream(command, |line| {
        print!("{line}");
        binaries.add_line(line);
    });
    match status {
        Ok(status) => binaries.finish(status),
        Err(error) => vec![Runner::died(format!("cargo test -p {package}"), format!("{error:#}"))],
    }
}

/// The target of cargo test's `Running <target> (<binary>)` line: `unittests src/lib.rs (target/debug/deps/xtask-…)`
/// or `tests/images.rs (target/debug/deps/images-…)`. Not `cargo run`'s ``Running `<command>` `` (a test may run
/// cargo itself).
fn test_binary(line: &str) -> Option<&str> {
    let rest = line.trim().strip_prefix("Running ")?;
    let (target, binary) = rest.strip_suffix(')')?.split_once(" (")?;
    (!target.starts_with('`') && !binary.is_empty()).then(|| target.trim_start_matches("unittests "))
}

/// Follows cargo's output: `Running <target> (<binary>)` opens a test binary, its `test result:` line closes it.
struct CargoBinaries {
    package: String,
    done: Vec<Runner>,
    current: Option<Runner>,
}

impl CargoBinaries {
    fn new(package: &str) -> Self {
        CargoBinaries { package: package.to_owned(), done: Vec::new(), current: None }
    }

    fn add_line(&mut self, line: &str) {
        if let Some(target) = test_binary(line) {
            self.close_current();
            self.current = Some(Runner::new(format!("{} {target}", self.package)));
        } else if let Some(current) = &mut self.current {
            if current.add_summary_line(line) {
                self.done.push(self.current.take().expect("a current binary"));
            }
        }
    }

    /// A binary still open when the next one starts (or cargo ends) stopped before its summary.
    fn close_current(&mut self) {
        if let Some(runner) = self.current.take() {
            self.done.push(Runner::died(runner.name, "stopped before printing its summary (crashed or killed)"));
        }
    }

    fn finish(mut self, status: std::process::ExitStatus) -> Vec<Runner> {
        self.close_current();
        if self.done.is_empty() {
            // Nothing ran: the build failed (its errors are above), or the package has no tests at all.
            let name = format!("cargo test -p {}", self.package);
            let runner = if status.success() {
                Runner::new(name)
            } else {
                Runner::died(name, format!("did not build or run ({status})"))
            };
            return vec![runner];
        }
        if !status.success() && self.done.iter().all(Runner::passed) {
            self.done.push(Runner::died(format!("cargo test -p {}", self.package), format!("exited ({status})")));
        }
        self.done
    }
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

/// What an app's suite installs: the app's own runtime lock, and its test tools.
const APP_LOCKS: [&str; 2] = ["requirements.lock", "requirements-dev.lock"];

/// Runs the pytest suite of `dir` (an app, or tests/browser) in its `.venv`, made from the hash-pinned `locks`
/// first, with `env` on top of this process's environment.
fn run_pytest(ctx: &Context, dir: &Path, locks: &[&str], env: &[(String, String)]) -> Runner {
    let folder = dir.strip_prefix(&ctx.root).unwrap_or(dir).display().to_string();
    let name = format!("pytest {folder}");
    eprintln!("xtask: pytest suite of {folder}");
    if let Err(error) = prepare_venv(ctx, dir, locks) {
        eprintln!("xtask: {name}: {error:#}");
        return Runner::died(name, format!("{error:#}"));
    }
    let mut runner = Runner::new(name.clone());
    let mut saw_summary = false;
    let sh = &ctx.sh;
    let _dir = sh.push_dir(dir);
    let command = cmd!(sh, ".venv/bin/python -m pytest").envs(env.iter().map(|(key, value)| (key, value)));
    let status = crate::process::stream(command, |line| {
        print!("{line}");
        saw_summary |= runner.add_summary_line(line);
    });
    match status {
        Ok(status) => runner.finish(saw_summary, status),
        Err(error) => Runner::died(name, format!("{error:#}")),
    }
}

/// Creates `.venv` in `dir` from the hash-pinned `locks`, again only when one of them changed.
fn prepare_venv(ctx: &Context, dir: &Path, locks: &[&str]) -> Result<()> {
    let sh = &ctx.sh;
    let _dir = sh.push_dir(dir);
    let mut contents = Vec::new();
    for lock in locks {
        contents.push(std::fs::read(dir.join(lock)).with_context(|| format!("reading {lock}"))?);
    }
    let stamp = Stamp::new(
        dir.join(".venv/.locks"),
        stamp::fingerprint(locks.iter().copied().zip(contents.iter().map(Vec::as_slice))),
    );
    if !stamp.is_current() {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        cmd!(sh, "{python} -m venv --clear .venv").run().context("creating the virtual environment")?;
        let requirements = locks.iter().flat_map(|lock| ["-r", lock]);
        cmd!(sh, ".venv/bin/pip install --quiet --require-hashes --no-deps {requirements...}")
            .run()
            .context("installing the hash-pinned locks")?;
        stamp.record()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt as _;
    use std::process::ExitStatus;

    use super::*;

    fn exit(code: i32) -> ExitStatus {
        ExitStatus::from_raw(code << 8)
    }

    #[test]
    fn every_suite_is_planned_apps_first_browser_last_and_a_name_picks_one() {
        let ctx = Context::discover().unwrap();
        let all = plan(&ctx, &TestArgs { suites: Vec::new() }).unwrap();
        assert!(matches!(all.first(), Some(Suite::Python(_))), "{all:?}");
        let launcher = all.iter().position(|suite| *suite == Suite::StaticLauncher).unwrap();
        assert_eq!(all[launcher + 1], Suite::Images);
        assert!(all.contains(&Suite::Cargo("launcher".into())) && all.contains(&Suite::Cargo("xtask".into())));
        assert_eq!(all.last(), Some(&Suite::Browser));
        assert_eq!(all.iter().filter(|suite| **suite == Suite::Images).count(), 1, "{all:?}");
        let rust = plan(&ctx, &TestArgs { suites: vec!["rust".into()] }).unwrap();
        assert_eq!(rust[0], Suite::StaticLauncher);
        assert!(!rust.contains(&Suite::Browser));
        let browser = plan(&ctx, &TestArgs { suites: vec!["browser".into()] }).unwrap();
        assert_eq!(browser, [Suite::Images, Suite::Browser]);
        let error = plan(&ctx, &TestArgs { suites: vec!["nope".into()] }).unwrap_err().to_string();
        assert!(error.contains("unknown test suite `nope`: choose from rust, browser, "), "{error}");
    }

    #[test]
    fn summaries_of_cargo_and_pytest_are_read_and_nothing_else() {
        let mut runner = Runner::new("r");
        assert!(runner.add_summary_line("test result: ok. 9 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out"));
        assert!(runner.add_summary_line("test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured"));
        assert!(runner.add_summary_line("============ 1 failed, 192 passed, 1 error in 35.17s ============"));
        assert!(
            runner.add_summary_line("============================= 100 passed in 7.49s ==============================")
        );
        assert!(!runner.add_summary_line("running 5 tests"));
        assert!(!runner.add_summary_line("  | #7 10.33 passed 4 of them"));
        assert_eq!((runner.passed, runner.failed), (304, 4));
    }

    #[test]
    fn a_runner_that_exits_before_its_summary_is_one_failure_and_named() {
        let died = Runner::new("pytest apps/x").finish(false, exit(2));
        assert_eq!((died.passed(), died.failed), (false, 1));
        let silent_failure = Runner::new("pytest apps/y").finish(true, exit(1));
        assert_eq!(silent_failure.failed, 1);
        let mut fine = Runner::new("pytest apps/z");
        fine.add_summary_line("=== 3 passed in 1.0s ===");
        assert!(fine.finish(true, exit(0)).passed());
        let text = report(&[died, silent_failure]);
        assert!(
            text.lines().any(|line| line.trim_start().starts_with("DIED") && line.contains("pytest apps/x")),
            "{text}"
        );
        assert!(text.ends_with("test: 0 passed, 2 failed"), "{text}");
    }

    #[test]
    fn each_cargo_test_binary_is_a_runner_and_a_crashed_one_counts() {
        let mut binaries = CargoBinaries::new("launcher");
        for line in [
            "     Running unittests src/main.rs (target/debug/deps/launcher-1a2b)\n",
            "test result: ok. 4 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s\n",
            "     Running tests/shutdown.rs (target/debug/deps/shutdown-3c4d)\n",
            "running 7 tests\n",
            // A test that runs cargo itself: not a test binary of this package.
            "     Running `/work/target/debug/xtask build --platform linux/amd64`\n",
            "error: test failed, to rerun pass `--test shutdown`\n",
            "     Running tests/setup.rs (target/debug/deps/setup-5e6f)\n",
            "test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out\n",
        ] {
            binaries.add_line(line);
        }
        let runners = binaries.finish(exit(101));
        let names: Vec<&str> = runners.iter().map(|runner| runner.name.as_str()).collect();
        assert_eq!(names, ["launcher src/main.rs", "launcher tests/shutdown.rs", "launcher tests/setup.rs"]);
        assert!(runners[0].passed());
        assert!(runners[1].problem.is_some() && runners[1].failed == 1);
        assert_eq!((runners[2].passed, runners[2].failed), (2, 1));
        assert!(report(&runners).ends_with("test: 6 passed, 2 failed"));
    }

    #[test]
    fn a_package_that_does_not_build_is_named() {
        let mut binaries = CargoBinaries::new("xtask");
        binaries.add_line("error[E0425]: cannot find value `x` in this scope\n");
        let runners = binaries.finish(exit(101));
        assert_eq!(runners.len(), 1);
        assert_eq!(runners[0].name, "cargo test -p xtask");
        assert!(!runners[0].passed() && runners[0].failed == 1);
    }
}
