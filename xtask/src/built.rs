//! What a build produced, kept in `out/build/<image>.json` for the later stages and the summary.

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::docker;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Built {
    pub image: String,
    pub reference: String,
    /// The image ID the engine gives it: the digest of its configuration (Engine 20.10), or of its manifest.
    pub id: String,
    pub size_bytes: u64,
    pub build_seconds: f64,
    pub layout: Layout,
}

/// The image as a reproducible OCI image layout: what scanners read and `release` pushes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Layout {
    pub dir: PathBuf,
    /// The manifest digest: the digest a registry will give it, known before any push.
    pub digest: String,
    pub config_digest: String,
    /// What writing it reproducibly (normalized layers, fixed compression, loading) took.
    pub assemble_seconds: f64,
}

impl Built {
    /// Records the build of `image` (tagged `reference`).
    pub fn record(ctx: &Context, image: &str, reference: &str, build_seconds: f64, layout: Layout) -> Result<Built> {
        let (id, size_bytes) = docker::image_id_and_size(&ctx.sh, reference)?;
        let record =
            Built { image: image.to_owned(), reference: reference.to_owned(), id, size_bytes, build_seconds, layout };
        let path = ctx.out.build_record(image);
        std::fs::create_dir_all(path.parent().context("record path has no parent")?)?;
        std::fs::write(&path, serde_json::to_string_pretty(&record)?)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(record)
    }

    /// The build of this image at the current revision: the engine's image and its layout, or an error telling to
    /// build it first.
    pub fn current(ctx: &Context, image: &str) -> Result<Built> {
        let reference = ctx.reference(image)?;
        let build_first = || format!("image {reference} is not built: run `cargo xtask build {image}` first");
        if !docker::has_image(&ctx.sh, &reference) {
            bail!("{}", build_first());
        }
        let (id, size_bytes) = docker::image_id_and_size(&ctx.sh, &reference)?;
        let recorded: Built = std::fs::read_to_string(ctx.out.build_record(image))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .filter(|record: &Built| record.id == id && record.reference == reference && record.layout.dir.is_dir())
            .with_context(build_first)?;
        Ok(Built { size_bytes, ..recorded })
    }
}
