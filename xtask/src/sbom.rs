//! `cargo xtask sbom [IMAGE...]`: a CycloneDX JSON SBOM per image, written by syft next to the scan report
//! (`out/scan/<image>/sbom.cdx.json`). It lists the Debian packages (distroless `status.d` entries) and the Python
//! packages (`*.dist-info`) of the image.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use xshell::cmd;

use crate::context::Context;
use crate::images::Image;
use crate::scan::ExportedImage;
use crate::tools::{self, Tool};

pub const SBOM_FILE: &str = "sbom.cdx.json";

#[derive(clap::Args)]
pub struct SbomArgs {
    /// Images to describe (default: every image with `release = true`), as built by `cargo xtask build`.
    images: Vec<String>,
}

pub fn run(ctx: &Context, args: &SbomArgs) -> Result<()> {
    let revision = crate::images::revision_tag(ctx)?;
    for image in crate::images::select(ctx, &args.images)? {
        let reference = crate::images::reference(&image.name, &revision);
        let path = sbom(ctx, &image, &reference)?;
        println!("{}", path.display());
    }
    Ok(())
}

/// Writes the SBOM of a built image and returns its path.
pub fn sbom(ctx: &Context, image: &Image, reference: &str) -> Result<PathBuf> {
    sbom_of(ctx, &image.name, reference).with_context(|| format!("SBOM of {} ({reference})", image.name))
}

pub(crate) fn sbom_of(ctx: &Context, name: &str, reference: &str) -> Result<PathBuf> {
    let syft = tools::ensure(ctx, Tool::Syft)?;
    let dir = ctx.root.join("out").join("scan").join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let output = dir.join(SBOM_FILE);
    let _ = std::fs::remove_file(&output);
    let image = ExportedImage::save(ctx, reference, &dir)?;
    let source = image.source("docker-archive");
    let mut format = std::ffi::OsString::from("cyclonedx-json=");
    format.push(&output);
    let sh = &ctx.sh;
    cmd!(sh, "{syft} scan --quiet {source} --output {format}")
        .env("SYFT_CHECK_FOR_APP_UPDATE", "false")
        .run()
        .context("syft could not catalog the image")?;
    let components = count_components(&output)?;
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
