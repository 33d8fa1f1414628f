//! `cargo xtask ci`: the main job, the same locally and on GitHub Actions.
//!
//! tools → build → scan (gate + SBOM) → healthcheck → image integration tests, then one summary table.
//! A failing image does not stop the others; the exit code is non-zero after the summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use serde::Serialize;
use xshell::cmd;

use crate::build::Built;
use crate::context::Context;
use crate::images;

#[derive(clap::Args, Default)]
pub struct CiArgs {
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Leave out the image integration tests (`cargo xtask test` runs them too).
    #[arg(long)]
    pub skip_tests: bool,
}

#[derive(Serialize)]
pub struct Summary {
    pub revision: String,
    pub passed: bool,
    pub steps: Vec<Step>,
    pub images: Vec<ImageResult>,
}

#[derive(Serialize)]
pub struct Step {
    pub name: String,
    pub seconds: f64,
    pub passed: bool,
}

#[derive(Serialize, Default)]
pub struct ImageResult {
    pub image: String,
    pub reference: String,
    pub id: String,
    pub size_bytes: u64,
    pub vulnerabilities: BTreeMap<String, usize>,
    pub gate: Option<bool>,
    pub sbom: Option<PathBuf>,
    pub healthy_seconds: Option<f64>,
    /// The first thing that failed for this image, if anything did.
    pub failure: Option<String>,
}

/// Runs the whole job and returns the summary; an `Err` only when the job could not run at all.
pub fn run(ctx: &Context, args: &CiArgs) -> Result<Summary> {
    let revision = images::revision_tag(ctx)?;
    let deliverables = images::select(ctx, &[])?;
    let mut summary = Summary { revision, passed: true, steps: Vec::new(), images: Vec::new() };
    summary.images =
        deliverables.iter().map(|image| ImageResult { image: image.name.clone(), ..Default::default() }).collect();

    step(&mut summary, "engine", || crate::docker::engine_version(ctx).map(drop))?;
    step(&mut summary, "tools", || crate::tools::ensure_all(ctx).map(drop))?;
    step(&mut summary, "sweep", || crate::stack::sweep(ctx))?;

    let mut built: BTreeMap<String, Built> = BTreeMap::new();
    step(&mut summary, "build", || {
        let everything = images::with_companions(ctx, &[])?;
        for record in crate::build::build_all(ctx, &everything)? {
            built.insert(record.image.clone(), record);
        }
        Ok(())
    })?;
    for result in &mut summary.images {
        if let Some(record) = built.get(&result.image) {
            result.reference = record.reference.clone();
            result.id = record.id.clone();
            result.size_bytes = record.size_bytes;
        }
    }

    per_image(&mut summary, "scan", &deliverables, |image, result| {
        let outcome = crate::scan::scan_image(ctx, image, &result.reference)?;
        result.vulnerabilities =
            outcome.counts.iter().map(|(severity, count)| (format!("{severity:?}").to_uppercase(), *count)).collect();
        result.gate = Some(outcome.passed);
        result.sbom = Some(crate::sbom::sbom(ctx, image, &result.reference)?);
        if !outcome.passed {
            bail!("scan gate: {}", outcome.message);
        }
        Ok(())
    })?;

    per_image(&mut summary, "healthcheck", &deliverables, |image, result| {
        let record = built.get(&image.name).context("not built")?;
        let elapsed = crate::healthcheck::check(ctx, image, record)?;
        result.healthy_seconds = Some(elapsed.as_secs_f64());
        Ok(())
    })?;

    if !args.skip_tests {
        let tests_passed = step(&mut summary, "integration tests", || {
            let sh = &ctx.sh;
            // The tests mostly wait on containers: more of them at once than there are cores.
            cmd!(sh, "cargo test --quiet --locked -p xtask --test images -- --test-threads 4")
                .run()
                .context("image integration tests failed")?;
            Ok(())
        });
        if tests_passed.is_err() {
            summary.passed = false;
        }
    }
    Ok(summary)
}

/// Runs one step of the job, printing its name and duration. An error of this step ends the job
/// (nothing after it could run), except for steps that report per image.
fn step(summary: &mut Summary, name: &str, body: impl FnOnce() -> Result<()>) -> Result<()> {
    eprintln!("==> {name}");
    let started = Instant::now();
    let outcome = body();
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("==> {name}: {} in {seconds:.1}s", if outcome.is_ok() { "done" } else { "FAILED" });
    summary.steps.push(Step { name: name.to_owned(), seconds, passed: outcome.is_ok() });
    if outcome.is_err() {
        summary.passed = false;
    }
    outcome.with_context(|| format!("ci step `{name}`"))
}

/// A step that runs for each image still without a failure; a failure is recorded on that image only.
fn per_image(
    summary: &mut Summary,
    name: &str,
    images: &[images::Image],
    mut body: impl FnMut(&images::Image, &mut ImageResult) -> Result<()>,
) -> Result<()> {
    eprintln!("==> {name}");
    let started = Instant::now();
    let mut all_passed = true;
    for (image, result) in images.iter().zip(summary.images.iter_mut()) {
        if result.failure.is_some() {
            continue;
        }
        if let Err(error) = body(image, result) {
            eprintln!("xtask: image {}: {name} failed: {error:#}", image.name);
            result.failure = Some(format!("{name}: {error:#}"));
            all_passed = false;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("==> {name}: {} in {seconds:.1}s", if all_passed { "done" } else { "FAILED" });
    summary.steps.push(Step { name: name.to_owned(), seconds, passed: all_passed });
    summary.passed &= all_passed;
    Ok(())
}

/// `cargo xtask ci`: runs the job, prints the summary (and writes it where asked), fails after it.
pub fn main(ctx: &Context, args: &CiArgs) -> Result<()> {
    let started = Instant::now();
    let summary = match run(ctx, args) {
        Ok(summary) => summary,
        Err(error) => {
            annotate_error(&format!("{error:#}"));
            return Err(error);
        }
    };
    let table = table(&summary);
    println!("\n{table}");
    println!("ci: {} in {:.0}s", if summary.passed { "passed" } else { "FAILED" }, started.elapsed().as_secs_f64());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&summary)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if Context::is_github_actions() {
        if let Ok(path) = std::env::var("GITHUB_STEP_SUMMARY") {
            use std::io::Write as _;
            let mut file = std::fs::OpenOptions::new().append(true).create(true).open(path)?;
            writeln!(file, "## cargo xtask ci\n\n{table}")?;
        }
        for result in &summary.images {
            if let Some(failure) = &result.failure {
                annotate_error(&format!("{}: {failure}", result.image));
            }
        }
    }
    if !summary.passed {
        bail!("ci failed: see the summary above");
    }
    Ok(())
}

/// A GitHub Actions error annotation (one line; newlines escaped as the workflow syntax requires).
fn annotate_error(message: &str) {
    if Context::is_github_actions() {
        let escaped = message.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A");
        println!("::error title=cargo xtask ci::{escaped}");
    }
}

/// The summary as a Markdown table, readable in a terminal and in a GitHub step summary.
pub fn table(summary: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| image | tag | image id | size | vulnerabilities (C/H/M/L/U) | gate | healthy after | result |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for result in &summary.images {
        let count = |severity: &str| result.vulnerabilities.get(severity).copied().unwrap_or(0);
        let vulnerabilities = if result.gate.is_some() {
            format!("{}/{}/{}/{}/{}", count("CRITICAL"), count("HIGH"), count("MEDIUM"), count("LOW"), count("UNKNOWN"))
        } else {
            "-".to_owned()
        };
        let tag = result.reference.rsplit_once(':').map_or("-", |(_, tag)| tag);
        let id = result.id.strip_prefix("sha256:").map_or("-".to_owned(), |hex| format!("sha256:{}", &hex[..12]));
        let size =
            if result.size_bytes > 0 { format!("{:.1} MB", result.size_bytes as f64 / 1e6) } else { "-".to_owned() };
        let gate = match result.gate {
            Some(true) => "pass",
            Some(false) => "FAIL",
            None => "-",
        };
        let healthy = result.healthy_seconds.map_or("-".to_owned(), |seconds| format!("{seconds:.2}s"));
        let outcome = match &result.failure {
            None if summary.passed => "ok".to_owned(),
            None => "ok (job failed)".to_owned(),
            Some(failure) => format!("FAILED ({})", failure.lines().next().unwrap_or_default()),
        };
        let _ = writeln!(
            out,
            "| {} | {tag} | {id} | {size} | {vulnerabilities} | {gate} | {healthy} | {outcome} |",
            result.image
        );
    }
    let steps: Vec<String> = summary
        .steps
        .iter()
        .map(|step| format!("{} {:.1}s{}", step.name, step.seconds, if step.passed { "" } else { " (FAILED)" }))
        .collect();
    let _ = writeln!(out, "\nsteps: {}", steps.join(", "));
    out
}
