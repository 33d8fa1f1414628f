//! The engine's image of one platform written again as a reproducible OCI image layout, loaded into the engine; and
//! the image index of several platforms' layouts.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;

use anyhow::{bail, Context as _, Result};
use xshell::cmd;

use crate::built::Layout;
use crate::context::Context;
use crate::files::remove_dir_if_present;
use crate::oci::{self, Descriptor, LayoutWriter, Platform as OciPlatform};
use crate::platform::Platform;

/// Writes the engine's image `engine_image` again as a reproducible OCI image layout in `dir`, replacing a previous
/// one only once complete, and loads it into the engine as `reference`.
pub fn write_reproducible(
    ctx: &Context,
    dir: &Path,
    engine_image: &str,
    reference: &str,
    labels: &BTreeMap<String, String>,
) -> Result<Layout> {
    let sh = &ctx.sh;
    let mut save = std::process::Command::from(cmd!(sh, "docker save {engine_image}"));
    let mut child = save.stdout(Stdio::piped()).spawn().context("starting `docker save`")?;
    let saved = oci::read_docker_save(child.stdout.take().context("docker save has no output")?);
    if !child.wait()?.success() || saved.is_err() {
        return Err(saved.err().unwrap_or_else(|| anyhow::anyhow!("`docker save {engine_image}` failed")));
    }
    let saved = saved?;

    let revision = ctx.revision()?;
    let staging_dir = dir.with_extension("partial");
    remove_dir_if_present(&staging_dir)?;
    let writer = LayoutWriter::create(&staging_dir)?;
    let mut layers: Vec<Descriptor> = Vec::new();
    let mut diff_ids = Vec::new();
    for layer in &saved.layers {
        let normalized = oci::normalize_layer(layer, revision.commit_time)?;
        diff_ids.push(oci::sha256(&normalized));
        layers.push(writer.blob(oci::LAYER_TYPE, &oci::gzip(&normalized)?)?);
    }
    let config_bytes = oci::normalize_config(&saved.config, &diff_ids, &revision.created, labels)?;
    let config = writer.blob(oci::CONFIG_TYPE, &config_bytes)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": oci::MANIFEST_TYPE,
        "config": config,
        "layers": layers,
    });
    let manifest = writer.blob(oci::MANIFEST_TYPE, &oci::canonical_json(&manifest)?)?;
    let written = writer.finish(manifest.clone(), &revision.tag, &[(reference.to_owned(), config.clone(), layers)])?;
    replace_dir(&written, dir)?;
    load(ctx, dir, reference, &manifest.digest, &config.digest)?;
    Ok(Layout { dir: dir.to_owned(), digest: manifest.digest, config_digest: config.digest, assemble_seconds: 0.0 })
}

/// Loads the layout into the engine (`docker load` reads its `manifest.json`) and checks the engine holds exactly it:
/// Engine 20.10 names an image by its config digest, the containerd image store by its manifest digest.
pub fn load(ctx: &Context, layout: &Path, reference: &str, manifest: &str, config: &str) -> Result<()> {
    let mut archive = tar::Builder::new(Vec::new());
    archive.append_dir_all(".", layout).context("packing the layout for `docker load`")?;
    let archive = archive.into_inner()?;
    let sh = &ctx.sh;
    cmd!(sh, "docker load --quiet")
        .stdin(archive)
        .quiet()
        .ignore_stdout()
        .run()
        .context("`docker load` of the layout failed")?;
    let (id, _) = crate::docker::image_id_and_size(sh, reference)?;
    if id != config && id != manifest {
        bail!("the engine loaded {reference} as {id}, not as the layout's {config} or {manifest}");
    }
    Ok(())
}

/// Writes the image index of several platforms' builds as an OCI image layout in `dir`: their blobs (hard links
/// where the file system allows), each platform's manifest with its platform, and the index `index.json` names.
/// Returns the index's digest.
pub fn write_index(ctx: &Context, dir: &Path, platforms: &[(Platform, &Path)]) -> Result<String> {
    let staging_dir = dir.with_extension("partial");
    remove_dir_if_present(&staging_dir)?;
    let writer = LayoutWriter::create(&staging_dir)?;
    let blobs = staging_dir.join("blobs").join("sha256");
    let mut manifests = Vec::new();
    for (platform, layout) in platforms {
        let their_blobs = layout.join("blobs").join("sha256");
        for entry in std::fs::read_dir(&their_blobs).with_context(|| format!("reading {}", their_blobs.display()))? {
            let blob = entry?.path();
            let copy = blobs.join(blob.file_name().context("a blob without a name")?);
            if !copy.exists() && std::fs::hard_link(&blob, &copy).is_err() {
                std::fs::copy(&blob, &copy).with_context(|| format!("copying {}", blob.display()))?;
            }
        }
        let digest = oci::layout_top_digest(layout)?;
        let manifest = std::fs::read(their_blobs.join(digest.trim_start_matches("sha256:")))?;
        let mut descriptor = writer.blob(oci::MANIFEST_TYPE, &manifest)?;
        descriptor.platform = Some(OciPlatform { architecture: platform.arch().to_owned(), os: "linux".to_owned() });
        manifests.push(descriptor);
    }
    let index = serde_json::json!({ "schemaVersion": 2, "mediaType": oci::INDEX_TYPE, "manifests": manifests });
    let index = writer.blob(oci::INDEX_TYPE, &oci::canonical_json(&index)?)?;
    let written = writer.finish(index.clone(), &ctx.revision()?.tag, &[])?;
    replace_dir(&written, dir)?;
    Ok(index.digest)
}

/// Moves a complete folder over `dir`: nothing half-written is ever at `dir`.
fn replace_dir(complete: &Path, dir: &Path) -> Result<()> {
    remove_dir_if_present(dir)?;
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::rename(complete, dir).with_context(|| format!("moving the layout to {}", dir.display()))
}
