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
use xshell::cmd;

use crate::context::Context;
use crate::pinned_tools::{self, Tool};
use crate::stamp::{self, Stamp};

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
    let cache = ctx.out.trivy_cache();
    let db_dir = cache.join("db");
    let builder_version = pinned_tools::version(ctx, Tool::TrivyDb)?;
    let fingerprint = stamp::fingerprint_tree(&advisories, &format!("trivy-db {builder_version}"))
        .with_context(|| format!("the offline advisory data set {} is missing", advisories.display()))?;
    let stamp = Stamp::new(db_dir.join("advisories.sha256"), fingerprint);
    let built = db_dir.join("trivy.db").is_file() && db_dir.join("metadata.json").is_file();
    if built && stamp.is_current() {
        return Ok(cache);
    }

    let builder = pinned_tools::ensure(ctx, Tool::TrivyDb)?;
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
    stamp.record()?;
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
