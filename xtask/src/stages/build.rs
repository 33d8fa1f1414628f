//! `cargo xtask build`: the static launcher, then each image, written as a reproducible OCI image layout and loaded
//! into the engine, tagged with the git revision.
//!
//! Per image: the locked Debian packages and wheels are fetched (verified by hash) and staged with the workspace
//! files into the build context (`staging.rs`); the engine builds the Dockerfile from it without any network; the
//! result is written again byte for byte reproducibly as an OCI image layout (`oci.rs`), which is what the scanners
//! read, the engine loads and `release` pushes.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use xshell::cmd;

use crate::built::{Built, Layout};
use crate::context::Context;
use crate::docker::Builder;
use crate::images::Image;
use crate::oci::{self, Descriptor, LayoutWriter};

/// The architecture images are built for (the only one, for now).
pub const ARCHITECTURE: &str = "amd64";

#[derive(clap::Args)]
pub struct BuildArgs {
    /// Images to build (default: all); the containers they need beside them are built too.
    pub images: Vec<String>,
}

pub fn run(ctx: &Context, args: &BuildArgs) -> Result<()> {
    build_all(ctx, &ctx.with_companions(&args.images)?).map(drop)
}

pub fn build_all(ctx: &Context, images: &[&Image]) -> Result<Vec<Built>> {
    let builder = ctx.engine()?.builder()?;
    let launcher = crate::static_launcher::build(ctx)?;
    let base = crate::debian_base::ensure_base(ctx)?;
    let mut built = Vec::new();
    for image in images {
        let record =
            build_one(ctx, builder, &base, &launcher, image).with_context(|| format!("image {}: build", image.name))?;
        eprintln!(
            "xtask: built {} ({:.1} MB) in {:.1}s, {} (written reproducibly in {:.1}s)",
            record.reference,
            record.size_bytes as f64 / 1e6,
            record.build_seconds,
            record.layout.digest,
            record.layout.assemble_seconds,
        );
        built.push(record);
    }
    Ok(built)
}

fn build_one(ctx: &Context, builder: &Builder, base: &str, launcher: &Path, image: &Image) -> Result<Built> {
    let started = Instant::now();
    let started_on = jiff::Timestamp::now();
    let packages = crate::debian::fetch(ctx, image, ARCHITECTURE)?;
    let mut locks = Vec::new();
    if let Some(venv) = &image.settings.venv {
        locks.extend([PathBuf::from(crate::wheels::BUILD_REQUIREMENTS), venv.requirements.clone()]);
    }
    let wheels = crate::wheels::stage(ctx, &image.name, &locks, ARCHITECTURE, &ctx.package_cache())?;
    let inputs = crate::staging::Inputs {
        launcher,
        packages: packages.iter().map(|package| (package.path.clone(), package.file_name())).collect(),
        wheels: &wheels,
    };
    let context_dir = crate::staging::stage(ctx, &image.name, &inputs)?;

    let reference = ctx.reference(&image.name)?;
    // The engine's own image is only the input of the reproducible one, under a tag of its own. It carries nothing of
    // the revision (the labels come later), so one tag per image serves every commit.
    let engine_image = crate::images::reference(&image.name, "engine");
    let rootfs = &image.settings.rootfs;
    let mut build_args = vec![
        ("DEBIAN_BASE".to_owned(), base.to_owned()),
        ("ROOTFS_PRUNE".to_owned(), rootfs.prune.join(" ")),
        ("PYTHON_STDLIB_OMIT".to_owned(), rootfs.python_stdlib_omit.join(" ")),
    ];
    build_args.extend(image.settings.build_args.iter().map(|(k, v)| (k.clone(), v.clone())));
    docker_build(
        ctx,
        builder,
        &DockerBuild {
            dockerfile: &image.dockerfile(),
            context_dir: &context_dir,
            reference: &engine_image,
            build_args: &build_args,
            ca_bundle_secret: false,
            cache_scope: &image.name,
        },
    )?;
    let build_seconds = started.elapsed().as_secs_f64();
    let assembling = Instant::now();
    let labels = labels(ctx, image)?;
    let (engine_id, _) = crate::docker::image_id_and_size(&ctx.sh, &engine_image)?;
    // The layout is a function of the engine's image, the labels and the commit time: written again only when one
    // of them changed (and loaded again only when the engine lost it).
    let source =
        serde_json::json!({ "engine image": engine_id, "labels": labels, "epoch": ctx.revision()?.commit_time });
    let recorded = ctx.out.image_layout(&image.name).with_extension("json");
    let previous: Option<(serde_json::Value, Layout)> =
        std::fs::read_to_string(&recorded).ok().and_then(|text| serde_json::from_str(&text).ok());
    let layout = match previous {
        Some((from, layout)) if from == source && layout.dir.is_dir() => {
            if !crate::docker::has_image(&ctx.sh, &reference) {
                load(ctx, &layout.dir, &reference, &layout.digest, &layout.config_digest)?;
            }
            layout
        }
        _ => {
            let layout = write_reproducible(ctx, image, &engine_image, &reference, &labels)?;
            std::fs::write(&recorded, serde_json::to_string(&(&source, &layout))?)?;
            layout
        }
    };
    let layout = Layout { assemble_seconds: assembling.elapsed().as_secs_f64(), ..layout };
    let (base_id, _) = crate::docker::image_id_and_size(&ctx.sh, base)?;
    crate::provenance::write(
        ctx,
        &crate::provenance::Inputs {
            image: &image.name,
            platform: &format!("linux/{ARCHITECTURE}"),
            base: (base, &base_id),
            packages: packages
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
    Built::record(ctx, &image.name, &reference, build_seconds, layout)
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

/// Writes the engine's image again as a reproducible OCI image layout under `out/images/<image>/oci/`, replacing
/// the previous one only once complete, and loads it into the engine as `reference`.
fn write_reproducible(
    ctx: &Context,
    image: &Image,
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
    let final_dir = ctx.out.image_layout(&image.name);
    let staging_dir = final_dir.with_extension("partial");
    if staging_dir.exists() {
        std::fs::remove_dir_all(&staging_dir)?;
    }
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
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir)?;
    }
    std::fs::rename(&written, &final_dir).with_context(|| format!("moving the layout to {}", final_dir.display()))?;

    load(ctx, &final_dir, reference, &manifest.digest, &config.digest)?;
    Ok(Layout { dir: final_dir, digest: manifest.digest, config_digest: config.digest, assemble_seconds: 0.0 })
}

/// Loads the layout into the engine (`docker load` reads its `manifest.json`) and checks the engine holds exactly it:
/// Engine 20.10 names an image by its config digest, the containerd image store by its manifest digest.
fn load(ctx: &Context, layout: &Path, reference: &str, manifest: &str, config: &str) -> Result<()> {
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

/// One `docker build`: what `build` runs for each image, and `bench` for its baselines.
pub struct DockerBuild<'a> {
    pub dockerfile: &'a Path,
    pub context_dir: &'a Path,
    pub reference: &'a str,
    pub build_args: &'a [(String, String)],
    /// Hand the host's CA bundle in as the BuildKit secret `ca-bundle` (for Dockerfiles that reach PyPI; a secret is
    /// mounted for the steps that ask for it and lands in no layer).
    pub ca_bundle_secret: bool,
    /// Scope of the layer cache kept between CI runs (XTASK_BUILDX_CACHE).
    pub cache_scope: &'a str,
}

impl DockerBuild<'_> {
    /// The CLI's arguments for this build with this builder: plain data, decided before anything runs.
    fn arguments(
        &self,
        builder: &Builder,
        buildx_cache: Option<&str>,
        no_cache: bool,
        ca_bundle: Option<&Path>,
    ) -> Vec<String> {
        let mut args: Vec<String> = Vec::new();
        if let Builder::Buildx { .. } = builder {
            args.extend(["buildx".into(), "build".into(), "--load".into()]);
            // On GitHub Actions the layer cache lives in the Actions cache between runs (XTASK_BUILDX_CACHE=gha).
            if let Some(backend) = buildx_cache {
                let scope = self.cache_scope;
                args.push(format!("--cache-from=type={backend},scope={scope}"));
                args.push(format!("--cache-to=type={backend},scope={scope},mode=max"));
            }
        } else {
            args.push("build".into());
        }
        args.extend(["--progress=plain".into(), "--file".into(), self.dockerfile.display().to_string()]);
        args.extend(["--tag".into(), self.reference.to_owned()]);
        for (key, value) in self.build_args {
            args.extend(["--build-arg".into(), format!("{key}={value}")]);
        }
        if no_cache {
            args.push("--no-cache".into());
        }
        if let Some(bundle) = ca_bundle {
            args.extend(["--secret".into(), format!("id=ca-bundle,src={}", bundle.display())]);
        }
        args.push(self.context_dir.display().to_string());
        args
    }
}

/// Builds with the chosen builder, streaming the output; a failure names the Dockerfile and the failing line.
/// `XTASK_NO_CACHE=1` builds without the build cache (what `reproduce` asks for).
pub fn docker_build(ctx: &Context, builder: &Builder, build: &DockerBuild) -> Result<()> {
    let buildx_cache = std::env::var("XTASK_BUILDX_CACHE").ok();
    let no_cache = std::env::var("XTASK_NO_CACHE").is_ok_and(|value| value == "1");
    let ca_bundle = build.ca_bundle_secret.then(crate::process::host_ca_bundle).flatten();
    let args = build.arguments(builder, buildx_cache.as_deref(), no_cache, ca_bundle.as_deref());
    eprintln!("xtask: building {} ({})", build.reference, build.dockerfile.display());
    let cli = builder.cli();
    let sh = &ctx.sh;
    let command = xshell::cmd!(sh, "{cli} {args...}").env("DOCKER_BUILDKIT", "1");
    let mut tail: VecDeque<String> = VecDeque::new();
    let status = crate::process::stream(command, |line| {
        eprint!("  | {line}");
        if tail.len() == 40 {
            tail.pop_front();
        }
        tail.push_back(line.trim_end().to_owned());
    })
    .with_context(|| format!("running `{} build`", cli.display()))?;
    if !status.success() {
        let failing = tail
            .iter()
            .rev()
            .find(|line| {
                line.contains("ERROR")
                    || line.contains("failed to solve")
                    || line.contains("did not complete successfully")
            })
            .cloned()
            .unwrap_or_else(|| tail.back().cloned().unwrap_or_default());
        bail!("the Dockerfile {} failed: {failing}\n  (full build output above)", build.dockerfile.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_command_is_planned_for_each_builder() {
        let build = DockerBuild {
            dockerfile: Path::new("images/app/Dockerfile"),
            context_dir: Path::new("/work"),
            reference: "r/app:1",
            build_args: &[("DEBIAN_BASE".into(), "debian:trixie".into())],
            ca_bundle_secret: true,
            cache_scope: "app",
        };
        let classic = build.arguments(&Builder::ClassicBuildKit { cli: "docker".into() }, Some("gha"), false, None);
        assert_eq!(classic[0], "build");
        assert!(!classic.iter().any(|arg| arg.starts_with("--cache")), "{classic:?}");
        assert!(classic.windows(2).any(|pair| pair == ["--build-arg", "DEBIAN_BASE=debian:trixie"]));
        assert_eq!(classic.last().map(String::as_str), Some("/work"));
        let buildx =
            build.arguments(&Builder::Buildx { cli: "docker".into() }, Some("gha"), true, Some(Path::new("/ca")));
        assert_eq!(buildx[..3], ["buildx", "build", "--load"]);
        assert!(buildx.contains(&"--cache-to=type=gha,scope=app,mode=max".to_owned()), "{buildx:?}");
        assert!(buildx.contains(&"--no-cache".to_owned()) && !classic.contains(&"--no-cache".to_owned()));
        assert!(buildx.windows(2).any(|pair| pair == ["--secret", "id=ca-bundle,src=/ca"]));
    }
}
