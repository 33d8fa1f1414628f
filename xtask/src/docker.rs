//! The Docker engine and the CLI that talks to it.
//!
//! `DOCKER_HOST` and docker contexts are left to the CLI, so a remote engine works as a local one does.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use xshell::{cmd, Shell};

use crate::context::Context;

/// The engine that answered, and how this machine builds images for it.
#[derive(Debug)]
pub struct Engine {
    pub version: String,
    builder: Result<Builder, String>,
}

/// How images are built: `docker buildx build` where buildx exists (GitHub runners, Docker Desktop),
/// otherwise the classic `docker build` of a CLI that still embeds a BuildKit client (before 23.0).
#[derive(Clone, Debug)]
pub enum Builder {
    Buildx { cli: PathBuf },
    ClassicBuildKit { cli: PathBuf },
}

impl Builder {
    pub fn cli(&self) -> &Path {
        match self {
            Builder::Buildx { cli } | Builder::ClassicBuildKit { cli } => cli,
        }
    }
}

impl Engine {
    /// The engine's version and builder, or a plain error that says how to start one.
    pub fn connect(sh: &Shell) -> Result<Self> {
        let format = "{{.Server.Version}}";
        let output = cmd!(sh, "docker version --format {format}").quiet().ignore_status().output();
        let version = match output {
            Ok(output) if output.status.success() => String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            Ok(output) => bail!(
                "no Docker engine answers ({}).\n  Start one, e.g. `sudo dockerd > /tmp/dockerd.log 2>&1 &` (Debian: \
                 `apt-get install docker.io`), or point DOCKER_HOST / `docker context use` at a running engine.",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            Err(error) => {
                return Err(error)
                    .context("the `docker` CLI is not on PATH: install Docker (Debian: `apt-get install docker.io`)")
            }
        };
        Ok(Engine { version, builder: find_builder(sh).map_err(|error| format!("{error:#}")) })
    }

    /// The CLI and mode that can build with BuildKit here.
    pub fn builder(&self) -> Result<&Builder> {
        self.builder.as_ref().map_err(|error| anyhow::anyhow!("{error}"))
    }
}

fn find_builder(sh: &Shell) -> Result<Builder> {
    let mut candidates = vec![PathBuf::from("docker")];
    // Debian's docker.io CLI sits behind a newer one without buildx on some machines.
    if Path::new("/usr/bin/docker").is_file() {
        candidates.push(PathBuf::from("/usr/bin/docker"));
    }
    for cli in candidates {
        if cmd!(sh, "{cli} buildx version").quiet().ignore_stdout().ignore_stderr().run().is_ok() {
            return Ok(Builder::Buildx { cli });
        }
        let format = "{{.Client.Version}}";
        let version = cmd!(sh, "{cli} version --format {format}").quiet().ignore_stderr().read().unwrap_or_default();
        let major: u32 = version.split('.').next().and_then(|major| major.parse().ok()).unwrap_or(0);
        if (1..23).contains(&major) {
            return Ok(Builder::ClassicBuildKit { cli });
        }
    }
    bail!(
        "no Docker CLI here can build with BuildKit: install the buildx plugin \
         (Debian: `apt-get install docker-buildx`, or docker-buildx-plugin from Docker's packages)"
    )
}

/// True when the engine has an image of that name.
pub fn has_image(sh: &Shell, reference: &str) -> bool {
    let format = "{{.Id}}";
    cmd!(sh, "docker image inspect --format {format} {reference}").quiet().ignore_stdout().ignore_stderr().run().is_ok()
}

/// Image ID (the digest of its config) and uncompressed size in bytes.
pub fn image_id_and_size(sh: &Shell, reference: &str) -> Result<(String, u64)> {
    let format = "{{.Id}}\t{{.Size}}";
    let line = cmd!(sh, "docker image inspect --format {format} {reference}")
        .quiet()
        .read()
        .with_context(|| format!("inspecting image {reference}"))?;
    let (id, size) = line.split_once('\t').context("unexpected `docker image inspect` output")?;
    Ok((id.to_owned(), size.trim().parse().context("image size is not a number")?))
}

/// The host, as written in a URL, where the engine publishes container ports: the DOCKER_HOST machine
/// for a remote engine (`tcp://` or `ssh://`), else loopback. Loopback also when this process itself
/// runs in a container beside its engine, where testcontainers would guess the bridge gateway instead.
pub fn published_host() -> String {
    published_host_of(std::env::var("DOCKER_HOST").ok().as_deref())
}

fn published_host_of(docker_host: Option<&str>) -> String {
    let authority = docker_host
        .and_then(|url| url.strip_prefix("tcp://").or_else(|| url.strip_prefix("ssh://")))
        .map(|rest| rest.split('/').next().unwrap_or_default())
        .map(|authority| authority.rsplit_once('@').map_or(authority, |(_user, host_port)| host_port));
    let host = match authority {
        Some(ipv6) if ipv6.starts_with('[') => ipv6.split_inclusive(']').next().unwrap_or_default(),
        Some(host_port) => host_port.split(':').next().unwrap_or_default(),
        None => "",
    };
    if host.is_empty() { "127.0.0.1" } else { host }.to_owned()
}

/// One `docker build`: what `build` runs for each image, and `bench` for its baselines.
pub struct DockerBuild<'a> {
    pub dockerfile: &'a Path,
    pub context_dir: &'a Path,
    pub reference: &'a str,
    pub build_args: &'a [(String, String)],
    /// The platform to build for (`linux/arm64`); the engine's own when none.
    pub platform: Option<&'a str>,
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
        if let Some(platform) = self.platform {
            args.extend(["--platform".into(), platform.to_owned()]);
        }
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
    fn published_ports_are_on_loopback_for_a_local_engine_and_on_the_remote_machine_otherwise() {
        for local in [None, Some("unix:///var/run/docker.sock"), Some("")] {
            assert_eq!(published_host_of(local), "127.0.0.1", "{local:?}");
        }
        assert_eq!(published_host_of(Some("tcp://10.0.0.5:2376")), "10.0.0.5");
        assert_eq!(published_host_of(Some("tcp://builder.example:2375/")), "builder.example");
        assert_eq!(published_host_of(Some("ssh://ci@builder.example")), "builder.example");
        assert_eq!(published_host_of(Some("ssh://ci@builder.example:2222")), "builder.example");
        assert_eq!(published_host_of(Some("tcp://[fd00::5]:2376")), "[fd00::5]");
    }

    #[test]
    fn the_build_command_is_planned_for_each_builder() {
        let build = DockerBuild {
            dockerfile: Path::new("images/app/Dockerfile"),
            context_dir: Path::new("/work"),
            reference: "r/app:1",
            build_args: &[("DEBIAN_BASE".into(), "debian:trixie".into())],
            platform: Some("linux/arm64"),
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
        assert!(classic.windows(2).any(|pair| pair == ["--platform", "linux/arm64"]));
    }
}
