//! The wheels an image installs, fetched on the host from its hash-pinned locks, so that the build itself needs
//! no network (and no CA bundle): `pip download` into a wheel cache kept with the package cache, then copied from
//! there for each image. Only wheels for the image's Python (CPython 3.13) and platform are taken.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use xshell::cmd;

use crate::context::Context;
use crate::files::remove_dir_if_present;
use crate::platform::Platform;
use crate::stamp::{self, Stamp};

/// The pip that installs the wheels inside the build, run from its own wheel.
pub const BUILD_REQUIREMENTS: &str = "images/common/build-requirements.lock";

/// The Python of every image: Debian 13's.
const PYTHON_VERSION: &str = "3.13";
const ABI: &str = "cp313";
/// Debian 13's glibc: any manylinux wheel up to it runs.
const GLIBC_MINOR: u32 = 41;

/// The wheels of `locks` for `platform`, in `out/wheels/<image>/<arch>/`, fetched again only when a lock changed.
pub fn stage(ctx: &Context, image: &str, locks: &[PathBuf], platform: Platform, cache: &Path) -> Result<PathBuf> {
    let destination = ctx.out.wheels(image, platform);
    let mut contents = Vec::new();
    for lock in locks {
        contents.push(std::fs::read(ctx.root.join(lock)).with_context(|| format!("reading {}", lock.display()))?);
    }
    let labels: Vec<String> = locks.iter().map(|lock| lock.display().to_string()).collect();
    let recipe = format!("{} cp{PYTHON_VERSION}", platform.arch());
    let parts = std::iter::once(("platform", recipe.as_bytes()))
        .chain(labels.iter().map(String::as_str).zip(contents.iter().map(Vec::as_slice)));
    let stamp = Stamp::new(destination.join(".locks"), stamp::fingerprint(parts));
    if stamp.is_current() {
        return Ok(destination);
    }
    remove_dir_if_present(&destination)?;
    std::fs::create_dir_all(&destination)?;
    let cache = cache.join("wheels");
    std::fs::create_dir_all(&cache)?;
    for lock in locks {
        let lock = ctx.root.join(lock);
        // From the cache alone first; PyPI only for what the cache lacks.
        if download(ctx, &lock, platform, Source::Cache(&cache), &destination).is_err() {
            download(ctx, &lock, platform, Source::Index, &cache)
                .with_context(|| format!("fetching the wheels of {} from PyPI", lock.display()))?;
            download(ctx, &lock, platform, Source::Cache(&cache), &destination)?;
        }
    }
    stamp.record()?;
    Ok(destination)
}

enum Source<'a> {
    Cache(&'a Path),
    Index,
}

fn download(ctx: &Context, lock: &Path, platform: Platform, source: Source, into: &Path) -> Result<()> {
    let sh = &ctx.sh;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let mut args: Vec<String> = vec![
        "--no-deps".into(),
        "--require-hashes".into(),
        "--only-binary=:all:".into(),
        "--implementation=cp".into(),
        format!("--python-version={PYTHON_VERSION}"),
        format!("--abi={ABI}"),
    ];
    args.extend(platform_tags(platform).into_iter().map(|tag| format!("--platform={tag}")));
    match source {
        Source::Cache(cache) => args.extend(["--no-index".into(), format!("--find-links={}", cache.display())]),
        Source::Index => {
            if let Some(bundle) = crate::process::host_ca_bundle() {
                // Behind a TLS-intercepting proxy pip trusts what the host trusts.
                args.push(format!("--cert={}", bundle.display()));
            }
        }
    }
    let quiet = matches!(source, Source::Cache(_));
    let command = cmd!(sh, "{python} -m pip download --disable-pip-version-check --dest {into} -r {lock} {args...}");
    let command = if quiet { command.quiet().ignore_stdout().ignore_stderr() } else { command };
    command.run().with_context(|| format!("`pip download -r {}` failed", lock.display()))
}

/// The manylinux tags of Debian 13 on `platform`, newest first: pip expands only the legacy names itself.
fn platform_tags(platform: Platform) -> Vec<String> {
    let machine = platform.machine();
    let mut tags: Vec<String> =
        (17..=GLIBC_MINOR).rev().map(|minor| format!("manylinux_2_{minor}_{machine}")).collect();
    tags.push(format!("manylinux2014_{machine}"));
    tags
}

#[cfg(test)]
mod tests {
    use super::platform_tags;
    use crate::platform::Platform;

    #[test]
    fn every_manylinux_tag_up_to_debian_13s_glibc() {
        let tags = platform_tags(Platform::Amd64);
        assert_eq!(tags.first().map(String::as_str), Some("manylinux_2_41_x86_64"));
        assert!(
            tags.contains(&"manylinux_2_17_x86_64".to_owned()) && tags.contains(&"manylinux2014_x86_64".to_owned())
        );
        assert!(platform_tags(Platform::Arm64).iter().all(|tag| tag.ends_with("aarch64")));
    }
}
