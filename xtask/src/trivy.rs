//! Trivy: scanning an exported image into its JSON report (`trivy image -f json`, schema version 2), the report as
//! far as the gate reads it, and its SARIF form for code scanning.

use std::fmt;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;
use xshell::cmd;

use crate::context::Context;
use crate::pinned_tools::{self, Tool};
use crate::trivy_db::Database;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Unknown,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 5] =
        [Severity::Unknown, Severity::Low, Severity::Medium, Severity::High, Severity::Critical];
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Severity::Unknown => "UNKNOWN",
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        };
        f.pad(name)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Report {
    pub schema_version: u32,
    #[serde(default)]
    pub results: Vec<TargetResult>,
}

/// One scanned target: the OS packages, one language ecosystem, or one file with secrets.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TargetResult {
    pub target: String,
    /// `os-pkgs`, `lang-pkgs` or `secret`.
    pub class: String,
    /// Every package found (reports made with `--list-all-pkgs`); the gate only counts them.
    #[serde(default)]
    pub packages: Vec<serde::de::IgnoredAny>,
    #[serde(default)]
    pub vulnerabilities: Vec<Vulnerability>,
    #[serde(default)]
    pub secrets: Vec<Secret>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Vulnerability {
    #[serde(rename = "VulnerabilityID")]
    pub vulnerability_id: String,
    pub pkg_name: String,
    #[serde(default)]
    pub installed_version: String,
    /// Empty when no release fixes it yet.
    #[serde(default)]
    pub fixed_version: String,
    pub severity: Severity,
    #[serde(default)]
    pub title: Option<String>,
}

/// A secret found in a file. Trivy masks the secret itself in `Match`, which the gate never prints anyway.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Secret {
    #[serde(rename = "RuleID")]
    pub rule_id: String,
    #[serde(default)]
    pub category: String,
    pub severity: Severity,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub start_line: u32,
    #[serde(default)]
    pub end_line: u32,
}

impl Report {
    /// Every vulnerability with the target that holds it.
    pub fn vulnerabilities(&self) -> impl Iterator<Item = (&TargetResult, &Vulnerability)> {
        self.results.iter().flat_map(|result| result.vulnerabilities.iter().map(move |vuln| (result, vuln)))
    }

    pub fn secrets(&self) -> impl Iterator<Item = (&TargetResult, &Secret)> {
        self.results.iter().flat_map(|result| result.secrets.iter().map(move |secret| (result, secret)))
    }

    /// How many packages of one class (`os-pkgs` or `lang-pkgs`) Trivy found.
    pub fn package_count(&self, class: &str) -> usize {
        self.results.iter().filter(|result| result.class == class).map(|result| result.packages.len()).sum()
    }
}

/// Reads a report Trivy wrote, with an error that names the file and what is wrong with it.
pub fn read(path: &Path) -> Result<Report> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the Trivy report {}", path.display()))?;
    parse(&text).with_context(|| {
        format!(
            "the Trivy report {} is corrupt or not a `trivy image -f json` report; delete it and scan again",
            path.display()
        )
    })
}

pub fn parse(text: &str) -> Result<Report> {
    let report: Report = serde_json::from_str(text).context("invalid report JSON")?;
    if report.schema_version != 2 {
        bail!("report schema version {} is not the supported version 2", report.schema_version);
    }
    Ok(report)
}

/// Where Trivy reads an image.
pub enum Target<'a> {
    /// An OCI layout folder or a `docker save` archive.
    Disk(&'a Path),
    /// An image in its registry, e.g. pinned by digest (credentials from `docker login`).
    Registry(&'a str),
}

/// Scans an image into a JSON report: vulnerabilities and secrets, and every package, which proves what Trivy saw.
pub fn scan(ctx: &Context, image: &Target, report: &Path, database: &Database) -> Result<()> {
    // Trivy's databases are bolt files that one process at a time may hold: scans of this process take turns, each
    // with the database it prepared (another mirror's download would replace it).
    static SCANNING: Mutex<()> = Mutex::new(());
    let trivy = pinned_tools::ensure(ctx, Tool::Trivy)?;
    let _turn = SCANNING.lock().unwrap_or_else(|poison| poison.into_inner());
    let database_args = database.trivy_args(ctx)?;
    // A stale report must never be read as this scan's answer.
    let _ = std::fs::remove_file(report);
    let sh = &ctx.sh;
    // The layer cache stays in memory: an image is scanned once per build.
    let source: Vec<std::ffi::OsString> = match image {
        Target::Disk(path) => vec!["--input".into(), path.into()],
        Target::Registry(reference) => vec!["--image-src".into(), "remote".into(), reference.into()],
    };
    cmd!(
        sh,
        "{trivy} image {source...} --scanners vuln,secret --list-all-pkgs --cache-backend memory
         --no-progress --format json --output {report} {database_args...}"
    )
    .run()
    .context("trivy could not scan the image (its log above says why)")
}

/// `trivy convert` turns the JSON report into SARIF without scanning again.
pub fn convert_to_sarif(ctx: &Context, report: &Path, sarif: &Path) -> Result<()> {
    let trivy = pinned_tools::ensure(ctx, Tool::Trivy)?;
    let sh = &ctx.sh;
    cmd!(sh, "{trivy} convert --quiet --format sarif --output {sarif} {report}")
        .run()
        .with_context(|| format!("converting {} to SARIF", report.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_trivy_report_is_read_into_typed_structs() {
        // Captured from `cargo xtask scan` of the fixture image (offline database).
        let report = parse(include_str!("testdata/flask-2.2.2.trivy.json")).unwrap();
        let python = report.results.iter().find(|result| result.class == "lang-pkgs").expect("Python result");
        let flask = &python.vulnerabilities[0];
        assert_eq!(flask.vulnerability_id, "CVE-2023-30861");
        assert_eq!(flask.severity, Severity::High);
        assert_eq!(flask.installed_version, "2.2.2");
        assert_eq!(flask.fixed_version, "2.3.2, 2.2.5");
        assert!(flask.title.as_deref().unwrap_or_default().contains("Vary: Cookie"));
        assert_eq!((report.package_count("os-pkgs"), report.package_count("lang-pkgs")), (1, 1));
        let (debian, openssl) =
            report.vulnerabilities().find(|(target, _)| target.class == "os-pkgs").expect("Debian finding");
        assert!(debian.target.contains("debian 13"), "{}", debian.target);
        assert_eq!((openssl.vulnerability_id.as_str(), openssl.pkg_name.as_str()), ("CVE-2025-15467", "libssl3t64"));
    }

    #[test]
    fn a_corrupt_report_is_a_clear_error() {
        let dir = std::env::temp_dir().join(format!("xtask-corrupt-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("trivy.json");
        for corrupt in ["{\"SchemaVersion\": 2, \"Results\": [{\"Target\": ", "{\"SchemaVersion\": 1}", "<html>"] {
            std::fs::write(&path, corrupt).unwrap();
            let error = format!("{:#}", read(&path).unwrap_err());
            assert!(error.contains("is corrupt or not a `trivy image -f json` report"), "{error}");
            assert!(error.contains(&path.display().to_string()), "{error}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
