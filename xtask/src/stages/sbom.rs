//! `cargo xtask sbom [IMAGE...]`: a CycloneDX JSON SBOM per image and platform built at this revision, written by
//! syft next to the scan report (`out/scan/<image>/<arch>/sbom.cdx.json`). It lists the Debian packages (distroless `status.d` entries) and the Python
//! packages (`*.dist-info`) of the image.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use xshell::cmd;

use crate::context::Context;
use crate::pinned_tools::{self, Tool};
use crate::stages::scan::ImageSource;

#[derive(clap::Args)]
pub struct SbomArgs {
    /// Images to describe (default: every image with `release = true`), every platform `cargo xtask build` built.
    images: Vec<String>,
}

pub fn run(ctx: &Context, args: &SbomArgs) -> Result<()> {
    for image in ctx.select(&args.images)? {
        for built in crate::built::Built::all_current(ctx, &image.name)? {
            let source =
                ImageSource { path: Some(&built.layout.dir), reference: &built.reference, expect: Default::default() };
            let path = sbom_of(ctx, &built.name(), &source)?;
            println!("{}", path.display());
        }
    }
    Ok(())
}

/// Writes the SBOM of an image to `out/scan/<name>/` and returns its path.
pub fn sbom_of(ctx: &Context, name: &str, image: &ImageSource) -> Result<PathBuf> {
    let describe = || format!("SBOM of {name} ({})", image.reference);
    let syft = pinned_tools::ensure(ctx, Tool::Syft).with_context(describe)?;
    let output = ctx.out.sbom(name);
    std::fs::create_dir_all(ctx.out.scan_dir(name))?;
    let _ = std::fs::remove_file(&output);
    let source = match image.path {
        Some(path) if path.is_dir() => format!("oci-dir:{}", path.display()),
        Some(path) => format!("docker-archive:{}", path.display()),
        None => format!("registry:{}", image.reference),
    };
    let format = format!("cyclonedx-json={}", output.display());
    let sh = &ctx.sh;
    cmd!(sh, "{syft} scan --quiet {source} --output {format}")
        .env("SYFT_CHECK_FOR_APP_UPDATE", "false")
        .run()
        .context("syft could not catalog the image")
        .with_context(describe)?;
    let components = count_components(&output).with_context(describe)?;
    eprintln!("xtask: SBOM of {name}: {components} components in {}", output.display());
    Ok(output)
}

/// Checks that syft wrote a CycloneDX document and counts its components.
fn count_components(path: &Path) -> Result<usize> {
    let text = std::fs::read_to_string(path).with_context(|| format!("syft did not write {}", path.display()))?;
    let document: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    if document["bomFormat"] != "CycloneDX" {
        bail!("{} is not a CycloneDX document (bomFormat is {})", path.display(), document["bomFormat"]);
    }
    Ok(document["components"].as_array().map_or(0, Vec::len))
}
