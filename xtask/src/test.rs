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
    for app in apps.iter().filter(|app| wanted(app_name(app))) {
        run_python_suite(ctx, app).with_context(|| format!("test suite of {}", app_name(app)))?;
    }
    if wanted("rust") {
        run_rust_suites(ctx)?;
    }
    Ok(())
}

/// The launcher's and the xtask's suites, including the integration tests against the built images,
/// which are built first (at the current revision, as `cargo xtask build` does).
fn run_rust_suites(ctx: &Context) -> Result<()> {
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
    let sh = &ctx.sh;
    cmd!(sh, "cargo test --workspace --locked")
        .env("LAUNCHER_STATIC_BIN", static_launcher)
        .run()
        .context("cargo test --workspace")?;
    Ok(())
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
fn run_python_suite(ctx: &Context, app: &Path) -> Result<()> {
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
    cmd!(sh, ".venv/bin/python -m pytest").run().context("pytest failed")?;
    Ok(())
}
