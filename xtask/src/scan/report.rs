//! Trivy's JSON report (`trivy image -f json`, schema version 2), as far as the gate reads it.

use std::fmt;
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;

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
