//! The Docker engine and the CLI that talks to it.
//!
//! `DOCKER_HOST` and docker contexts are left to the CLI, so a remote engine works as a local one does.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use xshell::{cmd, Shell};

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

#[cfg(test)]
mod tests {
    use super::published_host_of;

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
}
