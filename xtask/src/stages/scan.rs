//! `cargo xtask scan [IMAGE...]`: the CVE and secret gate.
//!
//! Trivy scans the image's OCI layout (Debian packages of the root filesystem, Python packages, secrets) into a JSON
//! report; the gate reads it into typed structs and decides with the policy (`policy.rs`), never with Trivy's exit
//! code. Per image and platform it writes `out/scan/<image>/<arch>/trivy.json` and `trivy.sarif` (for GitHub code
//! scanning); any platform that fails fails the gate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use comfy_table::{presets, Table};

use crate::built::Built;
use crate::context::Context;
use crate::images::Image;
use crate::policy::{self, Expectations, Finding, Policy};
use crate::trivy::{self, Severity};
use crate::trivy_db::Database;

#[derive(clap::Args)]
pub struct ScanArgs {
    /// Images to scan (default: every image with `release = true`), every platform `cargo xtask build` built.
    images: Vec<String>,
    /// Also fail on allow-list entries that excuse no finding any more.
    #[arg(long)]
    strict: bool,
    /// Scan with the Trivy database mirrored in this repository, HOST[:PORT]/PATH[:TAG] (tag `2` unless given);
    /// wins over XTASK_TRIVY_DB_REPOSITORY.
    #[arg(long, value_name = "REF")]
    db_repository: Option<String>,
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
    /// Allow-list entries that excuse no finding any more.
    pub stale: Vec<String>,
    pub report: PathBuf,
    pub sarif: PathBuf,
    pub duration: Duration,
}

/// `cargo xtask scan`: scans every selected image, prints each verdict, fails when any image fails.
pub fn run(ctx: &Context, args: &ScanArgs) -> Result<()> {
    let database = Database::select(args.db_repository.as_deref())?;
    let mut failed = Vec::new();
    for image in ctx.select(&args.images)? {
        for built in Built::all_current(ctx, &image.name)? {
            let outcome = scan_image_with(ctx, image, &built, &database)?;
            if !outcome.passed || (args.strict && !outcome.stale.is_empty()) {
                failed.push(outcome.image);
            }
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
pub fn scan_image(ctx: &Context, image: &Image, built: &Built) -> Result<ScanOutcome> {
    scan_image_with(ctx, image, built, &Database::from_env()?)
}

/// [`scan_image`] with the database chosen by the caller (`--db-repository`).
pub fn scan_image_with(ctx: &Context, image: &Image, built: &Built, database: &Database) -> Result<ScanOutcome> {
    let policy = Policy::load(&ctx.root, &image.settings.scan).with_context(|| format!("image {}", image.name))?;
    let source =
        ImageSource { path: Some(&built.layout.dir), reference: &built.reference, expect: expectations(image) };
    scan_source(ctx, &built.name(), &source, &policy, database)
}

/// What Trivy must see in an image, from its settings: its locked Debian packages, its virtual environment.
pub fn expectations(image: &Image) -> Expectations {
    Expectations {
        os_packages: !image.settings.rootfs.packages.is_empty(),
        python_packages: image.settings.venv.is_some(),
    }
}

/// An image as the scanners read it.
pub struct ImageSource<'a> {
    /// An OCI layout folder or a `docker save` archive; `None`: the image in its registry, `reference`.
    pub path: Option<&'a Path>,
    /// What the image is called: for the output, and for pulling it from its registry.
    pub reference: &'a str,
    /// What the image holds that Trivy must see.
    pub expect: Expectations,
}

/// The scan behind `scan_image`, for any image and policy; reports go to `out/scan/<name>/`.
pub fn scan_source(
    ctx: &Context,
    name: &str,
    source: &ImageSource,
    policy: &Policy,
    database: &Database,
) -> Result<ScanOutcome> {
    let reference = source.reference;
    let started = Instant::now();
    let report_path = ctx.out.trivy_report(name);
    let sarif_path = ctx.out.trivy_sarif(name);
    std::fs::create_dir_all(ctx.out.scan_dir(name))?;
    eprintln!("xtask: trivy scanning {reference} ({})", database.describe());
    let target = match source.path {
        Some(path) => trivy::Target::Disk(path),
        None => trivy::Target::Registry(reference),
    };
    trivy::scan(ctx, &target, &report_path, database).with_context(|| format!("scanning {name} ({reference})"))?;
    let report = trivy::read(&report_path).with_context(|| format!("scanning {name}"))?;
    trivy::convert_to_sarif(ctx, &report_path, &sarif_path).with_context(|| format!("scanning {name}"))?;

    let decision = policy.evaluate(&report, policy::today(), &source.expect);
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
        stale: decision.stale.iter().map(|entry| entry.id.clone()).collect(),
        report: report_path,
        sarif: sarif_path,
        duration: started.elapsed(),
    };
    print_outcome(&outcome, database);
    Ok(outcome)
}

fn print_outcome(outcome: &ScanOutcome, database: &Database) {
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
        println!("{}", table(&outcome.decisive));
    }
    println!("{}", outcome.message);
    println!("reports: {} and {}", outcome.report.display(), outcome.sarif.display());
}

/// The findings as an aligned text table: ID, package, installed, fixed, severity, title.
pub fn table(findings: &[Finding]) -> String {
    const TITLE_WIDTH: usize = 70;
    let mut table = Table::new();
    table.load_preset(presets::NOTHING).set_header(["ID", "PACKAGE", "INSTALLED", "FIXED", "SEVERITY", "TITLE"]);
    for finding in findings {
        let mut title = finding.title.replace('\n', " ");
        if title.chars().count() > TITLE_WIDTH {
            title = title.chars().take(TITLE_WIDTH - 1).collect::<String>() + "…";
        }
        let fixed = if finding.fixed.is_empty() { "-" } else { finding.fixed.as_str() };
        table.add_row([
            finding.id.as_str(),
            &finding.package,
            &finding.installed,
            fixed,
            &finding.severity.to_string(),
            &title,
        ]);
    }
    table.to_string()
}
