//! `cargo xtask build`: the static launcher, then each image, tagged with the git revision.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};
use xshell::cmd;

use crate::context::Context;
use crate::docker::{self, Builder};
use crate::images::{self, Image};

#[derive(clap::Args)]
pub struct BuildArgs {
    /// Images to build (default: all); the containers they need beside them are built too.
    pub images: Vec<String>,
}

/// What a build produced, kept in `out/build/<image>.json` for the later stages and the summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Built {
    pub image: String,
    pub reference: String,
    /// The image ID, i.e. the digest of its configuration (the registry digest exists only after a push).
    pub id: String,
    pub size_bytes: u64,
    pub build_seconds: f64,
}

/// `cargo xtask build [IMAGE...]`.
pub fn run(ctx: &Context, args: &BuildArgs) -> Result<Vec<Built>> {
    let images = images::with_companions(ctx, &args.images)?;
    build_all(ctx, &images)
}

pub fn build_all(ctx: &Context, images: &[Image]) -> Result<Vec<Built>> {
    docker::engine_version(ctx)?;
    let builder = docker::builder(ctx)?;
    crate::launcher::build_static(ctx)?;
    let base = crate::bootstrap::ensure_base(ctx)?;
    let provenance = Provenance::of_checkout(ctx)?;
    let mut built = Vec::new();
    for image in images {
        let record = build_one(ctx, &builder, &base, &provenance, image)
            .with_context(|| format!("image {}: build", image.name))?;
        eprintln!(
            "xtask: built {} ({:.1} MB) in {:.1}s",
            record.reference,
            record.size_bytes as f64 / 1e6,
            record.build_seconds
        );
        built.push(record);
    }
    Ok(built)
}

/// Git facts that go into the OCI labels and the tag.
struct Provenance {
    tag: String,
    revision: String,
    created: String,
    version: String,
    source: String,
}

impl Provenance {
    fn of_checkout(ctx: &Context) -> Result<Self> {
        let tag = images::revision_tag(ctx)?;
        let revision = ctx.read("git", &["rev-parse", "HEAD"])?;
        let created = ctx.read("git", &["log", "-1", "--format=%cI"])?;
        let sh = &ctx.sh;
        let version = cmd!(sh, "git describe --tags --exact-match --match v[0-9]*")
            .quiet()
            .ignore_stderr()
            .read()
            .map(|tag| tag.trim_start_matches('v').to_owned())
            .unwrap_or_else(|_| format!("0.0.0-{tag}"));
        let source = match (std::env::var("GITHUB_SERVER_URL"), std::env::var("GITHUB_REPOSITORY")) {
            (Ok(server), Ok(repository)) => format!("{server}/{repository}"),
            _ => ctx.read("git", &["config", "--get", "remote.origin.url"]).unwrap_or_default(),
        };
        Ok(Self { tag, revision, created, version, source })
    }
}

fn build_one(ctx: &Context, builder: &Builder, base: &str, provenance: &Provenance, image: &Image) -> Result<Built> {
    let reference = images::reference(&image.name, &provenance.tag);
    let mut build_args = vec![("DEBIAN_BASE".to_owned(), base.to_owned())];
    build_args.extend(image.settings.build_args.iter().map(|(k, v)| (k.clone(), v.clone())));
    let labels: Vec<(String, String)> = [
        ("title", image.name.as_str()),
        ("description", image.settings.description.as_str()),
        ("source", provenance.source.as_str()),
        ("revision", provenance.revision.as_str()),
        ("created", provenance.created.as_str()),
        ("version", provenance.version.as_str()),
        ("licenses", image.settings.licenses.as_str()),
    ]
    .into_iter()
    .map(|(key, value)| (format!("org.opencontainers.image.{key}"), value.to_owned()))
    .collect();
    let started = Instant::now();
    docker_build(
        ctx,
        builder,
        &DockerBuild {
            dockerfile: &image.dockerfile(),
            context_dir: &ctx.root.join(&image.settings.context),
            reference: &reference,
            build_args: &build_args,
            labels: &labels,
            cache_scope: &image.name,
        },
    )?;
    let build_seconds = started.elapsed().as_secs_f64();
    let (id, size_bytes) = docker::image_id_and_size(ctx, &reference)?;
    let record = Built { image: image.name.clone(), reference, id, size_bytes, build_seconds };
    let record_path = record_path(ctx, &image.name);
    std::fs::create_dir_all(record_path.parent().unwrap())?;
    std::fs::write(&record_path, serde_json::to_string_pretty(&record)?)?;
    Ok(record)
}

/// One `docker build`: what `build` runs for each image, and `bench` for its baselines.
pub struct DockerBuild<'a> {
    pub dockerfile: &'a std::path::Path,
    pub context_dir: &'a std::path::Path,
    pub reference: &'a str,
    pub build_args: &'a [(String, String)],
    pub labels: &'a [(String, String)],
    /// Scope of the layer cache kept between CI runs (XTASK_BUILDX_CACHE).
    pub cache_scope: &'a str,
}

/// Builds with the chosen builder and the host's CA bundle as a BuildKit secret, streaming the output;
/// a failure names the Dockerfile and the failing line.
pub fn docker_build(ctx: &Context, builder: &Builder, build: &DockerBuild) -> Result<()> {
    let DockerBuild { dockerfile, context_dir, reference, build_args, labels, cache_scope } = *build;
    let mut args: Vec<String> = Vec::new();
    if let Builder::Buildx { .. } = builder {
        args.extend(["buildx".into(), "build".into(), "--load".into()]);
        // On GitHub Actions the layer cache lives in the Actions cache between runs (XTASK_BUILDX_CACHE=gha).
        if let Ok(backend) = std::env::var("XTASK_BUILDX_CACHE") {
            args.extend([
                format!("--cache-from=type={backend},scope={cache_scope}"),
                format!("--cache-to=type={backend},scope={cache_scope},mode=max"),
            ]);
        }
    } else {
        args.push("build".into());
    }
    args.extend([
        "--progress=plain".into(),
        "--file".into(),
        path_string(dockerfile)?,
        "--tag".into(),
        reference.to_owned(),
    ]);
    for (key, value) in build_args {
        args.extend(["--build-arg".into(), format!("{key}={value}")]);
    }
    for (key, value) in labels {
        args.extend(["--label".into(), format!("{key}={value}")]);
    }
    if let Some(bundle) = ca_bundle() {
        // A BuildKit secret: mounted for the pip step only, never stored in a layer.
        args.extend(["--secret".into(), format!("id=ca-bundle,src={}", path_string(&bundle)?)]);
    }
    args.push(path_string(context_dir)?);

    eprintln!("xtask: building {reference} ({})", dockerfile.display());
    let cli = builder.cli();
    let command = duct::cmd(cli, &args).env("DOCKER_BUILDKIT", "1").dir(&ctx.root);
    let mut tail: VecDeque<String> = VecDeque::new();
    let status = crate::context::stream_lines(command, |line| {
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
        bail!("the Dockerfile {} failed: {failing}\n  (full build output above)", dockerfile.display());
    }
    Ok(())
}

fn record_path(ctx: &Context, image: &str) -> PathBuf {
    ctx.root.join("out").join("build").join(format!("{image}.json"))
}

/// The build of this image at the current revision, or an error telling to build it first.
pub fn current(ctx: &Context, image: &str) -> Result<Built> {
    let reference = images::reference(image, &images::revision_tag(ctx)?);
    if !docker::has_image(ctx, &reference) {
        bail!("image {reference} is not built: run `cargo xtask build {image}` first");
    }
    let (id, size_bytes) = docker::image_id_and_size(ctx, &reference)?;
    let recorded: Option<Built> = std::fs::read_to_string(record_path(ctx, image))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .filter(|record: &Built| record.id == id);
    let build_seconds = recorded.map_or(0.0, |record| record.build_seconds);
    Ok(Built { image: image.to_owned(), reference, id, size_bytes, build_seconds })
}

/// The CA bundle pip trusts inside the build: SSL_CERT_FILE, PIP_CERT, or the system bundle.
fn ca_bundle() -> Option<PathBuf> {
    ["SSL_CERT_FILE", "PIP_CERT"]
        .iter()
        .filter_map(|var| std::env::var_os(var).map(PathBuf::from))
        .chain(std::iter::once(PathBuf::from("/etc/ssl/certs/ca-certificates.crt")))
        .find(|path| path.is_file())
}

fn path_string(path: &std::path::Path) -> Result<String> {
    path.to_str().map(str::to_owned).with_context(|| format!("path {} is not UTF-8", path.display()))
}
