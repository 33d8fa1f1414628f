//! `cargo xtask build`: the static launcher, then each image, tagged with the git revision.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context as _, Result};

use crate::built::Built;
use crate::context::Context;
use crate::docker::Builder;
use crate::images::Image;

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
    crate::static_launcher::build(ctx)?;
    let base = crate::debian_base::ensure_base(ctx)?;
    let mut built = Vec::new();
    for image in images {
        let record = build_one(ctx, builder, &base, image).with_context(|| format!("image {}: build", image.name))?;
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

fn build_one(ctx: &Context, builder: &Builder, base: &str, image: &Image) -> Result<Built> {
    let revision = ctx.revision()?;
    let reference = ctx.reference(&image.name)?;
    let rootfs = &image.settings.rootfs;
    let mut build_args = vec![
        ("DEBIAN_BASE".to_owned(), base.to_owned()),
        ("ROOTFS_PRUNE".to_owned(), rootfs.prune.join(" ")),
        ("PYTHON_STDLIB_OMIT".to_owned(), rootfs.python_stdlib_omit.join(" ")),
    ];
    build_args.extend(image.settings.build_args.iter().map(|(k, v)| (k.clone(), v.clone())));
    let labels: Vec<(String, String)> = [
        ("title", image.name.as_str()),
        ("description", image.settings.description.as_str()),
        ("source", revision.source.as_str()),
        ("revision", revision.commit.as_str()),
        ("created", revision.created.as_str()),
        ("version", revision.version.as_str()),
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
    Built::record(ctx, &image.name, &reference, started.elapsed().as_secs_f64())
}

/// One `docker build`: what `build` runs for each image, and `bench` for its baselines.
pub struct DockerBuild<'a> {
    pub dockerfile: &'a Path,
    pub context_dir: &'a Path,
    pub reference: &'a str,
    pub build_args: &'a [(String, String)],
    pub labels: &'a [(String, String)],
    /// Scope of the layer cache kept between CI runs (XTASK_BUILDX_CACHE).
    pub cache_scope: &'a str,
}

impl DockerBuild<'_> {
    /// The CLI's arguments for this build with this builder: plain data, decided before anything runs.
    fn arguments(&self, builder: &Builder, buildx_cache: Option<&str>, ca_bundle: Option<&Path>) -> Vec<String> {
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
        for (key, value) in self.labels {
            args.extend(["--label".into(), format!("{key}={value}")]);
        }
        if let Some(bundle) = ca_bundle {
            // A BuildKit secret: mounted for the pip step only, never stored in a layer.
            args.extend(["--secret".into(), format!("id=ca-bundle,src={}", bundle.display())]);
        }
        args.push(self.context_dir.display().to_string());
        args
    }
}

/// Builds with the chosen builder and the host's CA bundle as a BuildKit secret, streaming the output;
/// a failure names the Dockerfile and the failing line.
pub fn docker_build(ctx: &Context, builder: &Builder, build: &DockerBuild) -> Result<()> {
    let buildx_cache = std::env::var("XTASK_BUILDX_CACHE").ok();
    let args = build.arguments(builder, buildx_cache.as_deref(), ca_bundle().as_deref());
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

/// The CA bundle pip trusts inside the build: SSL_CERT_FILE, PIP_CERT, or the system bundle.
fn ca_bundle() -> Option<PathBuf> {
    ["SSL_CERT_FILE", "PIP_CERT"]
        .iter()
        .filter_map(|var| std::env::var_os(var).map(PathBuf::from))
        .chain(std::iter::once(PathBuf::from("/etc/ssl/certs/ca-certificates.crt")))
        .find(|path| path.is_file())
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
            labels: &[("org.opencontainers.image.title".into(), "app".into())],
            cache_scope: "app",
        };
        let classic = build.arguments(&Builder::ClassicBuildKit { cli: "docker".into() }, Some("gha"), None);
        assert_eq!(classic[0], "build");
        assert!(!classic.iter().any(|arg| arg.starts_with("--cache")), "{classic:?}");
        assert!(classic.windows(2).any(|pair| pair == ["--build-arg", "DEBIAN_BASE=debian:trixie"]));
        assert_eq!(classic.last().map(String::as_str), Some("/work"));
        let buildx = build.arguments(&Builder::Buildx { cli: "docker".into() }, Some("gha"), Some(Path::new("/ca")));
        assert_eq!(buildx[..3], ["buildx", "build", "--load"]);
        assert!(buildx.contains(&"--cache-to=type=gha,scope=app,mode=max".to_owned()), "{buildx:?}");
        assert!(buildx.windows(2).any(|pair| pair == ["--secret", "id=ca-bundle,src=/ca"]));
    }
}
