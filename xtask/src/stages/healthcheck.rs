//! `cargo xtask healthcheck`: start each built image with what it needs and wait until it is healthy.

use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::built::Built;
use crate::context::Context;
use crate::images::Image;
use crate::stack::{self, Options};

#[derive(clap::Args)]
pub struct HealthcheckArgs {
    /// Images to check (default: every deliverable).
    pub images: Vec<String>,
}

pub fn run(ctx: &Context, args: &HealthcheckArgs) -> Result<()> {
    ctx.engine()?;
    stack::sweep(ctx)?;
    for image in ctx.select(&args.images)? {
        let built = Built::current(ctx, &image.name)?;
        let elapsed = check(ctx, image, &built)?;
        println!("{}: healthy after {:.2}s", built.reference, elapsed.as_secs_f64());
    }
    Ok(())
}

/// Starts the image hardened (read-only root, no capabilities) with its companions, polls its health
/// endpoint, and removes everything again, also when it fails.
pub fn check(ctx: &Context, image: &Image, built: &Built) -> Result<Duration> {
    let health = image.health()?;
    let running = stack::start(ctx, image, &built.reference, &Options::default())
        .with_context(|| format!("image {}: healthcheck", image.name))?;
    running.wait_healthy(health).with_context(|| format!("image {}: healthcheck", image.name))
}
