//! `cargo xtask up`: the locally built images running for clicking around, until Ctrl-C.
//!
//! Each image runs as `deploy` runs one (`running.rs`: hardened, its companions beside it on a private network, a
//! password generated for the run, published on 127.0.0.1), from the local build of the current revision, built
//! first when it is missing. SIGINT and SIGTERM stop and remove every container and network it started; a run
//! killed outright leaves them labelled with its process, and the next `up`, `healthcheck` or `ci` removes them.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use crate::built::Built;
use crate::context::Context;
use crate::images::Image;
use crate::running::{self, interruption, Group, Launch, Running};
use crate::stack;

#[derive(clap::Args, Debug, Default)]
pub struct UpArgs {
    /// Images to run (default: every deliverable); the companions they need run beside them.
    pub images: Vec<String>,
    /// Publish the images on 127.0.0.1 at this port and the following ones, in order (default: free ports).
    #[arg(long, value_name = "PORT")]
    pub first_port: Option<u16>,
}

/// How often the containers are checked while waiting for Ctrl-C.
const CHECK_EVERY: Duration = Duration::from_secs(2);

pub fn run(ctx: &Context, args: &UpArgs) -> Result<()> {
    // Caught before anything starts: an interruption while building or starting still removes what was started.
    interruption::catch()?;
    let label = format!("{}={}", stack::LABEL, stack::owner());
    let outcome = start_and_wait(ctx, args, &label);
    // A second Ctrl-C reaches the docker command removing them too: another pass removes what that one left.
    let (containers, networks) = running::remove(ctx, &label).or_else(|_| running::remove(ctx, &label))?;
    if !containers.is_empty() || !networks.is_empty() {
        eprintln!(
            "xtask: removed {} container(s) ({}) and {} network(s)",
            containers.len(),
            containers.join(", "),
            networks.len()
        );
    }
    match outcome {
        // The docker command running when Ctrl-C came got it too: its failure is the interruption asked for.
        Err(_) if interruption::caught().is_some() => Ok(()),
        outcome => outcome,
    }
}

fn start_and_wait(ctx: &Context, args: &UpArgs, label: &str) -> Result<()> {
    ctx.engine()?;
    stack::sweep(ctx)?;
    let images = ctx.select(&args.images)?;
    let names: Vec<String> = images.iter().map(|image| image.name.clone()).collect();
    ensure_built(ctx, &names)?;
    let suffix = stack::random_hex(2)?;
    let mut started: Vec<(&Image, Running)> = Vec::new();
    for (index, image) in images.iter().enumerate() {
        if interruption::caught().is_some() {
            return Ok(());
        }
        let host_port = match args.first_port {
            Some(first) => {
                Some(first.checked_add(index as u16).context("--first-port leaves no room for every image")?)
            }
            None => None,
        };
        let reference = ctx.reference(&image.name)?;
        let group = Group { label: label.to_owned(), name: format!("up-{}-{suffix}", image.name), restart: None };
        let running = running::start(ctx, &group, &Launch { image, reference: &reference, host_port })
            .with_context(|| format!("image {}: up", image.name))?;
        eprintln!("xtask: {reference} healthy after {:.2}s", running.healthy_after.as_secs_f64());
        started.push((image, running));
    }
    let width = started.iter().map(|(image, _)| image.name.len()).max().unwrap_or(0);
    for (image, running) in &started {
        let beside = &running.containers[..running.containers.len() - 1];
        let beside = if beside.is_empty() { String::new() } else { format!("  (with {})", beside.join(", ")) };
        println!("{:width$}  {}/{beside}", image.name, running.url);
    }
    println!("Ctrl-C stops and removes them (containers and networks).");

    let mut last_check = Instant::now();
    while interruption::caught().is_none() {
        if last_check.elapsed() >= CHECK_EVERY {
            for (image, running) in &started {
                running.check(ctx).with_context(|| format!("image {}: up", image.name))?;
            }
            last_check = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("xtask: {}: stopping", interruption::caught().unwrap_or("a signal"));
    Ok(())
}

/// Builds the named images and the companions they need where this revision's build is missing (`deploy` uses it for
/// the companions of a released image).
pub fn ensure_built(ctx: &Context, names: &[String]) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let missing: Vec<&Image> =
        ctx.with_companions(names)?.into_iter().filter(|image| Built::current(ctx, &image.name).is_err()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let listed: Vec<&str> = missing.iter().map(|image| image.name.as_str()).collect();
    eprintln!("xtask: {} not built at {}: building first", listed.join(", "), ctx.revision()?.tag);
    super::build::build_all(ctx, &missing, &[crate::platform::Platform::Amd64])
        .context("building the images to run")?;
    Ok(())
}
