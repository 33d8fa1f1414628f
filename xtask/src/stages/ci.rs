//! `cargo xtask ci`: the main job, the same locally and on GitHub Actions.
//!
//! engine → tools → sweep → build → scan (gate + SBOM) → healthcheck → image integration tests, then one summary
//! table. The steps are planned as data first, then run in one loop. A failing image does not stop the others; the
//! exit code is non-zero after the summary.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use comfy_table::{presets, Table};
use serde::Serialize;
use xshell::cmd;

use crate::built::Built;
use crate::context::Context;
use crate::images::Image;
use crate::platform::{Platform, PlatformArgs};

#[derive(clap::Args, Default)]
pub struct CiArgs {
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Leave out the image integration tests (`cargo xtask test` runs them too).
    #[arg(long)]
    pub skip_tests: bool,
    /// Scan with the Trivy database mirrored in this repository, HOST[:PORT]/PATH[:TAG] (tag `2` unless given);
    /// wins over XTASK_TRIVY_DB_REPOSITORY.
    #[arg(long, value_name = "REF")]
    pub db_repository: Option<String>,
    #[command(flatten)]
    pub platforms: PlatformArgs,
}

/// One step of the job.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Step {
    Engine,
    Tools,
    Sweep,
    Build,
    /// The scan gate and the SBOM, per image and platform.
    Scan,
    /// Per image, on amd64 (the arm64 images run under emulation in `cargo xtask test`).
    Healthcheck,
    IntegrationTests,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Engine => "engine",
            Step::Tools => "tools",
            Step::Sweep => "sweep",
            Step::Build => "build",
            Step::Scan => "scan",
            Step::Healthcheck => "healthcheck",
            Step::IntegrationTests => "integration tests",
        }
    }
}

/// The steps the arguments ask for, in order.
fn plan(args: &CiArgs) -> Vec<Step> {
    let mut steps = vec![Step::Engine, Step::Tools, Step::Sweep, Step::Build, Step::Scan, Step::Healthcheck];
    if !args.skip_tests {
        steps.push(Step::IntegrationTests);
    }
    steps
}

#[derive(Serialize)]
pub struct Summary {
    pub revision: String,
    pub passed: bool,
    pub steps: Vec<StepResult>,
    pub images: Vec<ImageResult>,
}

#[derive(Serialize)]
pub struct StepResult {
    pub name: String,
    pub seconds: f64,
    pub passed: bool,
}

/// One row of the summary: an image on one platform.
#[derive(Serialize, Default)]
pub struct ImageResult {
    pub image: String,
    /// `linux/amd64`, `linux/arm64`.
    pub platform: String,
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
    let platforms = args.platforms.chosen();
    let targets: Vec<(&Image, Platform)> = ctx
        .select(&[])?
        .into_iter()
        .flat_map(|image| Platform::for_image(image, &platforms).into_iter().map(move |platform| (image, platform)))
        .collect();
    let database = crate::trivy_db::Database::select(args.db_repository.as_deref())?;
    let mut summary =
        Summary { revision: ctx.revision()?.tag.clone(), passed: true, steps: Vec::new(), images: Vec::new() };
    summary.images = targets
        .iter()
        .map(|(image, platform)| ImageResult {
            image: image.name.clone(),
            platform: platform.docker(),
            ..Default::default()
        })
        .collect();
    let mut built: BTreeMap<(String, Platform), Built> = BTreeMap::new();
    for step in plan(args) {
        match step {
            Step::Engine => whole(&mut summary, step, || ctx.engine().map(drop))?,
            Step::Tools => whole(&mut summary, step, || {
                crate::pinned_tools::ensure_all(ctx, &crate::pinned_tools::Tool::SUPPLY_CHAIN).map(drop)
            })?,
            Step::Sweep => whole(&mut summary, step, || crate::stack::sweep(ctx))?,
            Step::Build => {
                whole(&mut summary, step, || {
                    for record in super::build::build_all(ctx, &ctx.with_companions(&[])?, &platforms)? {
                        built.insert((record.image.clone(), record.platform), record);
                    }
                    Ok(())
                })?;
                for (result, (image, platform)) in summary.images.iter_mut().zip(&targets) {
                    if let Some(record) = built.get(&(image.name.clone(), *platform)) {
                        result.reference = record.reference.clone();
                        result.id = record.id.clone();
                        result.size_bytes = record.size_bytes;
                    }
                }
            }
            Step::Scan => per_image(&mut summary, step, &targets, |image, platform, result| {
                let record = built.get(&(image.name.clone(), platform)).context("not built")?;
                let outcome = super::scan::scan_image_with(ctx, image, record, &database)?;
                result.vulnerabilities =
                    outcome.counts.iter().map(|(severity, count)| (severity.to_string(), *count)).collect();
                result.gate = Some(outcome.passed);
                let source = super::scan::ImageSource {
                    path: Some(&record.layout.dir),
                    reference: &record.reference,
                    expect: super::scan::expectations(image),
                };
                result.sbom = Some(super::sbom::sbom_of(ctx, &record.name(), &source)?);
                if !outcome.passed {
                    bail!("scan gate: {}", outcome.message);
                }
                Ok(())
            }),
            Step::Healthcheck => per_image(&mut summary, step, &targets, |image, platform, result| {
                if platform != Platform::Amd64 {
                    return Ok(());
                }
                let record = built.get(&(image.name.clone(), platform)).context("not built")?;
                result.healthy_seconds = Some(super::healthcheck::check(ctx, image, record)?.as_secs_f64());
                Ok(())
            }),
            Step::IntegrationTests => {
                // A failure here is in the summary; the job goes on to print it.
                let _ = whole(&mut summary, step, || {
                    let sh = &ctx.sh;
                    // The tests mostly wait on containers: more of them at once than there are cores.
                    cmd!(sh, "cargo test --quiet --locked -p xtask --test images -- --test-threads 4")
                        .run()
                        .context("image integration tests failed")
                });
            }
        }
    }
    Ok(summary)
}

/// Runs a step of the whole job, printing its name and duration. Its error ends the job (nothing after it could
/// run).
fn whole(summary: &mut Summary, step: Step, body: impl FnOnce() -> Result<()>) -> Result<()> {
    let name = step.name();
    eprintln!("==> {name}");
    let started = Instant::now();
    let outcome = body();
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("==> {name}: {} in {seconds:.1}s", if outcome.is_ok() { "done" } else { "FAILED" });
    summary.steps.push(StepResult { name: name.to_owned(), seconds, passed: outcome.is_ok() });
    summary.passed &= outcome.is_ok();
    outcome.with_context(|| format!("ci step `{name}`"))
}

/// A step that runs for each image and platform still without a failure; a failure is recorded on that row only.
fn per_image(
    summary: &mut Summary,
    step: Step,
    targets: &[(&Image, Platform)],
    mut body: impl FnMut(&Image, Platform, &mut ImageResult) -> Result<()>,
) {
    let name = step.name();
    eprintln!("==> {name}");
    let started = Instant::now();
    let mut all_passed = true;
    for ((image, platform), result) in targets.iter().zip(summary.images.iter_mut()) {
        if result.failure.is_some() {
            continue;
        }
        if let Err(error) = body(image, *platform, result) {
            eprintln!("xtask: image {} for {platform}: {name} failed: {error:#}", image.name);
            result.failure = Some(format!("{name}: {error:#}"));
            all_passed = false;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("==> {name}: {} in {seconds:.1}s", if all_passed { "done" } else { "FAILED" });
    summary.steps.push(StepResult { name: name.to_owned(), seconds, passed: all_passed });
    summary.passed &= all_passed;
}

/// `cargo xtask ci`: runs the job, prints the summary (and writes it where asked), fails after it.
pub fn main(ctx: &Context, args: &CiArgs) -> Result<()> {
    let started = Instant::now();
    let summary = run(ctx, args).inspect_err(|error| annotate_error(&format!("{error:#}")))?;
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
                annotate_error(&format!("{} ({}): {failure}", result.image, result.platform));
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
    let mut table = Table::new();
    table.load_preset(presets::ASCII_MARKDOWN).set_header([
        "image",
        "platform",
        "tag",
        "image id",
        "size",
        "vulnerabilities (C/H/M/L/U)",
        "gate",
        "healthy after",
        "result",
    ]);
    for result in &summary.images {
        let count = |severity: &str| result.vulnerabilities.get(severity).copied().unwrap_or(0);
        let vulnerabilities = match result.gate {
            Some(_) => {
                format!(
                    "{}/{}/{}/{}/{}",
                    count("CRITICAL"),
                    count("HIGH"),
                    count("MEDIUM"),
                    count("LOW"),
                    count("UNKNOWN")
                )
            }
            None => "-".to_owned(),
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
        table.add_row([&result.image, &result.platform, tag, &id, &size, &vulnerabilities, gate, &healthy, &outcome]);
    }
    let steps: Vec<String> = summary
        .steps
        .iter()
        .map(|step| format!("{} {:.1}s{}", step.name, step.seconds, if step.passed { "" } else { " (FAILED)" }))
        .collect();
    format!("{table}\n\nsteps: {}", steps.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_is_planned_in_order_and_skip_tests_leaves_only_the_tests_out() {
        let full = plan(&CiArgs::default());
        assert_eq!(full.first(), Some(&Step::Engine));
        assert_eq!(full.last(), Some(&Step::IntegrationTests));
        let without = plan(&CiArgs { skip_tests: true, ..CiArgs::default() });
        assert_eq!(without, full[..full.len() - 1]);
        let build = full.iter().position(|step| *step == Step::Build).unwrap();
        assert!(full[build + 1..].starts_with(&[Step::Scan, Step::Healthcheck]));
    }

    #[test]
    fn the_summary_table_is_markdown_with_a_row_per_image() {
        let summary = Summary {
            revision: "abc".into(),
            passed: false,
            steps: vec![StepResult { name: "build".into(), seconds: 1.0, passed: true }],
            images: vec![ImageResult {
                image: "app".into(),
                platform: "linux/arm64".into(),
                reference: "r/app:abc-arm64".into(),
                id: format!("sha256:{}", "f".repeat(64)),
                size_bytes: 43_500_000,
                gate: Some(true),
                failure: Some("healthcheck: timed out\nmore".into()),
                ..Default::default()
            }],
        };
        let text = table(&summary);
        assert!(text.lines().next().unwrap().starts_with("| image"), "{text}");
        assert!(
            text.contains("| app ")
                && text.contains("| linux/arm64 ")
                && text.contains("43.5 MB")
                && text.contains("FAILED (healthcheck: timed out)")
        );
        assert!(text.ends_with("steps: build 1.0s"), "{text}");
    }
}
