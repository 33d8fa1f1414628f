//! The scan gate against real Trivy and syft, on a tiny image pinned to Flask 2.2.2 (`tests/fixtures/flask-2.2.2`),
//! with the offline database built from `advisories/`. They need Go (or the tools) and a Docker engine: outside CI
//! they are skipped with the reason printed when those are missing; under `CI=true` that is a failure.

mod common;

use std::path::PathBuf;
use std::sync::Mutex;

use jiff::civil::Date;
use xtask::context::Context;

use common::require;
use xtask::pinned_tools::{self, Tool};
use xtask::policy::{self, AllowEntry, Policy, PolicyOverride};
use xtask::stages::scan::{scan_source, table, ScanOutcome};
use xtask::trivy;
use xtask::trivy_db::Database;

/// Context, tools and the fixture image (saved as a `docker save` archive for the scanners), each made once per test
/// process. The fixture's build is shared: when it failed, every test that needs it reports that failure again
/// (under CI: fails), none passes without running.
fn prerequisites() -> Option<(Context, PathBuf)> {
    static FIXTURE: Mutex<Option<Result<PathBuf, String>>> = Mutex::new(None);
    let ctx = Context::discover().expect("workspace");
    require("the Docker engine", ctx.engine().map(drop))?;
    require("trivy", pinned_tools::ensure(&ctx, Tool::Trivy))?;
    require("trivy-db", pinned_tools::ensure(&ctx, Tool::TrivyDb))?;
    require("syft", pinned_tools::ensure(&ctx, Tool::Syft))?;
    let mut built = FIXTURE.lock().unwrap_or_else(|poison| poison.into_inner());
    let built = built.get_or_insert_with(|| common::fixture::build(&ctx, "gate").map_err(|error| format!("{error:#}")));
    let archive = require("the fixture image", built.clone().map_err(anyhow::Error::msg))?;
    Some((ctx, archive))
}

fn workspace_policy(ctx: &Context, allow: Vec<AllowEntry>) -> Policy {
    Policy::load(&ctx.root, &PolicyOverride { allow, ..PolicyOverride::default() }).expect("workspace scan policy")
}

fn flask_entry(expires: Date) -> AllowEntry {
    AllowEntry {
        id: "CVE-2023-30861".into(),
        package: Some("flask".into()),
        reason: "test: the app sets no permanent sessions".into(),
        expires,
    }
}

fn scan(ctx: &Context, archive: &std::path::Path, name: &str, policy: &Policy) -> ScanOutcome {
    scan_source(ctx, name, &common::fixture::source(archive), policy, &Database::Offline).expect("the scan runs")
}

#[test]
fn flask_2_2_2_fails_the_gate_naming_cve_2023_30861() {
    let Some((ctx, archive)) = prerequisites() else { return };
    let outcome = scan(&ctx, &archive, "test-flask-2.2.2", &workspace_policy(&ctx, Vec::new()));

    assert!(!outcome.passed, "{}", outcome.message);
    assert!(outcome.message.contains("FAILED"), "{}", outcome.message);
    let flask: Vec<_> = outcome.decisive.iter().filter(|finding| finding.id == "CVE-2023-30861").collect();
    assert_eq!(flask.len(), 1, "{:?}", outcome.decisive);
    assert!(flask[0].package.eq_ignore_ascii_case("flask"), "{:?}", flask[0]);
    assert_eq!(flask[0].installed, "2.2.2");
    assert!(flask[0].fixed.contains("2.2.5") && flask[0].fixed.contains("2.3.2"), "{:?}", flask[0]);
    assert!(table(&outcome.decisive).contains("CVE-2023-30861"));
    // Not rated yet is not harmless: a fixable UNKNOWN finding counts as the threshold.
    assert!(outcome.decisive.iter().any(|finding| finding.id == "CVE-2025-15467"), "{:?}", outcome.decisive);

    // Trivy saw both halves of the image: the Debian package (matched to the Debian advisory through its source
    // package) and the Python package of the virtual environment.
    assert_eq!((outcome.os_packages, outcome.lang_packages), (1, 1));
    let report = trivy::read(&outcome.report).unwrap();
    let debian: Vec<_> = report.vulnerabilities().filter(|(target, _)| target.class == "os-pkgs").collect();
    assert_eq!(debian.len(), 1, "{debian:?}");
    assert_eq!(debian[0].1.vulnerability_id, "CVE-2025-15467");
    assert_eq!(debian[0].1.pkg_name, "libssl3t64");
    assert_eq!(debian[0].1.fixed_version, "3.5.4-1~deb13u2");

    let sarif: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&outcome.sarif).unwrap()).unwrap();
    let rules = sarif["runs"][0]["tool"]["driver"]["rules"].as_array().expect("SARIF rules");
    assert!(rules.iter().any(|rule| rule["id"] == "CVE-2023-30861"), "{sarif}");
}

#[test]
fn an_allow_list_entry_expiring_in_the_future_lets_it_pass() {
    let Some((ctx, archive)) = prerequisites() else { return };
    let next_year = Date::new(policy::today().year() + 1, 12, 31).unwrap();
    // The fixture's libssl3t64 has a fixable finding Trivy rates UNKNOWN, which fails the gate as well.
    let openssl = AllowEntry {
        id: "CVE-2025-15467".into(),
        package: Some("libssl3t64".into()),
        reason: "test: the fixture runs no TLS".into(),
        expires: next_year,
    };
    let policy = workspace_policy(&ctx, vec![flask_entry(next_year), openssl]);
    let outcome = scan(&ctx, &archive, "test-flask-2.2.2-allowed", &policy);
    assert!(outcome.passed, "{}", outcome.message);
    assert!(outcome.decisive.is_empty());
    let expected = format!("excused until {next_year}: cve-2023-30861 in flask");
    assert!(outcome.message.to_lowercase().contains(&expected), "{}", outcome.message);
}

#[test]
fn an_expired_allow_list_entry_fails_and_says_it_expired() {
    let Some((ctx, archive)) = prerequisites() else { return };
    let policy = workspace_policy(&ctx, vec![flask_entry("2024-01-31".parse().unwrap())]);
    let outcome = scan(&ctx, &archive, "test-flask-2.2.2-expired", &policy);
    assert!(!outcome.passed, "{}", outcome.message);
    assert!(outcome.decisive.iter().any(|finding| finding.id == "CVE-2023-30861"));
    assert!(
        outcome.message.contains("allow-list entry CVE-2023-30861 (package flask) expired on 2024-01-31"),
        "{}",
        outcome.message
    );
}

#[test]
fn the_sbom_lists_the_debian_and_the_python_packages() {
    let Some((ctx, archive)) = prerequisites() else { return };
    let path =
        xtask::stages::sbom::sbom_of(&ctx, "test-flask-2.2.2-sbom", &common::fixture::source(&archive)).expect("SBOM");
    let sbom: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let purls: Vec<&str> =
        sbom["components"].as_array().unwrap().iter().filter_map(|component| component["purl"].as_str()).collect();
    assert!(purls.iter().any(|purl| purl.starts_with("pkg:pypi/flask@2.2.2")), "{purls:?}");
    assert!(purls.iter().any(|purl| purl.starts_with("pkg:deb/debian/libssl3t64@3.5.4-1~deb13u1")), "{purls:?}");
}
