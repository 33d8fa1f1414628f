//! arm64 beside amd64: each image's size on both platforms, and what building both costs against amd64 alone.

use std::time::Instant;

use anyhow::{Context as _, Result};
use xshell::cmd;

use super::report::{Figure, Row, Section, Unit};
use super::Bench;
use crate::built::Built;
use crate::platform::Platform;

pub const TITLE: &str = "Platforms: arm64 beside amd64";

pub fn measure(bench: &Bench) -> Result<Section> {
    let ctx = bench.ctx;
    let mut section = Section::new(
        TITLE,
        "linux/arm64 (build time: linux/amd64 and linux/arm64 together)",
        "linux/amd64 (build time: linux/amd64 alone)",
        "Sizes: uncompressed as the engine reports them (`docker image inspect .Size`), compressed as a registry \
         stores them (the layers of the OCI layout). Build time: the wall time of `cargo xtask build` of every \
         deliverable without the build cache (XTASK_NO_CACHE=1; the Debian packages and wheels come from the package \
         cache), both platforms against amd64 alone. Every build step runs on amd64: the arm64 root filesystem is \
         unpacked, compiled to bytecode and checked by amd64 tools, nothing runs emulated.",
    );
    let images = ctx.select(&[])?;
    super::super::build::build_all(ctx, &images, &Platform::ALL).context("building both platforms")?;
    for image in &images {
        let [amd64, arm64] = Platform::ALL.map(|platform| Built::current_on(ctx, &image.name, platform));
        let (amd64, arm64) = (amd64?, arm64?);
        section.rows.push(Row::new(
            format!("{} uncompressed", image.name),
            Unit::Bytes,
            Some(Figure::single(arm64.size_bytes as f64)),
            Some(Figure::single(amd64.size_bytes as f64)),
        ));
        section.rows.push(Row::new(
            format!("{} compressed (layers as pushed)", image.name),
            Unit::Bytes,
            Some(Figure::single(compressed_bytes(&arm64)? as f64)),
            Some(Figure::single(compressed_bytes(&amd64)? as f64)),
        ));
    }
    if bench.plan.quick {
        section.notes.push(
            "--quick: the build times are left out (two builds without the build cache take minutes).".to_owned(),
        );
        return Ok(section);
    }
    let names: Vec<&str> = images.iter().map(|image| image.name.as_str()).collect();
    let sh = &ctx.sh;
    let build_time = |platforms: &str| -> Result<f64> {
        let started = Instant::now();
        let names = &names;
        cmd!(sh, "cargo xtask build --platform {platforms} {names...}")
            .env("XTASK_NO_CACHE", "1")
            .run()
            .with_context(|| format!("cargo xtask build --platform {platforms}"))?;
        Ok(started.elapsed().as_secs_f64())
    };
    // `cargo xtask` from here rebuilds the xtask once (the environment cargo hands a running binary differs from a
    // shell's): done before the clock starts, so that neither timing includes a compile.
    cmd!(sh, "cargo build --quiet --package xtask").run().context("building the xtask before the timings")?;
    let alone = build_time("linux/amd64")?;
    let both = build_time("linux/amd64,linux/arm64")?;
    section.rows.push(Row::new(
        "build of every deliverable, no build cache",
        Unit::Seconds,
        Some(Figure::single(both)),
        Some(Figure::single(alone)),
    ));
    Ok(section)
}

/// The bytes of an image's compressed layers: what a node pulls.
fn compressed_bytes(built: &Built) -> Result<u64> {
    let digest = crate::oci::layout_top_digest(&built.layout.dir)?;
    let path = built.layout.dir.join("blobs").join("sha256").join(digest.trim_start_matches("sha256:"));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path)?).with_context(|| format!("{} is not JSON", path.display()))?;
    Ok(manifest["layers"].as_array().into_iter().flatten().filter_map(|layer| layer["size"].as_u64()).sum())
}
