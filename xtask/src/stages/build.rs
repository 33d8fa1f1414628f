//! `cargo xtask build [--platform linux/amd64,linux/arm64]`: the static launcher, then each image for each platform,
//! written as a reproducible OCI image layout and loaded into the engine, tagged with the git revision; with more
//! than one platform, an image index of them all.
//!
//! Per image and platform: the locked Debian packages of the platform and of the build machine, and the platform's
//! locked wheels, are fetched (verified by hash) and staged with the workspace files into the build context
//! (`staging.rs`); the engine builds the Dockerfile from it without any network, every step on the build machine's
//! own platform (the target's files are only unpacked, copied and compiled to bytecode: no emulation); the result
//! is written again byte for byte reproducibly as an OCI image layout (`assemble.rs`), which is what the scanners
//! read, the engine loads and `release` pushes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result};

use crate::built::{Built, Layout};
use crate::context::Context;
use crate::docker::{Builder, DockerBuild};
use crate::images::Image;
use crate::platform::{Platform, PlatformArgs};

/// The platform every build step runs on: the build machine's (the project's builders are amd64).
const BUILD_PLATFORM: Platform = Platform::Amd64;

#[derive(clap::Args)]
pub struct BuildArgs {
    /// Images to build (default: all); the containers they need beside them are built too.
    pub images: Vec<String>,
    #[command(flatten)]
    pub platforms: PlatformArgs,
}

pub fn run(ctx: &Context, args: &BuildArgs) -> Result<()> {
    build_all(ctx, &ctx.with_companions(&args.images)?, &args.platforms.chosen()).map(drop)
}

/// Builds each image for each of `platforms` it is built for (see [`Platform::for_image`]), and the image index of
/// an image built for more than one.
pub fn build_all(ctx: &Context, images: &[&Image], platforms: &[Platform]) -> Result<Vec<Built>> {
    // Builds share the staged contexts and the layouts under out/: one at a time in a process (tests build from
    // several threads).
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = BUILDING.lock().unwrap_or_else(|poison| poison.into_inner());
    let builder = ctx.engine()?.builder()?;
    let base = crate::debian_base::ensure_base(ctx)?;
    let mut launchers = BTreeMap::new();
    let mut built = Vec::new();
    for image in images {
        let mut of_image = Vec::new();
        for platform in Platform::for_image(image, platforms) {
            let launcher = match launchers.get(&platform) {
                Some(launcher) => launcher,
                None => launchers.entry(platform).or_insert(crate::static_launcher::build(ctx, platform)?),
            };
            let record = build_one(ctx, builder, &base, launcher, image, platform)
                .with_context(|| format!("image {} for {platform}: build", image.name))?;
            eprintln!(
                "xtask: built {} for {platform} ({:.1} MB) in {:.1}s, {} (written reproducibly in {:.1}s)",
                record.reference,
                record.size_bytes as f64 / 1e6,
                record.build_seconds,
                record.layout.digest,
                record.layout.assemble_seconds,
            );
            of_image.push(record);
        }
        if of_image.len() > 1 {
            let layouts: Vec<(Platform, &Path)> =
                of_image.iter().map(|built| (built.platform, built.layout.dir.as_path())).collect();
            let index = crate::assemble::write_index(ctx, &ctx.out.index_layout(&image.name), &layouts)
                .with_context(|| format!("image {}: the image index", image.name))?;
            eprintln!("xtask: {} index of {} platforms: {index}", image.name, of_image.len());
        }
        built.extend(of_image);
    }
    Ok(built)
}

fn build_one(
    ctx: &Context,
    builder: &Builder,
    base: &str,
    launcher: &Path,
    image: &Image,
    platform: Platform,
) -> Result<Built> {
    let started = Instant::now();
    let started_on = jiff::Timestamp::now();
    let packages = crate::debian::fetch(ctx, image, platform.arch())?;
    let build_packages = if platform == BUILD_PLATFORM {
        packages.clone()
    } else {
        crate::debian::fetch(ctx, image, BUILD_PLATFORM.arch())
            .with_context(|| format!("the build machine's packages ({BUILD_PLATFORM})"))?
    };
    let mut locks = Vec::new();
    if let Some(venv) = &image.settings.venv {
        locks.extend([PathBuf::from(crate::wheels::BUILD_REQUIREMENTS), venv.requirements.clone()]);
    }
    let wheels = crate::wheels::stage(ctx, &image.name, &locks, platform, &ctx.package_cache())
        .with_context(|| format!("the wheels for {platform}"))?;
    let staged = |fetched: &[crate::debian::Fetched]| -> Vec<(PathBuf, String)> {
        fetched.iter().map(|package| (package.path.clone(), package.file_name())).collect()
    };
    let inputs = crate::staging::Inputs {
        platform,
        launcher,
        packages: staged(&packages),
        build_packages: staged(&build_packages),
        wheels: &wheels,
    };
    let context_dir = crate::staging::stage(ctx, &image.name, &inputs)?;

    let reference = ctx.platform_reference(&image.name, platform)?;
    // The engine's own image is only the input of the reproducible one, under a tag of its own. It carries nothing of
    // the revision (the labels come later), so one tag per image and platform serves every commit.
    let engine_image = crate::images::reference(&image.name, &format!("engine-{}", platform.arch()));
    let rootfs = &image.settings.rootfs;
    let mut build_args = vec![
        ("DEBIAN_BASE".to_owned(), base.to_owned()),
        ("ROOTFS_PRUNE".to_owned(), rootfs.prune.join(" ")),
        ("PYTHON_STDLIB_OMIT".to_owned(), rootfs.python_stdlib_omit.join(" ")),
    ];
    build_args.extend(image.settings.build_args.iter().map(|(k, v)| (k.clone(), v.clone())));
    let docker_platform = platform.docker();
    crate::docker::docker_build(
        ctx,
        builder,
        &DockerBuild {
            dockerfile: &image.dockerfile(),
            context_dir: &context_dir,
            reference: &engine_image,
            build_args: &build_args,
            platform: Some(&docker_platform),
            ca_bundle_secret: false,
            cache_scope: &format!("{}-{}", image.name, platform.arch()),
        },
    )?;
    let build_seconds = started.elapsed().as_secs_f64();
    let assembling = Instant::now();
    let labels = labels(ctx, image)?;
    let (engine_id, _) = crate::docker::image_id_and_size(&ctx.sh, &engine_image)?;
    // The layout is a function of the engine's image, the labels and the commit time, and is loaded under the tag:
    // written again only when one of them changed (and loaded again only when the engine lost it).
    let source = serde_json::json!({
        "engine image": engine_id,
        "labels": labels,
        "epoch": ctx.revision()?.commit_time,
        "tag": reference,
    });
    let layout_dir = ctx.out.platform_layout(&image.name, platform);
    let recorded = layout_dir.with_extension("json");
    let previous: Option<(serde_json::Value, Layout)> =
        std::fs::read_to_string(&recorded).ok().and_then(|text| serde_json::from_str(&text).ok());
    let layout = match previous {
        Some((from, layout)) if from == source && layout.dir.is_dir() => {
            if !crate::docker::has_image(&ctx.sh, &reference) {
                crate::assemble::load(ctx, &layout.dir, &reference, &layout.digest, &layout.config_digest)?;
            }
            layout
        }
        _ => {
            let layout = crate::assemble::write_reproducible(ctx, &layout_dir, &engine_image, &reference, &labels)?;
            std::fs::write(&recorded, serde_json::to_string(&(&source, &layout))?)?;
            layout
        }
    };
    let layout = Layout { assemble_seconds: assembling.elapsed().as_secs_f64(), ..layout };
    let (base_id, _) = crate::docker::image_id_and_size(&ctx.sh, base)?;
    let mut provenance_packages = packages.clone();
    if platform != BUILD_PLATFORM {
        provenance_packages.extend(build_packages);
    }
    crate::provenance::write(
        ctx,
        &crate::provenance::Inputs {
            image: &image.name,
            platform,
            base: (base, &base_id),
            packages: provenance_packages
                .iter()
                .map(|package| {
                    (package.name.clone(), package.version.clone(), package.architecture.clone(), package.path.clone())
                })
                .collect(),
            locks,
            wheels: &wheels,
            launcher,
            engine: &ctx.engine()?.version,
            started: started_on,
            finished: jiff::Timestamp::now(),
        },
    )?;
    Built::record(ctx, &image.name, platform, build_seconds, layout)
}

/// The labels every image carries: what it is and which commit made it (nothing that varies between checkouts).
fn labels(ctx: &Context, image: &Image) -> Result<BTreeMap<String, String>> {
    let revision = ctx.revision()?;
    let mut labels = BTreeMap::from([
        ("title", image.name.clone()),
        ("description", image.settings.description.clone()),
        ("revision", revision.commit.clone()),
        ("created", revision.created.clone()),
        ("licenses", image.settings.licenses.clone()),
    ]);
    if let Some(source) = public_source(ctx)? {
        labels.insert("source", source);
    }
    Ok(labels.into_iter().map(|(key, value)| (format!("org.opencontainers.image.{key}"), value)).collect())
}

/// The repository's public URL, `repository` in the `[workspace.package]` table of Cargo.toml, when it says one:
/// a committed fact, unlike a checkout's remote (often a local path).
fn public_source(ctx: &Context) -> Result<Option<String>> {
    let manifest: toml::Table = toml::from_str(&std::fs::read_to_string(ctx.root.join("Cargo.toml"))?)?;
    Ok(manifest
        .get("workspace")
        .and_then(|workspace| workspace.get("package"))
        .and_then(|package| package.get("repository"))
        .and_then(toml::Value::as_str)
        .map(str::to_owned))
}
