//! Wall time of the main job: cold (no build cache), warm (nothing changed), incremental (one app file changed),
//! with the time of each step. The job runs as a user runs it, `cargo xtask ...` in a process of its own, so that it
//! reads the checkout (and its revision) afresh each time.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result};
use xshell::cmd;

use super::report::{markdown_table, Figure, Goal, Row, Section, Target, Unit};
use super::Bench;
use crate::context::Context;
use crate::platform::Platform;

pub const TITLE: &str = "Pipeline";

/// Appended to the changed file and removed again: a Jinja comment renders to nothing.
const HARMLESS_CHANGE: &str = "{# cargo xtask bench: incremental build #}\n";

#[derive(Clone, Copy, PartialEq)]
enum Job {
    /// `cargo xtask ci --skip-tests`.
    Ci,
    /// `cargo xtask build` + `healthcheck`, when ci cannot run here (its supply-chain tools missing).
    BuildAndHealthcheck,
}

impl Job {
    fn name(self) -> &'static str {
        match self {
            Job::Ci => "`cargo xtask ci --skip-tests`",
            Job::BuildAndHealthcheck => "`cargo xtask build` + `cargo xtask healthcheck`",
        }
    }
}

struct Timing {
    label: String,
    seconds: f64,
    steps: Vec<(String, f64)>,
}

struct Runner<'a> {
    ctx: &'a Context,
    job: Job,
    notes: Vec<String>,
    timings: Vec<Timing>,
}

/// The part of `cargo xtask ci --json` the timings read.
#[derive(serde::Deserialize)]
struct CiSummary {
    passed: bool,
    steps: Vec<CiStep>,
}

#[derive(serde::Deserialize)]
struct CiStep {
    name: String,
    seconds: f64,
    passed: bool,
}

impl Runner<'_> {
    /// Times one run of the job; when ci cannot run at all, falls back to build + healthcheck for
    /// this run and every later one, and says so.
    fn time(&mut self, label: &str) -> Result<f64> {
        eprintln!("bench: pipeline, {label}: {}", self.job.name());
        let timing = match self.run_job(label) {
            Err(error) if self.job == Job::Ci => {
                self.notes.push(format!(
                    "`cargo xtask ci` could not run here ({error:#}); measured {} instead.",
                    Job::BuildAndHealthcheck.name()
                ));
                self.job = Job::BuildAndHealthcheck;
                self.run_job(label)?
            }
            other => other?,
        };
        eprintln!("bench: pipeline, {label}: {:.1}s", timing.seconds);
        let seconds = timing.seconds;
        self.timings.push(timing);
        Ok(seconds)
    }

    fn run_job(&mut self, label: &str) -> Result<Timing> {
        let sh = &self.ctx.sh;
        let started = Instant::now();
        let steps = match self.job {
            Job::Ci => {
                let json = self.ctx.out.bench_dir().join("ci-summary.json");
                let _ = std::fs::remove_file(&json);
                let ran = cmd!(sh, "cargo xtask ci --skip-tests --json {json}").run();
                // The job writes its summary also when an image fails; without one it could not run at all.
                let summary: CiSummary = std::fs::read_to_string(&json)
                    .ok()
                    .and_then(|text| serde_json::from_str(&text).ok())
                    .with_context(|| {
                        format!("the job wrote no summary ({})", ran.err().map(|e| e.to_string()).unwrap_or_default())
                    })?;
                if !summary.passed {
                    let failed: Vec<&str> =
                        summary.steps.iter().filter(|step| !step.passed).map(|step| step.name.as_str()).collect();
                    self.notes
                        .push(format!("{label}: the job ran to its end but did not pass ({}).", failed.join("; ")));
                }
                summary.steps.into_iter().map(|step| (step.name, step.seconds)).collect()
            }
            Job::BuildAndHealthcheck => {
                let build_started = Instant::now();
                cmd!(sh, "cargo xtask build").run()?;
                let build_seconds = build_started.elapsed().as_secs_f64();
                let check_started = Instant::now();
                cmd!(sh, "cargo xtask healthcheck").run()?;
                vec![
                    ("build".to_owned(), build_seconds),
                    ("healthcheck".to_owned(), check_started.elapsed().as_secs_f64()),
                ]
            }
        };
        Ok(Timing { label: label.to_owned(), seconds: started.elapsed().as_secs_f64(), steps })
    }
}

/// Puts a file back byte for byte when dropped, also when a run in between fails.
struct Restore {
    path: PathBuf,
    original: Vec<u8>,
}

impl Restore {
    fn append(path: PathBuf, addition: &str) -> Result<Self> {
        let original = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut changed = original.clone();
        changed.extend_from_slice(addition.as_bytes());
        std::fs::write(&path, changed).with_context(|| format!("changing {}", path.display()))?;
        Ok(Restore { path, original })
    }

    fn restore(&self) -> Result<()> {
        std::fs::write(&self.path, &self.original).with_context(|| format!("restoring {}", self.path.display()))
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        if let Err(error) = self.restore() {
            eprintln!("bench: {error:#}: restore it with `git checkout -- {}`", self.path.display());
        }
    }
}

pub fn measure(bench: &Bench) -> Result<Section> {
    let (ctx, plan) = (bench.ctx, &bench.plan);
    let changed_file = ctx
        .select(&[])?
        .into_iter()
        .find_map(|image| image.settings.bench.incremental_change.clone())
        .context("no image names an `incremental_change` in the [bench] table of its image.toml")?;
    let mut runner = Runner { ctx, job: Job::Ci, notes: Vec::new(), timings: Vec::new() };
    let cold = if plan.quick {
        None
    } else {
        eprintln!("bench: emptying the build cache (docker builder prune -af) for the cold run");
        let sh = &ctx.sh;
        xshell::cmd!(sh, "docker builder prune -af")
            .quiet()
            .ignore_stdout()
            .run()
            .context("docker builder prune -af")?;
        Some(runner.time("cold")?)
    };
    let warm = runner.time("warm")?;
    let change = Restore::append(ctx.root.join(&changed_file), HARMLESS_CHANGE)?;
    let changed = runner.time("incremental (change)")?;
    change.restore()?;
    // Undoing the change is a one-file change too, and leaves the images matching the checkout again.
    let restored = runner.time("incremental (undo)")?;
    drop(change);

    let mut section = Section::new(
        TITLE,
        &format!("{}, run as a command", runner.job.name()),
        "none (absolute wall times)",
        &format!(
            "Cold: after `docker builder prune -af` (the Debian base image stays: it is an image, not cache){}. \
             Warm: again with nothing changed. Incremental: after appending a Jinja comment to `{changed_file}`, \
             and again after removing it (two samples).",
            if plan.quick { "; not run with --quick" } else { "" }
        ),
    );
    section.rows.push(Row::new("cold (no build cache)", Unit::Seconds, cold.map(Figure::single), None));
    section.rows.push(
        Row::new("warm (nothing changed)", Unit::Seconds, Some(Figure::single(warm)), None)
            .with_target(Target::new("≤ 60 s", &[Goal::AtMost(60.0)])),
    );
    section.rows.push(
        Row::new("incremental (one app file changed)", Unit::Seconds, Figure::of(&[changed, restored]), None)
            .with_target(Target::new("≤ 90 s", &[Goal::AtMost(90.0)])),
    );
    section.notes = runner.notes;
    // What reproducibility costs: the last run (the undo) changed an app file, so each image's layout was written
    // again after its engine build; both times are in the build records.
    for image in ctx.select(&[])? {
        let record: crate::built::Built =
            serde_json::from_str(&std::fs::read_to_string(ctx.out.build_record(&image.name, Platform::Amd64))?)?;
        section.rows.push(Row::new(
            format!("{}: engine build, then writing the reproducible layout (last run)", image.name),
            Unit::Seconds,
            Some(Figure::single(record.layout.assemble_seconds)),
            Some(Figure::single(record.build_seconds)),
        ));
    }
    section.notes.push(
        "The last rows compare the time to write each image again reproducibly (normalized layers, fixed gzip, \
         canonical configuration, `docker load`) with the engine's own build of it in the same run: what the \
         reproducibility costs in build time."
            .to_owned(),
    );
    section.extra = steps_table(&runner.timings);
    Ok(section)
}

/// Seconds of each step (rows) in each run (columns).
fn steps_table(timings: &[Timing]) -> String {
    let mut steps: Vec<&str> = Vec::new();
    for timing in timings {
        for (step, _) in &timing.steps {
            if !steps.contains(&step.as_str()) {
                steps.push(step);
            }
        }
    }
    let mut header = vec!["step"];
    header.extend(timings.iter().map(|timing| timing.label.as_str()));
    let mut rows: Vec<Vec<String>> = steps
        .iter()
        .map(|step| {
            let cells = timings.iter().map(|timing| match timing.steps.iter().find(|(name, _)| name == step) {
                Some((_, seconds)) => format!("{seconds:.1} s"),
                None => "-".to_owned(),
            });
            std::iter::once(step.to_string()).chain(cells).collect()
        })
        .collect();
    rows.push(
        std::iter::once("**total**".to_owned())
            .chain(timings.iter().map(|timing| format!("**{:.1} s**", timing.seconds)))
            .collect(),
    );
    format!("Time of each step:\n\n{}", markdown_table(&header, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_table_lines_up_runs_and_steps() {
        let timings = vec![
            Timing { label: "cold".into(), seconds: 100.0, steps: vec![("build".into(), 90.0), ("scan".into(), 9.5)] },
            Timing { label: "warm".into(), seconds: 20.0, steps: vec![("build".into(), 12.0)] },
        ];
        let table = steps_table(&timings);
        use super::super::report::has_row;
        assert!(has_row(&table, &["step", "cold", "warm"]), "{table}");
        assert!(has_row(&table, &["build", "90.0 s", "12.0 s"]), "{table}");
        assert!(has_row(&table, &["scan", "9.5 s", "-"]), "{table}");
        assert!(has_row(&table, &["**total**", "**100.0 s**", "**20.0 s**"]), "{table}");
    }

    #[test]
    fn a_changed_file_is_restored_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("base.html");
        let original = b"<html>\n{% block body %}{% endblock %}\n</html>"; // no final newline, on purpose
        std::fs::write(&path, original).unwrap();
        {
            let change = Restore::append(path.clone(), HARMLESS_CHANGE).unwrap();
            assert!(std::fs::read_to_string(&path).unwrap().ends_with(HARMLESS_CHANGE));
            change.restore().unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), original);
            Restore::append(path.clone(), HARMLESS_CHANGE).unwrap();
        }
        assert_eq!(std::fs::read(&path).unwrap(), original, "dropping the guard restores too");
    }
}
