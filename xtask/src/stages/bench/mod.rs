//! `cargo xtask bench`: each image against what people build today, side by side on this machine.
//!
//! Benchmarks are not tests: nothing here asserts a time. Each comparison runs ours and the baseline
//! alternately for several rounds and reports medians, next to the targets the issues set; the page
//! is written to `docs/benchmarks.md` and printed. Every load goes to 127.0.0.1 only and is bounded in
//! requests and time.

mod containers;
mod init;
mod load;
mod pipeline;
mod platforms;
pub mod report;
mod sizes;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context as _, Result};

use xshell::cmd;

use crate::context::Context;
use crate::platform::Platform;
use report::Section;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// A short run for smoke checks: fewer rounds, shorter loads, no cold pipeline run; written to
    /// out/bench/benchmarks-quick.md unless --output says otherwise.
    #[arg(long)]
    pub quick: bool,
    /// Leave out the pipeline timings (cold, warm and incremental `cargo xtask ci`), which take minutes.
    #[arg(long)]
    pub skip_pipeline: bool,
    /// Run only these comparisons (repeatable).
    #[arg(long, value_enum)]
    pub only: Vec<Comparison>,
    /// Where to write the Markdown page (default: docs/benchmarks.md, or out/bench/benchmarks-quick.md with --quick).
    #[arg(long)]
    pub output: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Debug)]
pub enum Comparison {
    Size,
    Containers,
    Launcher,
    Load,
    Pipeline,
    Platforms,
}

/// How much of each comparison to run.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub quick: bool,
    /// Rounds of each A/B comparison (A and B alternate within a round).
    pub rounds: usize,
    /// Runs of a trivial child for the start-up overhead.
    pub startup_runs: usize,
    /// Duration of one load run, in seconds.
    pub load_seconds: u64,
    /// Most requests one load run may send.
    pub load_max_requests: u64,
}

impl Plan {
    pub fn new(quick: bool) -> Self {
        if quick {
            Plan { quick, rounds: 2, startup_runs: 40, load_seconds: 3, load_max_requests: 30_000 }
        } else {
            Plan { quick, rounds: 5, startup_runs: 300, load_seconds: 10, load_max_requests: 200_000 }
        }
    }
}

/// One comparison: measures and returns its section of the page.
type Measure = fn(&Bench) -> Result<Section>;

/// What every comparison works with.
pub struct Bench<'a> {
    pub ctx: &'a Context,
    pub plan: Plan,
    /// The references built at the start, by image name: a commit during the run changes the
    /// revision tag, and must not change what is measured.
    built: BTreeMap<String, String>,
}

impl Bench<'_> {
    fn ours(&self, image: &str) -> Result<&str> {
        self.built.get(image).map(String::as_str).with_context(|| format!("image {image} was not built by this run"))
    }

    /// A baseline image built from `bench/baselines/<folder>/Dockerfile`, tagged `bench-<folder>` with
    /// the tag of our images, with the same builder and CA-bundle handling as the images.
    fn build_baseline(&self, folder: &str, context_dir: &Path, build_args: &[(String, String)]) -> Result<String> {
        let ctx = self.ctx;
        let any = self.built.values().next().context("no image was built")?;
        let tag = any.rsplit_once(':').map(|(_, tag)| tag).context("reference without a tag")?;
        let reference = crate::images::reference(&format!("bench-{folder}"), tag);
        let dockerfile = ctx.root.join("bench").join("baselines").join(folder).join("Dockerfile");
        anyhow::ensure!(dockerfile.is_file(), "the baseline {} is missing", dockerfile.display());
        let builder = ctx.engine()?.builder()?;
        crate::docker::docker_build(
            ctx,
            builder,
            &crate::docker::DockerBuild {
                dockerfile: &dockerfile,
                context_dir,
                reference: &reference,
                build_args,
                platform: None,
                ca_bundle_secret: true,
                cache_scope: &format!("bench-{folder}"),
            },
        )
        .with_context(|| format!("building the baseline {folder}"))?;
        Ok(reference)
    }
}

pub fn run(ctx: &Context, args: &BenchArgs) -> Result<()> {
    let started = Instant::now();
    let plan = Plan::new(args.quick);
    let wanted = |comparison: Comparison| {
        (args.only.is_empty() || args.only.contains(&comparison))
            && !(comparison == Comparison::Pipeline && args.skip_pipeline)
    };
    let output = args.output.clone().unwrap_or_else(|| {
        if args.quick {
            ctx.out.bench_dir().join("benchmarks-quick.md")
        } else {
            ctx.root.join("docs").join("benchmarks.md")
        }
    });
    let machine = Machine::describe(ctx)?;
    crate::stack::sweep(ctx)?;

    // The comparisons run on the images of this checkout: build what changed (cached layers make this quick).
    let everything = ctx.with_companions(&[])?;
    let built = super::build::build_all(ctx, &everything, &[Platform::Amd64])
        .context("bench: building the images to compare")?;
    let bench = Bench { ctx, plan, built: built.into_iter().map(|record| (record.image, record.reference)).collect() };

    let comparisons: [(Comparison, &str, Measure); 6] = [
        (Comparison::Size, sizes::TITLE, sizes::measure),
        (Comparison::Containers, containers::TITLE, containers::measure),
        (Comparison::Launcher, init::TITLE, init::measure),
        (Comparison::Load, load::TITLE, load::measure),
        (Comparison::Pipeline, pipeline::TITLE, pipeline::measure),
        (Comparison::Platforms, platforms::TITLE, platforms::measure),
    ];
    let mut sections = Vec::new();
    for (comparison, title, measure) in comparisons {
        if !wanted(comparison) {
            continue;
        }
        eprintln!("==> bench: {title}");
        let section_started = Instant::now();
        let section = measure(&bench).unwrap_or_else(|error| {
            eprintln!("bench: {title}: not measured: {error:#}");
            Section::failed(title, format!("{error:#}"))
        });
        eprintln!("==> bench: {title} done in {:.0}s", section_started.elapsed().as_secs_f64());
        sections.push(section);
        // Written after each comparison, so an interrupted run keeps what it measured.
        crate::files::write(&output, page(&machine, &plan, &sections))?;
    }
    let page = page(&machine, &plan, &sections);
    println!("{page}");
    crate::files::write(&output, &page)?;
    eprintln!("bench: wrote {} in {:.0}s", output.display(), started.elapsed().as_secs_f64());
    let failed: Vec<&str> = sections.iter().filter(|s| s.failure.is_some()).map(|s| s.title.as_str()).collect();
    if !failed.is_empty() {
        bail!("bench: not measured: {} (reasons above and in {})", failed.join(", "), output.display());
    }
    Ok(())
}

/// Where the figures were measured: they mean little without it.
struct Machine {
    cores: usize,
    cpu: String,
    memory_bytes: u64,
    kernel: String,
    engine: String,
    revision: String,
    dirty: bool,
}

impl Machine {
    fn describe(ctx: &Context) -> Result<Self> {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Ok(Machine {
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            cpu: cpu_model(&cpuinfo).unwrap_or_else(|| "unknown CPU".to_owned()),
            memory_bytes: mem_total_bytes(&meminfo).unwrap_or(0),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
            engine: ctx.engine()?.version.clone(),
            revision: ctx.revision()?.commit.clone(),
            dirty: ctx.revision()?.dirty,
        })
    }
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
}

fn mem_total_bytes(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn page(machine: &Machine, plan: &Plan, sections: &[Section]) -> String {
    let mut out = String::from("# Benchmarks\n\n");
    out.push_str(
        "Written by `cargo xtask bench`; do not edit by hand. Each comparison ran in one run on one machine, \
         ours and the baseline alternating, and the figures are medians (n = samples per side). Benchmarks \
         assert nothing; the targets come from the issues and are reported met or not.\n\n",
    );
    out.push_str(&format!(
        "- Machine: {} cores ({}), {:.1} GiB memory, Linux {}\n- Docker engine: {}\n- Revision: {}{}\n- Mode: {} ({} rounds per A/B comparison, {} start-up runs, load runs of {} s capped at {} requests)\n\n",
        machine.cores,
        machine.cpu,
        machine.memory_bytes as f64 / (1024.0 * 1024.0 * 1024.0),
        machine.kernel,
        machine.engine,
        machine.revision,
        if machine.dirty { " with uncommitted changes" } else { "" },
        if plan.quick { "--quick" } else { "full" },
        plan.rounds,
        plan.startup_runs,
        plan.load_seconds,
        plan.load_max_requests,
    ));
    out.push_str("## Targets\n\n");
    out.push_str(&report::targets_table(sections));
    out.push('\n');
    for section in sections {
        out.push_str(&section.markdown());
    }
    out.push_str("Reproduce: `cargo xtask bench` (all of it, several minutes), `cargo xtask bench --quick` (smoke), `--skip-pipeline`, `--only <comparison>`.\n");
    out
}

/// The program's path; when it is missing, it is installed from the distribution's packages where this process
/// may (root with apt-get, as `.ci/run` installs the test tools), else an error says how to install it.
fn require_program(program: &str, debian_package: &str) -> Result<PathBuf> {
    if let Some(path) = crate::process::find_program(program) {
        return Ok(path);
    }
    let is_root = std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status.lines().any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(1) == Some("0"))
    });
    if is_root && crate::process::find_program("apt-get").is_some() {
        eprintln!("bench: installing {debian_package} with apt-get (it provides `{program}`)");
        let sh = xshell::Shell::new()?;
        let install = || {
            cmd!(sh, "apt-get install -y -qq --no-install-recommends {debian_package}")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .ignore_stdout()
                .run()
        };
        // A machine that never ran `apt-get update` has no package lists yet.
        let installed = install().or_else(|_| cmd!(sh, "apt-get update -qq").run().and_then(|()| install()));
        if let Err(error) = installed {
            eprintln!("bench: apt-get could not install {debian_package}: {error}");
        }
    }
    crate::process::find_program(program).ok_or_else(|| missing_program(program, debian_package))
}

fn missing_program(program: &str, debian_package: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "`{program}` is not installed: install it with `apt-get install {debian_package}` (Debian/Ubuntu) and run \
         the bench again"
    )
}

/// A file in the temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn with_contents(extension: &str, contents: &str) -> Result<Self> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let number = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("xtask-bench-{}-{number}.{extension}", std::process::id()));
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        Ok(TempFile(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_facts_are_read_from_proc() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n";
        assert_eq!(cpu_model(cpuinfo).as_deref(), Some("Intel(R) Xeon(R) CPU @ 2.20GHz"));
        assert_eq!(mem_total_bytes("MemTotal:       24684032 kB\nMemFree: 1 kB\n"), Some(24684032 * 1024));
        assert_eq!(mem_total_bytes("nothing"), None);
    }

    #[test]
    fn quick_plan_is_smaller_than_the_full_one() {
        let (quick, full) = (Plan::new(true), Plan::new(false));
        assert!(quick.rounds < full.rounds && quick.startup_runs < full.startup_runs);
        assert!(quick.load_seconds < full.load_seconds && quick.load_max_requests < full.load_max_requests);
    }

    #[test]
    fn a_missing_program_names_the_package_to_install() {
        let error = missing_program("surely-not-a-program-xyz", "xyz-tools").to_string();
        assert!(error.contains("apt-get install xyz-tools"), "{error}");
    }
}
