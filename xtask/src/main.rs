//! The project's pipeline, as `cargo xtask <command>`: this file only maps the command line onto the stages
//! (`stages/`), which are declared in `lib.rs` so that the integration tests under `tests/` use the same code.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use xtask::context::Context;
use xtask::stages::*;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, scan, test, sign and release the distroless Python images")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the launcher as a static musl binary with its dependency list embedded, and print its path.
    Launcher,
    /// Build the Debian 13 base image from the Debian archive (for engines that cannot pull it).
    Bootstrap(bootstrap::BootstrapArgs),
    /// Resolve each image's Debian packages to the newest in trixie and its updates, and write its packages.lock.
    Lock(lock::LockArgs),
    /// Build the launcher, then each image, tagged <repository>/<name>:<git sha>.
    Build(build::BuildArgs),
    /// Start each built image with what it needs and wait until its health endpoint answers.
    Healthcheck(healthcheck::HealthcheckArgs),
    /// The main job: tools, build, scan gate and SBOM, healthcheck, image integration tests, summary.
    Ci(ci::CiArgs),
    /// Run every test suite of the project.
    Test(test::TestArgs),
    /// Install the pinned supply-chain tools (tools/pins.toml) into .tools/bin.
    Tools(tools::ToolsArgs),
    /// Scan built images with Trivy and gate them with scan-policy.toml.
    Scan(scan::ScanArgs),
    /// Publish the offline Trivy database (built from advisories/) to a registry, for --db-repository.
    MirrorDb(mirror_db::MirrorDbArgs),
    /// Write a CycloneDX SBOM of each built image with syft.
    Sbom(sbom::SbomArgs),
    /// Push the images by digest to a registry, sign them, attach their SBOMs, and verify all of it (runs ci first).
    Release(release::ReleaseArgs),
    /// Build the images again in a fresh clone (other time zone, umask, file times, no build cache) and compare the
    /// digests; or compare released images with this commit's build (--release).
    Reproduce(reproduce::ReproduceArgs),
    /// Scan the released images' digests again with today's database and the project's policy (nightly on GitHub).
    Rescan(rescan::RescanArgs),
    /// Verify an image's signature (and SBOM attestation) before deploying it; prints the digest it verified.
    Verify(verify::VerifyArgs),
    /// Verify an image as `verify` does, then run exactly that digest hardened with its companions (--stop NAME ends it).
    Deploy(Box<deploy::DeployArgs>),
    /// Run the locally built images (building them first if needed) with their companions until Ctrl-C.
    Up(up::UpArgs),
    /// Measure the images against common baselines, side by side; writes docs/benchmarks.md.
    Bench(bench::BenchArgs),
}

/// Errors are for people: the message and its causes, one per line, without a Rust backtrace.
fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {}", cause.to_string().replace('\n', "\n    "));
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let ctx = Context::discover()?;
    match cli.command {
        Command::Launcher => xtask::static_launcher::build(&ctx, xtask::platform::Platform::Amd64)
            .map(|path| println!("{}", path.display())),
        Command::Bootstrap(args) => bootstrap::run(&ctx, &args),
        Command::Lock(args) => lock::run(&ctx, &args),
        Command::Build(args) => build::run(&ctx, &args),
        Command::Healthcheck(args) => healthcheck::run(&ctx, &args),
        Command::Ci(args) => ci::main(&ctx, &args),
        Command::Test(args) => test::run(&ctx, &args),
        Command::Tools(args) => tools::run(&ctx, &args),
        Command::Scan(args) => scan::run(&ctx, &args),
        Command::MirrorDb(args) => mirror_db::run(&ctx, &args),
        Command::Sbom(args) => sbom::run(&ctx, &args),
        Command::Release(args) => release::run(&ctx, &args),
        Command::Reproduce(args) => reproduce::run(&ctx, &args),
        Command::Rescan(args) => rescan::run(&ctx, &args),
        Command::Verify(args) => verify::run(&ctx, &args),
        Command::Deploy(args) => deploy::run(&ctx, &args),
        Command::Up(args) => up::run(&ctx, &args),
        Command::Bench(args) => bench::run(&ctx, &args),
    }
}
