//! Which vulnerability database Trivy uses, and the offline one built from `advisories/`.
//!
//! Offline, the database is built with the Trivy DB builder (`trivy-db build`) from the advisory data set kept in
//! `advisories/` and handed to Trivy the way air-gapped sites do: as a prepared cache directory
//! (`out/trivy/db/trivy.db` + `metadata.json`) with `--cache-dir out/trivy --skip-db-update --offline-scan`.
//! It is rebuilt only when `advisories/` or the builder's pin changes.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context as _, Result};
use sha2::{Digest, Sha256};
use xshell::cmd;

use crate::context::Context;
use crate::tools::{self, Tool};

/// The builder's sources this data set feeds, with the folder each reads under `advisories/`.
const SOURCES: [(&str, &str); 2] = [("ghsa", "ghsa"), ("debian", "vuln-list-debian")];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Database {
    /// Built locally from `advisories/`: no network needed, the same answer every time.
    Offline,
    /// The public database, downloaded by Trivy into its own cache.
    Online,
}

impl Database {
    /// `XTASK_TRIVY_ONLINE=1` (or `0`) decides; otherwise GitHub Actions, which can download, scans online and
    /// everything else (this machine, air-gapped sites) offline.
    pub fn from_env() -> Database {
        match std::env::var("XTASK_TRIVY_ONLINE").as_deref() {
            Ok("1" | "true") => Database::Online,
            Ok(_) => Database::Offline,
            Err(_) if Context::is_github_actions() => Database::Online,
            Err(_) => Database::Offline,
        }
    }

    /// The arguments of every Trivy command that selects this database.
    pub fn trivy_args(self, ctx: &Context) -> Result<Vec<OsString>> {
        // A gate in CI must not phone home or nag about new releases.
        let mut args: Vec<OsString> = vec!["--skip-version-check".into(), "--disable-telemetry".into()];
        if self == Database::Offline {
            let cache = ensure_offline(ctx)?;
            args.extend(["--cache-dir".into(), cache.into_os_string()]);
            args.extend(["--skip-db-update", "--skip-java-db-update", "--offline-scan"].map(OsString::from));
        }
        Ok(args)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Database::Offline => "offline database built from advisories/",
            Database::Online => "public Trivy database",
        }
    }
}

/// Trivy's cache directory holding the database built from `advisories/`, (re)built when needed.
pub fn ensure_offline(ctx: &Context) -> Result<PathBuf> {
    // Tests scan on several threads; one build at a time.
    static BUILDING: Mutex<()> = Mutex::new(());
    let _building = BUILDING.lock().unwrap_or_else(|poison| poison.into_inner());

    let advisories = ctx.root.join("advisories");
    let cache = ctx.root.join("out").join("trivy");
    let db_dir = cache.join("db");
    let stamp = db_dir.join("advisories.sha256");
    let fingerprint = fingerprint(&advisories)?;
    let built = db_dir.join("trivy.db").is_file() && db_dir.join("metadata.json").is_file();
    if built && std::fs::read_to_string(&stamp).is_ok_and(|stamped| stamped == fingerprint) {
        return Ok(cache);
    }

    let builder = tools::ensure(ctx, Tool::TrivyDb)?;
    eprintln!("xtask: building the offline Trivy database from {}", advisories.display());
    let staging = cache.join("db-build");
    for dir in [&staging, &db_dir] {
        remove_dir_if_present(dir)?;
    }
    std::fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    let mut only_update = Vec::new();
    for (source, folder) in SOURCES {
        if advisories.join(folder).is_dir() {
            only_update.extend(["--only-update", source]);
        }
    }
    let sh = &ctx.sh;
    // The builder reads an `overrides` folder from its working directory when there is one: run it where there is none.
    let _dir = sh.push_dir(&staging);
    cmd!(sh, "{builder} build --cache-dir {advisories} --output-dir {staging} --update-interval 24h {only_update...}")
        .run()
        .context(
            "`trivy-db build` failed on advisories/ (its GHSA source also runs `go list std`, so Go must be on PATH)",
        )?;
    drop(_dir);
    std::fs::rename(&staging, &db_dir).with_context(|| format!("moving the database to {}", db_dir.display()))?;
    std::fs::write(&stamp, &fingerprint).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(cache)
}

fn remove_dir_if_present(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// SHA-256 over every file of the data set (relative path and content) and the builder's pin.
fn fingerprint(advisories: &Path) -> Result<String> {
    let mut files = Vec::new();
    collect_files(advisories, &mut files)
        .with_context(|| format!("reading {}: the offline advisory data set is missing", advisories.display()))?;
    files.sort();
    let mut hasher = Sha256::new();
    hasher.update(format!("trivy-db {}\n", Tool::TrivyDb.version()));
    for file in files {
        let relative = file.strip_prefix(advisories).unwrap_or(&file);
        hasher.update(relative.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update(std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?);
        hasher.update([0]);
    }
    Ok(hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect())
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
    fn the_fingerprint_follows_names_and_contents() {
        let dir = std::env::temp_dir().join(format!("xtask-fingerprint-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("ghsa")).unwrap();
        std::fs::write(dir.join("ghsa/a.json"), "{}").unwrap();
        let first = fingerprint(&dir).unwrap();
        assert_eq!(first, fingerprint(&dir).unwrap());
        std::fs::write(dir.join("ghsa/a.json"), "{ }").unwrap();
        let edited = fingerprint(&dir).unwrap();
        assert_ne!(first, edited);
        std::fs::rename(dir.join("ghsa/a.json"), dir.join("ghsa/b.json")).unwrap();
        assert_ne!(edited, fingerprint(&dir).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
