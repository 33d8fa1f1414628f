//! What a build produced for each platform of an image, kept in `out/build/<image>/<arch>.json` for the later stages
//! and the summary.

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::docker;
use crate::platform::Platform;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Built {
    pub image: String,
    pub platform: Platform,
    /// The engine's tag of this platform's image: `<repository>/<image>:<revision>`, `-arm64` appended for arm64.
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
    /// Records the build of `image` for `platform` (tagged `reference`).
    pub fn record(ctx: &Context, image: &str, platform: Platform, build_seconds: f64, layout: Layout) -> Result<Built> {
        let reference = ctx.platform_reference(image, platform)?;
        let (id, size_bytes) = docker::image_id_and_size(&ctx.sh, &reference)?;
        let record = Built { image: image.to_owned(), platform, reference, id, size_bytes, build_seconds, layout };
        let path = ctx.out.build_record(image, platform);
        crate::files::write(&path, serde_json::to_string_pretty(&record)?)?;
        Ok(record)
    }

    /// The amd64 build of this image at the current revision, the one the tests run: see [`Built::current_on`].
    pub fn current(ctx: &Context, image: &str) -> Result<Built> {
        Built::current_on(ctx, image, Platform::Amd64)
    }

    /// The build of this image for `platform` at the current revision: the engine's image and its layout, or an
    /// error telling to build it first.
    pub fn current_on(ctx: &Context, image: &str, platform: Platform) -> Result<Built> {
        let reference = ctx.platform_reference(image, platform)?;
        let build_first = || {
            format!(
                "image {reference} ({platform}) is not built: run `cargo xtask build --platform {platform} {image}` \
                 first"
            )
        };
        if !docker::has_image(&ctx.sh, &reference) {
            bail!("{}", build_first());
        }
        let (id, size_bytes) = docker::image_id_and_size(&ctx.sh, &reference)?;
        let recorded: Built = std::fs::read_to_string(ctx.out.build_record(image, platform))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .filter(|record: &Built| record.id == id && record.reference == reference && record.layout.dir.is_dir())
            .with_context(build_first)?;
        Ok(Built { size_bytes, ..recorded })
    }

    /// Every platform of this image built at the current revision, amd64 first; an error when there is none.
    pub fn all_current(ctx: &Context, image: &str) -> Result<Vec<Built>> {
        let built: Vec<Built> =
            Platform::ALL.into_iter().filter_map(|platform| Built::current_on(ctx, image, platform).ok()).collect();
        if built.is_empty() {
            return Built::current(ctx, image).map(|built| vec![built]);
        }
        Ok(built)
    }

    /// The builds of these platforms at the current revision, each required.
    pub fn current_for(ctx: &Context, image: &str, platforms: &[Platform]) -> Result<Vec<Built>> {
        platforms.iter().map(|platform| Built::current_on(ctx, image, *platform)).collect()
    }

    /// `<image>/<arch>`: how reports and summaries name this platform's image.
    pub fn name(&self) -> String {
        format!("{}/{}", self.image, self.platform.arch())
    }
}
