//! `cargo xtask scan [IMAGE...]`: the CVE and secret gate.
//!
//! Trivy scans the built image (Debian packages of the root filesystem, Python packages, secrets) into a JSON
//! report; the gate reads it into typed structs and decides with the policy (`policy.rs`), never with Trivy's exit
//! code. Per image it writes `out/scan/<image>/trivy.json` and `trivy.sarif` (for GitHub code scanning).

pub mod policy;
pub mod report;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use xshell::cmd;

use crate::context::Context;
use crate::images::Image;
use crate::tools::{self, Tool};
use crate::trivy_db::Database;
use policy::{Date, Finding, Policy};
use report::Severity;

#[derive(clap::Args)]
pub struct ScanArgs {
    /// Images to scan (default: every image with `release = true`), as built by `cargo xtask build`.
    images: Vec<String>,
}

/// What the gate decided about one image.
#[derive(Debug)]
pub struct ScanOutcome {
    pub image: String,
    pub reference: String,
    pub passed: bool,
    /// Human-readable verdict: why it passed or failed, expired allow-list entries, excused findings.
    pub message: String,
    /// The findings that failed the gate (vulnerabilities, then secrets); empty when it passed.
    pub decisive: Vec<Finding>,
    /// Every vulnerability Trivy reported, by severity.
    pub counts: BTreeMap<Severity, usize>,
    /// How many Debian and language (Python) packages Trivy saw: zero means it was blind to that part.
    pub os_packages: usize,
    pub lang_packages: usize,
    pub report: PathBuf,
    pub sarif: PathBuf,
    pub duration: Duration,
}

/// `cargo xtask scan`: scans every selected image, prints each verdict, fails when any image fails.
pub fn run(ctx: &Context, args: &ScanArgs) -> Result<()> {
    let images = crate::images::select(ctx, &args.images)?;
    let revision = crate::images::revision_tag(ctx)?;
    let mut failed = Vec::new();
    for image in &images {
        let reference = crate::images::reference(&image.name, &revision);
        let outcome = scan_image(ctx, image, &reference)?;
        if !outcome.passed {
            failed.push(outcome.image);
        }
    }
    if !failed.is_empty() {
        bail!("the scan gate failed for {}; the tables above list the findings", failed.join(", "));
    }
    Ok(())
}

/// Scans one built image with the workspace policy and the image's `[scan]` override, prints the table of deciding
/// findings and the verdict. An image that fails the gate is an `Ok` outcome with `passed == false`; errors are for
/// scans that could not be made (no image, no Trivy, a corrupt report).
pub fn scan_image(ctx: &Context, image: &Image, reference: &str) -> Result<ScanOutcome> {
    let policy = Policy::load(&ctx.root, &image.settings.scan).with_context(|| format!("image {}", image.name))?;
    scan_reference(ctx, &image.name, reference, &policy, Database::from_env())
}

/// The scan behind `scan_image`, for any local image reference and policy; reports go to `out/scan/<name>/`.
pub fn scan_reference(
    ctx: &Context,
    name: &str,
    reference: &str,
    policy: &Policy,
    database: Database,
) -> Result<ScanOutcome> {
    let started = Instant::now();
    let out = output_dir(ctx, name)?;
    let report_path = out.join("trivy.json");
    let sarif_path = out.join("trivy.sarif");
    run_trivy(ctx, reference, &out, &report_path, database)
        .with_context(|| format!("scanning {name} ({reference})"))?;
    let report = report::read(&report_path).with_context(|| format!("scanning {name}"))?;
    convert_to_sarif(ctx, &report_path, &sarif_path).with_context(|| format!("scanning {name}"))?;

    let decision = policy.evaluate(&report, Date::today());
    let decisive: Vec<Finding> =
        decision.failing.iter().map(|(finding, _)| finding.clone()).chain(decision.secrets.iter().cloned()).collect();
    let outcome = ScanOutcome {
        image: name.to_owned(),
        reference: reference.to_owned(),
        passed: decision.passed(),
        message: decision.message(name, policy),
        decisive,
        counts: decision.counts.clone(),
        os_packages: report.package_count("os-pkgs"),
        lang_packages: report.package_count("lang-pkgs"),
        report: report_path,
        sarif: sarif_path,
        duration: started.elapsed(),
    };
    print_outcome(&outcome, database);
    Ok(outcome)
}

fn output_dir(ctx: &Context, name: &str) -> Result<PathBuf> {
    let dir = ctx.root.join("out").join("scan").join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn run_trivy(ctx: &Context, reference: &str, out: &Path, report: &Path, database: Database) -> Result<()> {
    // Trivy's databases are bolt files that one process at a time may hold: scans of this process take turns.
    static SCANNING: Mutex<()> = Mutex::new(());
    let trivy = tools::ensure(ctx, Tool::Trivy)?;
    let database_args = database.trivy_args(ctx)?;
    let image = ExportedImage::save(ctx, reference, out)?;
    let _turn = SCANNING.lock().unwrap_or_else(|poison| poison.into_inner());
    // A stale report must never be read as this scan's answer.
    let _ = std::fs::remove_file(report);
    eprintln!("xtask: trivy scanning {reference} ({})", database.describe());
    let sh = &ctx.sh;
    let tar = image.path();
    // --list-all-pkgs puts every package into the report, which proves what Trivy saw; the layer cache stays in
    // memory because an image is scanned once per build.
    cmd!(
        sh,
        "{trivy} image --input {tar} --scanners vuln,secret --list-all-pkgs --cache-backend memory
         --no-progress --format json --output {report} {database_args...}"
    )
    .run()
    .context("trivy could not scan the image (its log above says why)")?;
    Ok(())
}

/// `trivy convert` turns the JSON report into SARIF without scanning again.
fn convert_to_sarif(ctx: &Context, report: &Path, sarif: &Path) -> Result<()> {
    let trivy = tools::ensure(ctx, Tool::Trivy)?;
    let sh = &ctx.sh;
    cmd!(sh, "{trivy} convert --quiet --format sarif --output {sarif} {report}")
        .run()
        .with_context(|| format!("converting {} to SARIF", report.display()))
}

fn print_outcome(outcome: &ScanOutcome, database: Database) {
    let counts: Vec<String> = Severity::ALL
        .iter()
        .rev()
        .map(|severity| format!("{severity}: {}", outcome.counts.get(severity).copied().unwrap_or(0)))
        .collect();
    println!(
        "\n{} ({}): {} Debian and {} language packages, vulnerabilities {} [{}, scanned in {:.1?}]",
        outcome.image,
        outcome.reference,
        outcome.os_packages,
        outcome.lang_packages,
        counts.join(", "),
        database.describe(),
        outcome.duration
    );
    if !outcome.decisive.is_empty() {
        print!("{}", table(&outcome.decisive));
    }
    println!("{}", outcome.message);
    println!("reports: {} and {}", outcome.report.display(), outcome.sarif.display());
}

/// The findings as an aligned text table: ID, package, installed, fixed, severity, title.
pub fn table(findings: &[Finding]) -> String {
    const TITLE_WIDTH: usize = 70;
    let header = ["ID", "PACKAGE", "INSTALLED", "FIXED", "SEVERITY", "TITLE"];
    let rows: Vec<[String; 6]> = findings
        .iter()
        .map(|finding| {
            let mut title = finding.title.replace('\n', " ");
            if title.chars().count() > TITLE_WIDTH {
                title = title.chars().take(TITLE_WIDTH - 1).collect::<String>() + "…";
            }
            let fixed = if finding.fixed.is_empty() { "-".to_owned() } else { finding.fixed.clone() };
            [
                finding.id.clone(),
                finding.package.clone(),
                finding.installed.clone(),
                fixed,
                finding.severity.to_string(),
                title,
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let mut push_row = |cells: [&str; 6]| {
        let padded: Vec<String> = cells.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        text.push_str(padded.join("  ").trim_end());
        text.push('\n');
    };
    push_row(header);
    for row in &rows {
        push_row(row.each_ref().map(String::as_str));
    }
    text
}

/// An image saved from the engine with `docker save` into a tar file, removed again on drop. Scanners read the tar,
/// which works with any engine version and needs no access to the engine's API.
pub(crate) struct ExportedImage {
    path: PathBuf,
}

impl ExportedImage {
    pub(crate) fn save(ctx: &Context, reference: &str, dir: &Path) -> Result<ExportedImage> {
        crate::docker::engine_version(ctx)?;
        if !crate::docker::has_image(ctx, reference) {
            bail!("the image {reference} does not exist in the Docker engine: build it first (`cargo xtask build`)");
        }
        let path = dir.join(format!("image-{}.tar", std::process::id()));
        let sh = &ctx.sh;
        cmd!(sh, "docker save --output {path} {reference}")
            .quiet()
            .run()
            .with_context(|| format!("`docker save {reference}` failed"))?;
        Ok(ExportedImage { path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The tar as a scanner source argument, e.g. `docker-archive:/path/image.tar` for syft.
    pub(crate) fn source(&self, scheme: &str) -> OsString {
        let mut source = OsString::from(format!("{scheme}:"));
        source.push(&self.path);
        source
    }
}

impl Drop for ExportedImage {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
