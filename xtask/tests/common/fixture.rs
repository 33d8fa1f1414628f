//! The Flask 2.2.2 fixture image (tests/fixtures/flask-2.2.2): one Debian package record and Flask 2.2.2, whose
//! CVE-2023-30861 every gate must find.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use xshell::cmd;
use xtask::context::Context;
use xtask::policy::Expectations;
use xtask::stages::scan::ImageSource;

pub const REFERENCE: &str = "xtask-test/flask-2.2.2:fixture";

/// Builds the fixture and saves it as a `docker save` archive for the scanners; `name` keeps each test binary's
/// archive apart.
pub fn build(ctx: &Context, name: &str) -> Result<PathBuf> {
    let dir = ctx.root.join("tests/fixtures/flask-2.2.2");
    // A FROM-scratch image with two COPY lines: the classic builder does it with any CLI.
    cmd!(ctx.sh, "docker build --quiet --tag {REFERENCE} {dir}")
        .env("DOCKER_BUILDKIT", "0")
        .quiet()
        .ignore_stdout()
        .run()
        .context("building tests/fixtures/flask-2.2.2")?;
    let archive = ctx.out.dir().join("test").join(format!("flask-2.2.2-{name}-{}.tar", std::process::id()));
    std::fs::create_dir_all(archive.parent().context("an archive path without a folder")?)?;
    cmd!(ctx.sh, "docker save --output {archive} {REFERENCE}").run().context("saving the fixture image")?;
    Ok(archive)
}

/// The saved fixture as the scanners read it: Trivy must see its Debian package and Flask.
pub fn source(archive: &Path) -> ImageSource<'_> {
    ImageSource {
        path: Some(archive),
        reference: REFERENCE,
        expect: Expectations { os_packages: true, python_packages: true },
    }
}
