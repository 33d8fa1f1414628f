//! What a build produced, kept in `out/build/<image>.json` for the later stages and the summary.

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::docker;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Built {
    pub image: String,
    pub reference: String,
    /// The image ID, i.e. the digest of its configuration (the registry digest exists only after a push).
    pub id: String,
    pub size_bytes: u64,
    pub build_seconds: f64,
}

impl Built {
    /// Records the build of `image` (tagged `reference`) that took `build_seconds`.
    pub fn record(ctx: &Context, image: &str, reference: &str, build_seconds: f64) -> Result<Built> {
        let (id, size_bytes) = docker::image_id_and_size(&ctx.sh, reference)?;
        let record = Built { image: image.to_owned(), reference: reference.to_owned(), id, size_bytes, build_seconds };
        let path = ctx.out.build_record(image);
        std::fs::create_dir_all(path.parent().context("record path has no parent")?)?;
        std::fs::write(&path, serde_json::to_string_pretty(&record)?)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(record)
    }

    /// The build of this image at the current revision, or an error telling to build it first.
    pub fn current(ctx: &Context, image: &str) -> Result<Built> {
        let reference = ctx.reference(image)?;
        if !docker::has_image(&ctx.sh, &reference) {
            bail!("image {reference} is not built: run `cargo xtask build {image}` first");
        }
        let (id, size_bytes) = docker::image_id_and_size(&ctx.sh, &reference)?;
        let recorded: Option<Built> = std::fs::read_to_string(ctx.out.build_record(image))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .filter(|record: &Built| record.id == id);
        let build_seconds = recorded.map_or(0.0, |record| record.build_seconds);
        Ok(Built { image: image.to_owned(), reference, id, size_bytes, build_seconds })
    }
}
