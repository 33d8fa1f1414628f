//! The Trivy database mirrored into a registry of one's own (`--db-repository`, `XTASK_TRIVY_DB_REPOSITORY`): the
//! offline database built from `advisories/` is pushed as Trivy's OCI artifact to a distribution registry on
//! 127.0.0.1, and the gate scans the Flask 2.2.2 fixture with what Trivy downloads from there. A repository that
//! cannot be reached, holds nothing or holds something else fails in one line that names it. They need the registry,
//! trivy, trivy-db and (for the fixture) a Docker engine: outside CI they are skipped with the reason printed when
//! those are missing; under `CI=true` that is a failure.

mod common;

use std::path::Path;

use anyhow::Result;

use common::registry::LocalRegistry;
use common::require;
use xtask::context::Context;
use xtask::pinned_tools::{self, Tool};
use xtask::policy::{Policy, PolicyOverride};
use xtask::stages::scan::{scan_source, ScanOutcome};
use xtask::trivy;
use xtask::trivy_db::{self, Database};

/// A scan of `image` with `database` and the workspace policy: the gate's verdict, or why there was none.
fn scan(ctx: &Context, name: &str, image: &Path, database: Database) -> Result<ScanOutcome> {
    let policy = Policy::load(&ctx.root, &PolicyOverride::default()).expect("workspace scan policy");
    scan_source(ctx, name, &common::fixture::source(image), &policy, &database)
}

/// The error of a scan that must fail before anything is scanned, checked to be one line that names `repository`.
fn refusal(ctx: &Context, name: &str, repository: &str) -> String {
    let database = Database::mirror(repository).expect("a valid reference");
    let error = scan(ctx, name, Path::new("/nonexistent/image.tar"), database).expect_err("no database, no scan");
    let message = error.root_cause().to_string();
    eprintln!("{name}: {error:#}");
    assert!(!format!("{error:#}").contains('\n'), "{error:#}");
    assert!(message.contains(repository), "the message names {repository}: {message}");
    message
}

#[test]
fn with_the_database_mirrored_in_a_local_registry_flask_2_2_2_fails_naming_cve_2023_30861() {
    let ctx = Context::discover().expect("workspace");
    let Some(()) = require("the Docker engine", ctx.engine().map(drop)) else { return };
    for tool in [Tool::Trivy, Tool::TrivyDb, Tool::Registry] {
        let Some(_) = require(&format!("{tool:?}"), pinned_tools::ensure(&ctx, tool)) else { return };
    }
    let Some(archive) = require("the fixture image", common::fixture::build(&ctx, "mirror")) else { return };
    let registry = LocalRegistry::start(&ctx).expect("a registry on 127.0.0.1");

    // Published the way `cargo xtask mirror-db --to` does: the artifact written as an OCI layout and pushed.
    let repository = format!("{}/mirror/trivy-db", registry.address);
    let target = trivy_db::repository_reference(&repository).unwrap();
    assert_eq!(target.tag.as_deref(), Some("2"));
    let digest = trivy_db::publish(&ctx, &target).expect("publishing the offline database");
    let (served, bytes) = registry.manifest("mirror/trivy-db", "2").expect("the artifact under tag 2");
    assert_eq!(served, digest);
    let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(manifest["config"]["mediaType"], trivy_db::CONFIG_TYPE);
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    assert_eq!(layers[0]["mediaType"], trivy_db::LAYER_TYPE);
    assert_eq!(layers[0]["annotations"]["org.opencontainers.image.title"], "db.tar.gz");

    // Named without a tag, as a site would: Trivy's `2`.
    let outcome = scan(&ctx, "test-flask-2.2.2-mirrored", &archive, Database::mirror(&repository).unwrap())
        .expect("the scan runs");
    assert!(!outcome.passed, "{}", outcome.message);
    let flask: Vec<_> = outcome.decisive.iter().filter(|finding| finding.id == "CVE-2023-30861").collect();
    assert_eq!(flask.len(), 1, "{:?}", outcome.decisive);
    assert!(flask[0].package.eq_ignore_ascii_case("flask"), "{:?}", flask[0]);
    // Both advisories came through the mirror: the Debian one too.
    let report = trivy::read(&outcome.report).unwrap();
    let ids: Vec<&str> = report.vulnerabilities().map(|(_, vuln)| vuln.vulnerability_id.as_str()).collect();
    assert!(ids.contains(&"CVE-2025-15467"), "{ids:?}");

    // Trivy downloaded exactly that digest from the registry into a cache of its own.
    let db_dir = ctx.out.dir().join("trivy-mirror/db");
    let source = std::fs::read_to_string(db_dir.join("mirrored-from")).unwrap();
    assert_eq!(source, format!("{target}@{digest}"));
    let downloaded_at = || -> String {
        let metadata: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(db_dir.join("metadata.json")).unwrap()).unwrap();
        metadata["DownloadedAt"].as_str().unwrap_or_default().to_owned()
    };
    let downloaded = downloaded_at();
    assert!(!downloaded.is_empty() && !downloaded.starts_with("0001-"), "Trivy records its download: {downloaded}");

    // Scanned again, nothing is downloaded: the repository still holds the digest the cache came from.
    let again = scan(&ctx, "test-flask-2.2.2-mirrored", &archive, Database::mirror(&repository).unwrap());
    assert!(!again.expect("the second scan runs").passed);
    assert_eq!(downloaded_at(), downloaded);
}

#[test]
fn an_unreachable_database_repository_fails_in_one_line_naming_it() {
    let ctx = Context::discover().expect("workspace");
    let Some(_) = require("trivy", pinned_tools::ensure(&ctx, Tool::Trivy)) else { return };
    // A port nobody listens on: bound, then let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let repository = format!("127.0.0.1:{port}/mirror/trivy-db:2");
    let message = refusal(&ctx, "test-mirror-unreachable", &repository);
    assert!(message.contains("is unreachable"), "{message}");
}

#[test]
fn a_repository_without_a_database_fails_in_one_line_naming_it() {
    let ctx = Context::discover().expect("workspace");
    for tool in [Tool::Trivy, Tool::Registry] {
        let Some(_) = require(&format!("{tool:?}"), pinned_tools::ensure(&ctx, tool)) else { return };
    }
    let registry = LocalRegistry::start(&ctx).expect("a registry on 127.0.0.1");

    // Nothing there.
    let empty = format!("{}/mirror/nothing:2", registry.address);
    let message = refusal(&ctx, "test-mirror-empty", &empty);
    assert!(message.contains("holds no Trivy database"), "{message}");
    assert!(message.contains(&format!("mirror-db --to {empty}")), "{message}");

    // An image where the database should be: the registry has it, Trivy refuses it.
    let folder = tempfile::tempdir().unwrap();
    let image = common::layout::image(folder.path(), "not a database");
    xtask::registry::push_layout(&image.dir, &format!("{}/mirror/image", registry.address), &["2".to_owned()])
        .expect("pushing an image");
    let message = refusal(&ctx, "test-mirror-image", &format!("{}/mirror/image", registry.address));
    assert!(message.contains("Trivy could not download its database from"), "{message}");
    assert!(message.contains(trivy_db::LAYER_TYPE), "{message}");
}
