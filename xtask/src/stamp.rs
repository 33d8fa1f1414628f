//! "Rebuild when this changes": a stamp file beside an output remembers the fingerprint of what it was made from.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use sha2::{Digest, Sha256};

pub struct Stamp {
    path: PathBuf,
    fingerprint: String,
}

impl Stamp {
    pub fn new(path: PathBuf, fingerprint: impl Into<String>) -> Self {
        Stamp { path, fingerprint: fingerprint.into() }
    }

    /// Whether the output was made from exactly this fingerprint.
    pub fn is_current(&self) -> bool {
        std::fs::read_to_string(&self.path).is_ok_and(|recorded| recorded == self.fingerprint)
    }

    /// Records the fingerprint, once the output is made.
    pub fn record(&self) -> Result<()> {
        if let Some(folder) = self.path.parent() {
            std::fs::create_dir_all(folder).with_context(|| format!("creating {}", folder.display()))?;
        }
        std::fs::write(&self.path, &self.fingerprint).with_context(|| format!("writing {}", self.path.display()))
    }
}

/// SHA-256 over labelled parts (a recipe line, a file's content): the fingerprint of a stamp.
pub fn fingerprint<'a>(parts: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut hasher = Sha256::new();
    for (label, content) in parts {
        hasher.update(label.as_bytes());
        hasher.update([0]);
        hasher.update(content);
        hasher.update([0]);
    }
    hex::encode(hasher.finalize())
}

/// The fingerprint of every file under `dir` (relative path and content) and of `extra`.
pub fn fingerprint_tree(dir: &Path, extra: &str) -> Result<String> {
    let mut files = Vec::new();
    collect_files(dir, &mut files).with_context(|| format!("reading {}", dir.display()))?;
    files.sort();
    let mut parts = vec![(extra.to_owned(), Vec::new())];
    for file in files {
        let relative = file.strip_prefix(dir).unwrap_or(&file).to_string_lossy().into_owned();
        let content = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        parts.push((relative, content));
    }
    Ok(fingerprint(parts.iter().map(|(label, content)| (label.as_str(), content.as_slice()))))
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(&path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_is_current_only_for_the_fingerprint_it_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/.stamp");
        let stamp = Stamp::new(path.clone(), "one");
        assert!(!stamp.is_current());
        stamp.record().unwrap();
        assert!(stamp.is_current());
        assert!(!Stamp::new(path, "two").is_current());
    }

    #[test]
    fn the_tree_fingerprint_follows_names_and_contents() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("ghsa")).unwrap();
        std::fs::write(dir.path().join("ghsa/a.json"), "{}").unwrap();
        let first = fingerprint_tree(dir.path(), "v1").unwrap();
        assert_eq!(first, fingerprint_tree(dir.path(), "v1").unwrap());
        assert_ne!(first, fingerprint_tree(dir.path(), "v2").unwrap());
        std::fs::write(dir.path().join("ghsa/a.json"), "{ }").unwrap();
        let edited = fingerprint_tree(dir.path(), "v1").unwrap();
        assert_ne!(first, edited);
        std::fs::rename(dir.path().join("ghsa/a.json"), dir.path().join("ghsa/b.json")).unwrap();
        assert_ne!(edited, fingerprint_tree(dir.path(), "v1").unwrap());
    }
}
