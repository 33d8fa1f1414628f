//! The commit being built, as git describes it: what images are tagged with and what their labels say.

use anyhow::{Context as _, Result};
use xshell::{cmd, Shell};

#[derive(Debug, Clone)]
pub struct Revision {
    /// The full commit id.
    pub commit: String,
    /// What images are tagged with: 12 hex digits, and `-dirty` when the tree has uncommitted changes.
    pub tag: String,
    pub dirty: bool,
    /// The commit time in seconds since the epoch: every timestamp of a reproducible image (`SOURCE_DATE_EPOCH`).
    pub commit_time: u64,
    /// The commit time, RFC 3339 in UTC.
    pub created: String,
    /// `vX.Y.Z` tags on HEAD: a commit tagged so is a versioned release.
    pub version_tags: Vec<String>,
}

impl Revision {
    pub fn read(sh: &Shell) -> Result<Self> {
        let read = |args: &[&str]| {
            cmd!(sh, "git {args...}").quiet().read().with_context(|| format!("running `git {}`", args.join(" ")))
        };
        let commit =
            read(&["rev-parse", "HEAD"]).context("reading the git revision: is this a git checkout with a commit?")?;
        let dirty = !read(&["status", "--porcelain", "--untracked-files=normal"])?.is_empty();
        let short = &commit[..12.min(commit.len())];
        let tag = if dirty { format!("{short}-dirty") } else { short.to_owned() };
        let commit_time: u64 = read(&["log", "-1", "--format=%ct"])?.parse().context("reading the commit time")?;
        let created = jiff::Timestamp::from_second(commit_time as i64).context("the commit time")?.to_string();
        let version_tags: Vec<String> = read(&["tag", "--points-at", "HEAD"])?
            .lines()
            .map(str::trim)
            .filter(|tag| is_version(tag))
            .map(str::to_owned)
            .collect();
        Ok(Revision { commit, tag, dirty, commit_time, created, version_tags })
    }
}

/// `vX.Y.Z`, three numbers and nothing else.
pub fn is_version(tag: &str) -> bool {
    let Some(numbers) = tag.strip_prefix('v') else { return false };
    let parts: Vec<&str> = numbers.split('.').collect();
    parts.len() == 3 && parts.iter().all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::is_version;

    #[test]
    fn version_tags_are_exactly_vx_y_z() {
        assert!(is_version("v1.2.3") && is_version("v10.0.12"));
        for tag in ["1.2.3", "v1.2", "v1.2.3-rc1", "v1..3", "vx.y.z"] {
            assert!(!is_version(tag), "{tag}");
        }
    }
}
