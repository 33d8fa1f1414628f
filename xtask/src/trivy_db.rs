//! Which vulnerability database Trivy uses: the offline one built from `advisories/`, the public one, or one mirrored
//! into a registry of one's own; and the offline one as the OCI artifact such a mirror holds.
//!
//! Offline, the database is built with the Trivy DB builder (`trivy-db build`) from the advisory data set kept in
//! `advisories/` and handed to Trivy the way air-gapped sites do: as a prepared cache directory
//! (`out/trivy/db/trivy.db` + `metadata.json`) with `--cache-dir out/trivy --skip-db-update --offline-scan`.
//! It is rebuilt only when `advisories/` or the builder's pin changes.
//!
//! Mirrored, the registry client first resolves the repository's tag (Trivy's `2` unless one is given) to a digest,
//! so that a repository that cannot be reached or holds nothing is named in one line before Trivy runs; Trivy then
//! downloads exactly that digest (`trivy image --download-db-only --db-repository HOST/PATH@DIGEST`) into a cache of
//! its own, `out/trivy-mirror/`, and scans from there like from the offline one. It downloads again only when the
//! repository holds another digest than the cache came from (stamp `out/trivy-mirror/db/mirrored-from`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context as _, Result};
use xshell::cmd;

use crate::context::Context;
use crate::files::remove_dir_if_present;
use crate::oci::{self, LayoutWriter};
use crate::pinned_tools::{self, Tool};
use crate::registry::{self, Reference};
use crate::stamp::{self, Stamp};

/// The builder's sources this data set feeds, with the folder each reads under `advisories/`.
const SOURCES: [(&str, &str); 2] = [("ghsa", "ghsa"), ("debian", "vuln-list-debian")];

/// The database's schema version: the tag Trivy pulls from a repository that names none.
pub const SCHEMA_TAG: &str = "2";
/// Names the repository of a mirrored database (`--db-repository` on `scan` and `ci` wins over it).
pub const REPOSITORY_VARIABLE: &str = "XTASK_TRIVY_DB_REPOSITORY";
/// Where Aqua publishes the database: what a site mirrors.
pub const PUBLIC_REPOSITORY: &str = "ghcr.io/aquasecurity/trivy-db:2";
/// The artifact Trivy accepts: exactly one layer of this type, named by the title annotation (Trivy's
/// `pkg/db/db.go` and `pkg/oci/artifact.go`), with the config type Aqua publishes it with.
pub const LAYER_TYPE: &str = "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip";
pub const CONFIG_TYPE: &str = "application/vnd.aquasec.trivy.config.v1+json";
const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Database {
    /// Built locally from `advisories/`: no network needed, the same answer every time.
    Offline,
    /// The public database, downloaded by Trivy into its own cache.
    Online,
    /// A copy of the database in a registry of one's own, as air-gapped sites keep the public one.
    Mirror(Reference),
}

impl Database {
    /// `XTASK_TRIVY_DB_REPOSITORY` names a mirror; otherwise `XTASK_TRIVY_ONLINE=1` (or `0`) decides; otherwise
    /// GitHub Actions, which can download, scans online and everything else (this machine, air-gapped sites) offline.
    pub fn from_env() -> Result<Database> {
        Database::select(None)
    }

    /// The mirror `--db-repository` names when given, else [`Database::from_env`].
    pub fn select(db_repository: Option<&str>) -> Result<Database> {
        select_from(db_repository, |name| std::env::var(name).ok(), Context::is_github_actions())
    }

    /// The database mirrored at `HOST[:PORT]/PATH[:TAG]` (or `@sha256:DIGEST`); without a tag, Trivy's `2`.
    pub fn mirror(repository: &str) -> Result<Database> {
        repository_reference(repository).map(Database::Mirror)
    }

    /// The arguments of every Trivy command that selects this database.
    pub fn trivy_args(&self, ctx: &Context) -> Result<Vec<OsString>> {
        // A gate in CI must not phone home or nag about new releases.
        let mut args: Vec<OsString> = vec!["--skip-version-check".into(), "--disable-telemetry".into()];
        let prepared = match self {
            Database::Offline => ensure_offline(ctx)?,
            Database::Mirror(reference) => ensure_mirror(ctx, reference)?,
            Database::Online => return Ok(args),
        };
        args.extend(["--cache-dir".into(), prepared.into_os_string()]);
        args.extend(["--skip-db-update", "--skip-java-db-update", "--offline-scan"].map(OsString::from));
        Ok(args)
    }

    pub fn describe(&self) -> String {
        match self {
            Database::Offline => "offline database built from advisories/".to_owned(),
            Database::Online => "public Trivy database".to_owned(),
            Database::Mirror(reference) => format!("Trivy database mirrored at {reference}"),
        }
    }
}

/// [`Database::select`] with the environment and the runner as arguments.
fn select_from(flag: Option<&str>, variable: impl Fn(&str) -> Option<String>, github: bool) -> Result<Database> {
    if let Some(repository) = flag {
        return Database::mirror(repository).map_err(|error| anyhow::anyhow!("--db-repository: {error}"));
    }
    if let Some(repository) = variable(REPOSITORY_VARIABLE).filter(|value| !value.trim().is_empty()) {
        return Database::mirror(&repository).map_err(|error| anyhow::anyhow!("{REPOSITORY_VARIABLE}: {error}"));
    }
    Ok(match variable("XTASK_TRIVY_ONLINE").as_deref() {
        Some("1" | "true") => Database::Online,
        Some(_) => Database::Offline,
        None if github => Database::Online,
        None => Database::Offline,
    })
}

/// A database repository as Trivy reads it: `HOST[:PORT]/PATH`, tag `2` unless a tag or digest is given.
pub fn repository_reference(text: &str) -> Result<Reference> {
    let text = text.trim();
    let name = text.rsplit('/').next().unwrap_or(text);
    if name.contains(':') || name.contains('@') || !text.contains('/') {
        return Reference::parse(text);
    }
    let tagged = format!("{text}:{SCHEMA_TAG}");
    // An error names what was written, not the tag added to it.
    Reference::parse(&tagged)
        .map_err(|error| anyhow::anyhow!("{}", error.to_string().replace(&format!("`{tagged}`"), &format!("`{text}`"))))
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

/// Trivy's cache directory holding the database mirrored at `reference`, downloaded by Trivy when the repository now
/// holds another digest than the cache came from. Unreachable, empty or not a database: a one-line error naming it.
pub fn ensure_mirror(ctx: &Context, reference: &Reference) -> Result<PathBuf> {
    static DOWNLOADING: Mutex<()> = Mutex::new(());
    let _downloading = DOWNLOADING.lock().unwrap_or_else(|poison| poison.into_inner());

    let how_to_mirror = format!(
        "mirror one with `oras cp {PUBLIC_REPOSITORY} {reference}`, or publish the offline one with \
         `cargo xtask mirror-db --to {reference}`"
    );
    let digest = registry::resolve_digest(reference).map_err(|error| {
        let error = format!("{error:#}");
        // The registry client's words for a tag or repository that is not there.
        if error.contains("does not exist in registry") {
            anyhow::anyhow!(
                "{reference} holds no Trivy database (no such repository or tag in registry {}): {how_to_mirror}",
                reference.registry
            )
        } else {
            anyhow::anyhow!("the Trivy database repository {reference}: {error}")
        }
    })?;
    let cache = mirror_cache(ctx);
    let db_dir = cache.join("db");
    let source = if reference.digest.is_some() { reference.to_string() } else { format!("{reference}@{digest}") };
    let stamp = Stamp::new(db_dir.join("mirrored-from"), source);
    let present = db_dir.join("trivy.db").is_file() && db_dir.join("metadata.json").is_file();
    if present && stamp.is_current() {
        return Ok(cache);
    }

    let trivy = pinned_tools::ensure(ctx, Tool::Trivy)?;
    eprintln!("xtask: downloading the Trivy database {reference} ({digest}) into {}", cache.display());
    remove_dir_if_present(&db_dir)?;
    // Exactly the digest just resolved, so that the stamp says what the cache holds.
    let pinned = reference.pinned(&digest);
    let sh = &ctx.sh;
    let output = cmd!(
        sh,
        "{trivy} image --download-db-only --db-repository {pinned} --cache-dir {cache} --skip-java-db-update
         --no-progress --skip-version-check --disable-telemetry"
    )
    .ignore_status()
    .output()
    .context("running trivy to download its database")?;
    let log = String::from_utf8_lossy(&output.stderr);
    eprint!("{log}");
    if !output.status.success() {
        bail!(
            "Trivy could not download its database from {reference} ({}): the repository must hold one layer of \
             {LAYER_TYPE} titled db.tar.gz; {how_to_mirror}",
            trivy_failure(&log)
        );
    }
    stamp.record()?;
    Ok(cache)
}

/// Why Trivy failed, in one line: its fatal log line and what follows it, else its last line.
fn trivy_failure(log: &str) -> String {
    let lines: Vec<&str> = log.lines().filter(|line| !line.trim().is_empty()).collect();
    let from = lines.iter().rposition(|line| line.contains("FATAL")).unwrap_or(lines.len().saturating_sub(1));
    let text = lines.get(from..).unwrap_or_default().join(" ");
    let text = text.split_once("Fatal error").map_or(text.as_str(), |(_, error)| error);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        "it printed nothing".to_owned()
    } else {
        text
    }
}

/// Trivy's cache of a mirrored database, apart from the offline one: `out/trivy-mirror/`.
fn mirror_cache(ctx: &Context) -> PathBuf {
    ctx.out.dir().join("trivy-mirror")
}

/// The offline database as the OCI artifact Trivy downloads with `--db-repository`, written as an OCI image layout
/// (`out/trivy-db-artifact/`, its `index.json` naming the manifest as `2`) for `registry::push_layout`.
pub fn write_artifact_layout(ctx: &Context) -> Result<PathBuf> {
    let db_dir = ensure_offline(ctx)?.join("db");
    artifact_layout(&db_dir, &ctx.out.dir().join("trivy-db-artifact"))
}

/// Publishes the offline database to `target` (`HOST[:PORT]/PATH:TAG`) as Trivy's OCI artifact; returns its digest.
pub fn publish(ctx: &Context, target: &Reference) -> Result<String> {
    let Some(tag) = target.tag.clone().filter(|_| target.digest.is_none()) else {
        bail!("{target}: publish the database to a tag, not to a digest");
    };
    let layout = write_artifact_layout(ctx)?;
    registry::push_layout(&layout, &format!("{}/{}", target.registry, target.repository), &[tag])
        .with_context(|| format!("publishing the offline Trivy database to {target}"))
}

/// The artifact of the database in `db_dir` (`trivy.db`, `metadata.json`), as Aqua publishes it: the empty JSON
/// config of Trivy's type and one gzip tarball layer titled `db.tar.gz`, same bytes for the same database.
fn artifact_layout(db_dir: &Path, layout: &Path) -> Result<PathBuf> {
    let mut tarball = tar::Builder::new(Vec::new());
    for name in ["trivy.db", "metadata.json"] {
        let path = db_dir.join(name);
        let bytes = std::fs::read(&path).with_context(|| {
            format!("reading {} (build the offline database with `cargo xtask scan`)", path.display())
        })?;
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        tarball.append_data(&mut header, name, bytes.as_slice())?;
    }
    let layer = oci::gzip(&tarball.into_inner()?)?;
    remove_dir_if_present(layout)?;
    let writer = LayoutWriter::create(layout)?;
    let config = writer.blob(CONFIG_TYPE, b"{}")?;
    let mut layer = writer.blob(LAYER_TYPE, &layer)?;
    layer.annotations.insert(TITLE_ANNOTATION.to_owned(), "db.tar.gz".to_owned());
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": MANIFEST_TYPE, "config": config, "layers": [layer],
    });
    let manifest = writer.blob(MANIFEST_TYPE, &oci::canonical_json(&manifest)?)?;
    writer.finish(manifest, SCHEMA_TAG, &[]).with_context(|| format!("writing the OCI layout {}", layout.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_without_a_tag_gets_the_schema_tag_trivy_would_use() {
        let mirror = |text: &str| match Database::mirror(text).unwrap() {
            Database::Mirror(reference) => reference.to_string(),
            other => panic!("{other:?}"),
        };
        assert_eq!(mirror("127.0.0.1:5000/mirror/trivy-db"), "127.0.0.1:5000/mirror/trivy-db:2");
        assert_eq!(mirror(" registry.local/aquasecurity/trivy-db:7 "), "registry.local/aquasecurity/trivy-db:7");
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(mirror(&format!("localhost:5000/trivy-db@{digest}")), format!("localhost:5000/trivy-db@{digest}"));
        for (text, complaint) in [("trivy-db", "names no registry"), ("localhost:5000", "names no registry")] {
            let error = Database::mirror(text).unwrap_err().to_string();
            assert!(error.contains(complaint), "{text}: {error}");
        }
    }

    #[test]
    fn the_flag_wins_over_the_environment_which_wins_over_the_defaults() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(key, _)| *key == name).map(|(_, value)| value.to_string())
        };
        let mirror = |text: &str| Database::mirror(text).unwrap();
        let both = env(&[(REPOSITORY_VARIABLE, "127.0.0.1:5001/env/trivy-db"), ("XTASK_TRIVY_ONLINE", "1")]);
        let flag = Some("127.0.0.1:5000/flag/trivy-db");
        assert_eq!(select_from(flag, both, false).unwrap(), mirror("127.0.0.1:5000/flag/trivy-db:2"));
        assert_eq!(select_from(None, both, false).unwrap(), mirror("127.0.0.1:5001/env/trivy-db:2"));
        assert_eq!(select_from(None, env(&[(REPOSITORY_VARIABLE, " ")]), false).unwrap(), Database::Offline);
        assert_eq!(select_from(None, env(&[("XTASK_TRIVY_ONLINE", "1")]), false).unwrap(), Database::Online);
        assert_eq!(select_from(None, env(&[("XTASK_TRIVY_ONLINE", "0")]), true).unwrap(), Database::Offline);
        assert_eq!(select_from(None, env(&[]), true).unwrap(), Database::Online);
        let error = select_from(None, env(&[(REPOSITORY_VARIABLE, "trivy-db")]), false).unwrap_err().to_string();
        assert!(error.starts_with(REPOSITORY_VARIABLE) && error.contains("names no registry"), "{error}");
        let error = select_from(Some("Mirror.local/Trivy"), env(&[]), false).unwrap_err().to_string();
        assert!(error.starts_with("--db-repository: ") && error.contains("lowercase"), "{error}");
    }

    #[test]
    fn the_artifact_is_one_titled_layer_holding_the_database_and_its_metadata() {
        let folder = tempfile::tempdir().unwrap();
        let db_dir = folder.path().join("db");
        std::fs::create_dir_all(&db_dir).unwrap();
        std::fs::write(db_dir.join("trivy.db"), b"bolt").unwrap();
        std::fs::write(db_dir.join("metadata.json"), br#"{"Version":2}"#).unwrap();
        let layout = artifact_layout(&db_dir, &folder.path().join("oci")).unwrap();
        let read_json =
            |path: PathBuf| -> serde_json::Value { serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap() };
        let blob = |digest: &serde_json::Value| layout.join("blobs/sha256").join(&digest.as_str().unwrap()[7..]);
        let index = read_json(layout.join("index.json"));
        assert_eq!(index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"], "2");
        let manifest = read_json(blob(&index["manifests"][0]["digest"]));
        assert_eq!(manifest["mediaType"], MANIFEST_TYPE);
        assert_eq!(manifest["config"]["mediaType"], CONFIG_TYPE);
        assert_eq!(std::fs::read(blob(&manifest["config"]["digest"])).unwrap(), b"{}");
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1, "{manifest}");
        assert_eq!(layers[0]["mediaType"], LAYER_TYPE);
        assert_eq!(layers[0]["annotations"][TITLE_ANNOTATION], "db.tar.gz");
        let gzip = std::fs::File::open(blob(&layers[0]["digest"])).unwrap();
        let mut tarball = tar::Archive::new(flate2::read::GzDecoder::new(gzip));
        let names: Vec<String> =
            tarball.entries().unwrap().map(|entry| entry.unwrap().path().unwrap().display().to_string()).collect();
        assert_eq!(names, ["trivy.db", "metadata.json"]);
        // Written again, the same bytes: a mirror of an unchanged database keeps its digest.
        let again = artifact_layout(&db_dir, &folder.path().join("oci")).unwrap();
        assert_eq!(read_json(again.join("index.json")), index);
    }

    #[test]
    fn trivys_failure_is_told_in_one_line() {
        let log = "2026-01-01T00:00:00Z\tINFO\tDownloading vulnerability DB...\n\
                   2026-01-01T00:00:01Z\tFATAL\tFatal error\trun error: init error: DB error: failed to download \
                   vulnerability DB: annotation org.opencontainers.image.title is missing\n";
        let failure = trivy_failure(log);
        assert!(failure.starts_with("run error: init error"), "{failure}");
        assert!(failure.ends_with("annotation org.opencontainers.image.title is missing"), "{failure}");
        assert_eq!(trivy_failure("just this\n"), "just this");
        assert_eq!(trivy_failure(""), "it printed nothing");
    }
}
