//! The Debian 13 base of the builder stages: pulled where a registry is reachable, otherwise built
//! from the Debian archive with mmdebstrap, so that the pipeline also runs air-gapped.

use anyhow::{bail, Context as _, Result};
use xshell::cmd;

use crate::context::Context;
use crate::docker;

/// The official image, used when the engine has it or can pull it.
/// Pinned by digest (the image index of every platform; refresh with `docker buildx imagetools inspect debian:trixie`),
/// and the same as the default of the Dockerfiles' `DEBIAN_BASE` (a test checks).
pub const OFFICIAL_BASE: &str = "debian:trixie@sha256:35b8ff74ead4880f22090b617372daff0ccae742eb5674455d542bef71ef1999";
/// What `bootstrap` builds locally; never confused with the official image.
pub const LOCAL_BASE: &str = "localhost/debian:trixie";
const SUITE: &str = "trixie";

/// The base image the Dockerfiles get as `DEBIAN_BASE`: `XTASK_DEBIAN_BASE` when set, the official
/// image when present or pullable, else the local one, bootstrapped when missing.
pub fn ensure_base(ctx: &Context) -> Result<String> {
    if let Ok(base) = std::env::var("XTASK_DEBIAN_BASE") {
        return Ok(base);
    }
    for base in [OFFICIAL_BASE, LOCAL_BASE] {
        if docker::has_image(&ctx.sh, base) {
            return Ok(base.to_owned());
        }
    }
    let sh = &ctx.sh;
    if cmd!(sh, "docker pull --quiet {OFFICIAL_BASE}").quiet().ignore_stdout().ignore_stderr().run().is_ok() {
        return Ok(OFFICIAL_BASE.to_owned());
    }
    eprintln!("xtask: {OFFICIAL_BASE} cannot be pulled; building {LOCAL_BASE} from the Debian archive");
    build_local_base(ctx, None)?;
    Ok(LOCAL_BASE.to_owned())
}

/// Builds `localhost/debian:trixie` from the Debian archive with mmdebstrap and loads it into the engine.
pub fn build_local_base(ctx: &Context, mirror: Option<&str>) -> Result<()> {
    let sh = &ctx.sh;
    if cmd!(sh, "mmdebstrap --version").quiet().ignore_stdout().ignore_stderr().run().is_err() {
        bail!("mmdebstrap is missing: it builds the Debian base without a registry (Debian: `apt-get install mmdebstrap`)");
    }
    let mirror = match mirror {
        Some(mirror) => mirror.to_owned(),
        None => host_mirror().context(
            "no Debian mirror found in the host's apt sources: pass `--mirror URL` or set XTASK_DEBIAN_MIRROR",
        )?,
    };
    let mirror = mirror.trim_end_matches('/');
    let security = format!("{mirror}-security");
    let sources = [
        format!("deb {mirror} {SUITE} main"),
        format!("deb {mirror} {SUITE}-updates main"),
        format!("deb {security} {SUITE}-security main"),
    ];
    let tarball = ctx.out.bootstrap_tarball(SUITE);
    std::fs::create_dir_all(tarball.parent().unwrap())?;
    let started = std::time::Instant::now();
    cmd!(sh, "mmdebstrap --quiet --variant=minbase --include=ca-certificates {SUITE} {tarball} {sources...}")
        .run()
        .with_context(|| format!("mmdebstrap {SUITE} from {mirror}"))?;
    import_root_filesystem(ctx, &tarball, LOCAL_BASE)?;
    std::fs::remove_file(&tarball)?;
    eprintln!("xtask: built {LOCAL_BASE} from {mirror} in {:.0?}", started.elapsed());
    Ok(())
}

/// What `docker import` sets on the imported image. Each `--change` value is a Dockerfile instruction
/// (`CMD ["bash"]`, with a space): Engine 20.10 refuses the `CMD=...` form that newer engines accept.
const IMPORT_CHANGES: [&str; 1] = [r#"CMD ["bash"]"#];

/// Loads a root filesystem tarball into the engine as the image `tag`.
fn import_root_filesystem(ctx: &Context, tarball: &std::path::Path, tag: &str) -> Result<()> {
    let sh = &ctx.sh;
    let changes = IMPORT_CHANGES.iter().flat_map(|change| ["--change", change]);
    cmd!(sh, "docker import {changes...} {tarball} {tag}")
        .quiet()
        .ignore_stdout()
        .run()
        .with_context(|| format!("loading the bootstrapped base into the engine as {tag} (docker import)"))
}

/// The Debian mirror of the host's apt sources (deb822 `URIs:` or one-line `deb` entries), if any.
pub fn host_mirror() -> Option<String> {
    if let Ok(mirror) = std::env::var("XTASK_DEBIAN_MIRROR") {
        return Some(mirror);
    }
    let mut texts = Vec::new();
    for path in ["/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"] {
        if let Ok(text) = std::fs::read_to_string(path) {
            texts.push(text);
        }
    }
    texts.iter().flat_map(|text| text.lines()).find_map(|line| {
        let line = line.trim();
        let entry = if let Some(uris) = line.strip_prefix("URIs:") {
            uris
        } else if line.starts_with("deb ") {
            line
        } else {
            return None;
        };
        let uri = entry.split_whitespace().find(|token| token.starts_with("http"))?;
        (uri.starts_with("http") && uri.trim_end_matches('/').ends_with("/debian")).then(|| uri.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real import path against the real engine: a one-file root filesystem, imported with the same
    /// arguments as the bootstrapped base into a throwaway tag, then inspected.
    #[test]
    fn a_root_filesystem_imports_with_the_bases_settings() {
        let ctx = Context::discover().unwrap();
        if let Err(error) = ctx.engine() {
            assert!(!Context::in_ci(), "CI is set but no Docker engine answers: {error:#}");
            return eprintln!("skipped: {error:#}");
        }
        let folder = tempfile::tempdir().unwrap();
        let tarball = folder.path().join("rootfs.tar");
        let mut archive = tar::Builder::new(std::fs::File::create(&tarball).unwrap());
        let mut header = tar::Header::new_gnu();
        let content = b"imported\n";
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        archive.append_data(&mut header, "etc/xtask-import-test", &content[..]).unwrap();
        archive.finish().unwrap();
        drop(archive);

        let tag = format!("xtask-test/import:{}", std::process::id());
        import_root_filesystem(&ctx, &tarball, &tag).unwrap();
        let cmd = ctx.read("docker", &["image", "inspect", "--format", "{{json .Config.Cmd}}", &tag]);
        let _ = ctx.read("docker", &["rmi", "--force", &tag]);
        assert_eq!(cmd.unwrap(), r#"["bash"]"#);
    }
}
