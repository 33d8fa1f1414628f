//! Reading the Debian archive from a mirror: each suite's `InRelease`, its signature checked with `gpgv` against
//! Debian's keyring, then the `Packages` index it names, checked against the SHA-256 the signed part gives.

use std::collections::HashSet;
use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use xshell::{cmd, Shell};

use super::index::{Release, SuiteEntries};
use super::lock::{Lock, SuiteState};
use super::{Archive, Sha256, Suite};

/// The keys the Debian archive signs its suites with (the `debian-archive-keyring` package).
pub const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
const DEFAULT_SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";
const SNAPSHOT: &str = "https://snapshot.debian.org";

/// Where the archives are read from.
#[derive(Debug, Clone)]
pub struct Mirrors {
    pub debian: String,
    pub security: String,
    /// snapshot.debian.org, or what stands in for it: `<snapshot>/archive/<archive>/<date>/<path>`.
    pub snapshot: String,
}

impl Mirrors {
    /// The given mirrors, else the Debian mirror of the host's apt sources (or `XTASK_DEBIAN_MIRROR`) and
    /// `XTASK_DEBIAN_SECURITY_MIRROR`, else deb.debian.org.
    pub fn for_host(debian: Option<&str>, security: Option<&str>) -> Self {
        let debian = debian
            .map(str::to_owned)
            .or_else(crate::debian_base::host_mirror)
            .unwrap_or_else(|| DEFAULT_MIRROR.to_owned());
        let security = security
            .map(str::to_owned)
            .or_else(|| std::env::var("XTASK_DEBIAN_SECURITY_MIRROR").ok())
            .unwrap_or_else(|| DEFAULT_SECURITY_MIRROR.to_owned());
        Self {
            debian: debian.trim_end_matches('/').to_owned(),
            security: security.trim_end_matches('/').to_owned(),
            snapshot: SNAPSHOT.to_owned(),
        }
    }

    pub fn of(&self, archive: Archive) -> &str {
        match archive {
            Archive::Debian => &self.debian,
            Archive::DebianSecurity => &self.security,
        }
    }
}

/// The suites as read once: their signed dates and, per architecture, the entries of the wanted packages.
pub struct ArchiveState {
    pub suites: Vec<SuiteState>,
    indexes: Vec<(String, Vec<SuiteEntries>)>,
}

impl ArchiveState {
    /// The lock of `packages` for `architectures` (each one read).
    pub fn lock(&self, packages: &[String], architectures: &[String]) -> Result<Lock> {
        let mut indexes = Vec::new();
        for architecture in architectures {
            let (_, entries) = self
                .indexes
                .iter()
                .find(|(read, _)| read == architecture)
                .with_context(|| format!("the archive was not read for {architecture}"))?;
            indexes.push((architecture.as_str(), entries.as_slice()));
        }
        Lock::resolve(self.suites.clone(), &indexes, packages)
    }
}

/// Reads every suite for each architecture, keeping the entries of the `wanted` packages.
pub fn read_archive(
    sh: &Shell,
    mirrors: &Mirrors,
    architectures: &[String],
    wanted: &HashSet<&str>,
) -> Result<ArchiveState> {
    require_gpgv(sh)?;
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(300))
        .build()?;
    let mut suites = Vec::new();
    let mut indexes: Vec<(String, Vec<_>)> = architectures.iter().map(|a| (a.clone(), Vec::new())).collect();
    for suite in Suite::ALL {
        let base = format!("{}/dists/{}", mirrors.of(suite.archive()), suite.name());
        let release = read_release(sh, &client, &base, suite).with_context(|| format!("suite {suite} from {base}"))?;
        for (architecture, per_suite) in &mut indexes {
            let (path, size, sha256) =
                release.packages_index(architecture).with_context(|| format!("suite {suite}"))?;
            // By hash, the file cannot change between reading the InRelease and it while the mirror updates.
            let url = if release.acquire_by_hash {
                format!("{base}/{}/by-hash/SHA256/{sha256}", path.rsplit_once('/').map_or("", |(dir, _)| dir))
            } else {
                format!("{base}/{path}")
            };
            let describe = || format!("suite {suite}: the index {path} ({url})");
            let compressed = download(&client, &url, size, sha256).with_context(describe)?;
            let text = decompress(path, &compressed).with_context(describe)?;
            let entries = super::index::read_packages(&text, wanted).with_context(describe)?;
            per_suite.push((suite, entries));
        }
        suites.push(SuiteState { suite, archive: suite.archive(), date: release.date });
    }
    Ok(ArchiveState { suites, indexes })
}

fn require_gpgv(sh: &Shell) -> Result<()> {
    if !Path::new(KEYRING).is_file() {
        bail!("{KEYRING} is missing: it holds the keys the Debian archive signs with (Debian: `apt-get install debian-archive-keyring`)");
    }
    if cmd!(sh, "gpgv --version").quiet().ignore_stdout().ignore_stderr().run().is_err() {
        bail!("gpgv is missing: it checks the Debian archive's signatures (Debian: `apt-get install gpgv`)");
    }
    Ok(())
}

/// The suite's `InRelease`, its signature checked; only what the signature covers is parsed.
fn read_release(sh: &Shell, client: &reqwest::blocking::Client, base: &str, suite: Suite) -> Result<Release> {
    let url = format!("{base}/InRelease");
    let signed = get(client, &url)?.bytes().with_context(|| format!("reading {url}"))?;
    let output =
        cmd!(sh, "gpgv --keyring {KEYRING} --output - -").stdin(signed.as_ref()).quiet().ignore_status().output()?;
    if !output.status.success() {
        let report = String::from_utf8_lossy(&output.stderr).trim().replace('\n', "; ");
        bail!("gpgv rejects the signature of {url} against {KEYRING}: {report}");
    }
    let text = String::from_utf8(output.stdout).context("the InRelease is not UTF-8")?;
    let release = Release::parse(&text).with_context(|| format!("reading {url}"))?;
    if release.codename != suite.name() {
        bail!("{url} is the release of {}, not {suite}", release.codename);
    }
    if let Some(valid_until) = release.valid_until.filter(|until| *until < jiff::Timestamp::now()) {
        bail!("{url} expired on {valid_until}: the mirror is stale (or replays an old state); use another mirror");
    }
    Ok(release)
}

fn get(client: &reqwest::blocking::Client, url: &str) -> Result<reqwest::blocking::Response> {
    let response = client.get(url).send().map_err(|e| anyhow::anyhow!("{url}: {}", crate::process::error_chain(&e)))?;
    if !response.status().is_success() {
        bail!("{url}: {}", response.status());
    }
    Ok(response)
}

/// The file at `url`, which must have the size and SHA-256 the signed release gives.
fn download(client: &reqwest::blocking::Client, url: &str, size: u64, sha256: &Sha256) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    get(client, url)?.take(size + 1).read_to_end(&mut bytes).with_context(|| format!("reading {url}"))?;
    let actual = Sha256::of(&bytes);
    if bytes.len() as u64 != size || &actual != sha256 {
        bail!(
            "{url} is not what the signed release says: {} bytes with SHA-256 {actual}, not {size} bytes with {sha256}",
            bytes.len()
        );
    }
    Ok(bytes)
}

fn decompress(path: &str, bytes: &[u8]) -> Result<String> {
    let mut text = String::new();
    if path.ends_with(".xz") {
        liblzma::read::XzDecoder::new(bytes).read_to_string(&mut text)?;
    } else {
        flate2::read::GzDecoder::new(bytes).read_to_string(&mut text)?;
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_index_compressions_read() {
        let text = "Package: a\n";
        let mut xz = Vec::new();
        liblzma::read::XzEncoder::new(text.as_bytes(), 6).read_to_end(&mut xz).unwrap();
        let mut gz = Vec::new();
        flate2::read::GzEncoder::new(text.as_bytes(), flate2::Compression::default()).read_to_end(&mut gz).unwrap();
        assert_eq!(decompress("main/binary-amd64/Packages.xz", &xz).unwrap(), text);
        assert_eq!(decompress("main/binary-amd64/Packages.gz", &gz).unwrap(), text);
    }

    #[test]
    fn the_mirrors_given_win_and_lose_their_trailing_slash() {
        let mirrors = Mirrors::for_host(Some("http://mirror.example/debian/"), Some("http://mirror.example/sec"));
        assert_eq!(mirrors.of(Archive::Debian), "http://mirror.example/debian");
        assert_eq!(mirrors.of(Archive::DebianSecurity), "http://mirror.example/sec");
    }
}
