//! The Debian packages of the images' root filesystems, pinned and kept.
//!
//! An image lists its packages in `[rootfs] packages` of its `image.toml`; `cargo xtask lock` resolves each to the
//! newest version in trixie, trixie-updates and trixie-security (signatures checked with `gpgv`) and writes
//! `images/<name>/packages.lock` (`lock.rs`). The build stages the locked `.deb` files from a content-addressed
//! package cache (`cache.rs`), which fetches only what it lacks: from the mirror, else from snapshot.debian.org at
//! the date the lock was resolved. `index.rs` parses what the archive publishes; `archive.rs` reads it.

mod archive;
mod cache;
mod index;
mod lock;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::images::Image;

pub use archive::{read_archive, ArchiveState, Mirrors};
pub use cache::{fetch_locked, Fetched, PackageCache};
pub use lock::{Change, Lock, Locked, SuiteState};

/// The architecture locks are resolved for unless told otherwise (the Dockerfiles build x86-64 images).
pub const DEFAULT_ARCHITECTURE: &str = "amd64";
/// The architecture of packages that are the same on every architecture (time zones, CA certificates).
pub const ARCHITECTURE_ALL: &str = "all";

/// The two archives the suites come from, each with its own mirror and its own pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Archive {
    Debian,
    DebianSecurity,
}

impl Archive {
    /// The archive's name on snapshot.debian.org, and the last path segment of its usual mirror.
    pub fn name(self) -> &'static str {
        match self {
            Archive::Debian => "debian",
            Archive::DebianSecurity => "debian-security",
        }
    }
}

/// The suites a lock resolves against, in the order that wins ties between equal versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Suite {
    Trixie,
    TrixieUpdates,
    TrixieSecurity,
}

impl Suite {
    pub const ALL: [Suite; 3] = [Suite::Trixie, Suite::TrixieUpdates, Suite::TrixieSecurity];

    pub fn name(self) -> &'static str {
        match self {
            Suite::Trixie => "trixie",
            Suite::TrixieUpdates => "trixie-updates",
            Suite::TrixieSecurity => "trixie-security",
        }
    }

    pub fn archive(self) -> Archive {
        match self {
            Suite::Trixie | Suite::TrixieUpdates => Archive::Debian,
            Suite::TrixieSecurity => Archive::DebianSecurity,
        }
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A SHA-256 digest as the archive writes it: 64 lowercase hex digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256(String);

impl Sha256 {
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest as _;
        Self::from_digest(sha2::Sha256::digest(bytes))
    }

    pub fn from_digest(digest: impl AsRef<[u8]>) -> Self {
        Self(hex::encode(digest))
    }

    pub fn hex(&self) -> &str {
        &self.0
    }
}

impl FromStr for Sha256 {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            bail!("`{text}` is not a SHA-256 digest (64 lowercase hex digits)");
        }
        Ok(Self(text.to_owned()))
    }
}

impl TryFrom<String> for Sha256 {
    type Error = anyhow::Error;
    fn try_from(text: String) -> Result<Self> {
        text.parse()
    }
}

impl From<Sha256> for String {
    fn from(digest: Sha256) -> String {
        digest.0
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `images/<name>/packages.lock`.
pub fn lock_path(image: &Image) -> PathBuf {
    image.dir.join("packages.lock")
}

/// The image's lock, checked against its settings: every package `[rootfs] packages` lists is locked for every
/// architecture of the lock, and nothing else is. Every mismatch is one line naming the package and the fix.
pub fn read_lock(image: &Image) -> Result<Lock> {
    let path = lock_path(image);
    let name = &image.name;
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            bail!("image {name}: images/{name}/packages.lock is missing: run `cargo xtask lock {name}`")
        }
        Err(error) => return Err(error).with_context(|| format!("image {name}: reading {}", path.display())),
    };
    let lock = Lock::parse(&text).with_context(|| {
        format!("image {name}: images/{name}/packages.lock is invalid; `cargo xtask lock {name}` rewrites it")
    })?;
    lock.check(name, &image.settings.rootfs.packages)?;
    Ok(lock)
}

/// The image's locked packages for one architecture, each a verified `.deb` in the package cache: what the cache
/// lacks is fetched from the mirror (the host's, see [`Mirrors::for_host`]), else from snapshot.debian.org.
pub fn fetch(ctx: &Context, image: &Image, architecture: &str) -> Result<Vec<Fetched>> {
    if image.settings.rootfs.packages.is_empty() {
        return Ok(Vec::new());
    }
    let lock = read_lock(image)?;
    let cache = PackageCache::new(ctx.package_cache());
    fetch_locked(&cache, &image.name, &lock, architecture, &Mirrors::for_host(None, None))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn the_project_locks_agree_with_their_image_settings() {
        let ctx = Context::discover().unwrap();
        let images: Vec<&Image> = ctx.images().iter().filter(|i| !i.settings.rootfs.packages.is_empty()).collect();
        assert!(images.len() >= 2, "the released images list their Debian packages");
        for image in images {
            let lock = read_lock(image).unwrap();
            // Every platform an image is built for has its whole package list locked.
            for platform in crate::platform::Platform::ALL {
                let locked = lock.for_architecture(&image.name, platform.arch()).unwrap();
                assert_eq!(locked.len(), image.settings.rootfs.packages.len(), "{} on {platform}", image.name);
            }
        }
    }

    /// The real archive: every suite read and its signature checked, each project image resolved, and the smallest
    /// package fetched into a fresh cache. Skips without the network or gpgv, except under CI, where it must run.
    #[test]
    fn the_debian_archive_resolves_every_image_and_serves_its_files() {
        let mirrors = Mirrors::for_host(None, None);
        let reachable = reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap()
            .head(format!("{}/dists/trixie/InRelease", mirrors.debian))
            .send();
        if let Err(error) = reachable {
            assert!(!Context::in_ci(), "CI is set but the Debian mirror {} does not answer: {error}", mirrors.debian);
            return eprintln!("skipped: the Debian mirror {} does not answer: {error}", mirrors.debian);
        }
        let ctx = Context::discover().unwrap();
        let images: Vec<&Image> = ctx.images().iter().filter(|i| !i.settings.rootfs.packages.is_empty()).collect();
        let wanted: HashSet<&str> =
            images.iter().flat_map(|i| &i.settings.rootfs.packages).map(String::as_str).collect();
        let architectures = [DEFAULT_ARCHITECTURE.to_owned()];
        let archive = match read_archive(&ctx.sh, &mirrors, &architectures, &wanted) {
            Err(error) if !Context::in_ci() && error.to_string().contains("is missing") => {
                return eprintln!("skipped: {error:#}");
            }
            result => result.unwrap(),
        };
        let mut smallest: Option<(Lock, Locked)> = None;
        for image in images {
            let lock = archive.lock(&image.settings.rootfs.packages, &architectures).unwrap();
            lock.check(&image.name, &image.settings.rootfs.packages).unwrap();
            let package = lock.packages.iter().min_by_key(|p| p.size).unwrap().clone();
            if smallest.as_ref().is_none_or(|(_, small)| package.size < small.size) {
                smallest = Some((lock.clone(), package));
            }
        }
        let (mut lock, package) = smallest.unwrap();
        lock.packages = vec![package];
        let folder = tempfile::tempdir().unwrap();
        let cache = PackageCache::new(folder.path().to_owned());
        let fetched = fetch_locked(&cache, "test", &lock, DEFAULT_ARCHITECTURE, &mirrors).unwrap();
        assert_eq!(std::fs::metadata(&fetched[0].path).unwrap().len(), lock.packages[0].size);
    }
}
