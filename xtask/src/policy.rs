//! The scan gate's policy: which findings of a Trivy report fail an image.
//!
//! The workspace policy is `scan-policy.toml`; an image adjusts it with a `[scan]` table in its `image.toml`.
//! The decision is ours, not Trivy's exit code: a finding fails the gate when its severity reaches the threshold,
//! (by default) a fixed version exists, and no unexpired allow-list entry excuses it. Secrets always fail.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;

use jiff::civil::Date;

use crate::trivy::{Report, Severity};

pub const POLICY_FILE: &str = "scan-policy.toml";

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Findings of this severity or above can fail the gate.
    #[serde(default = "default_threshold")]
    pub min_severity: Severity,
    /// Only findings that a released version fixes can fail the gate (nothing to upgrade to otherwise).
    #[serde(default = "yes")]
    pub only_fixed: bool,
    /// Accepted findings, each with a reason and an expiry date.
    #[serde(default)]
    pub allow: Vec<AllowEntry>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { min_severity: default_threshold(), only_fixed: true, allow: Vec::new() }
    }
}

/// The `[scan]` table of an image's `image.toml`: replaces the threshold or the only-fixed rule, adds allow entries.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyOverride {
    pub min_severity: Option<Severity>,
    pub only_fixed: Option<bool>,
    #[serde(default)]
    pub allow: Vec<AllowEntry>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowEntry {
    /// Vulnerability ID as Trivy reports it (`CVE-2023-30861`, `GHSA-...`).
    pub id: String,
    /// Only this package's finding is excused (all packages when absent).
    pub package: Option<String>,
    /// Why the finding is accepted; shown with it.
    pub reason: String,
    /// Last day the entry excuses its finding (`YYYY-MM-DD`).
    #[serde(deserialize_with = "deserialize_date")]
    pub expires: Date,
}

fn default_threshold() -> Severity {
    Severity::High
}
fn yes() -> bool {
    true
}

impl Policy {
    /// `scan-policy.toml` of the workspace (the defaults when there is none), adjusted by an image's override.
    pub fn load(root: &Path, image_override: &PolicyOverride) -> Result<Policy> {
        let path = root.join(POLICY_FILE);
        let mut policy = match std::fs::read_to_string(&path) {
            Ok(text) => Policy::parse(&text).with_context(|| format!("invalid scan policy {}", path.display()))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Policy::default(),
            Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
        };
        policy.apply(image_override).context("invalid [scan] table in image.toml")?;
        Ok(policy)
    }

    pub fn parse(text: &str) -> Result<Policy> {
        let policy: Policy = toml::from_str(text)?;
        validate(&policy.allow)?;
        Ok(policy)
    }

    pub fn apply(&mut self, image_override: &PolicyOverride) -> Result<()> {
        validate(&image_override.allow)?;
        if let Some(min_severity) = image_override.min_severity {
            self.min_severity = min_severity;
        }
        if let Some(only_fixed) = image_override.only_fixed {
            self.only_fixed = only_fixed;
        }
        self.allow.extend(image_override.allow.iter().cloned());
        Ok(())
    }

    /// Decides on a report as of `today`.
    pub fn evaluate(&self, report: &Report, today: Date) -> Decision {
        let mut decision = Decision::default();
        for (target, vuln) in report.vulnerabilities() {
            *decision.counts.entry(vuln.severity).or_default() += 1;
            if vuln.severity < self.min_severity || (self.only_fixed && vuln.fixed_version.is_empty()) {
                decision.below_threshold += 1;
                continue;
            }
            let finding = Finding {
                id: vuln.vulnerability_id.clone(),
                package: vuln.pkg_name.clone(),
                installed: vuln.installed_version.clone(),
                fixed: vuln.fixed_version.clone(),
                severity: vuln.severity,
                title: vuln.title.clone().unwrap_or_default(),
                target: target.target.clone(),
            };
            let entry = self.allow.iter().find(|entry| entry.matches(&finding.id, &finding.package));
            match entry {
                Some(entry) if entry.expires >= today => decision.excused.push((finding, entry.clone())),
                Some(entry) => decision.failing.push((finding, Some(entry.clone()))),
                None => decision.failing.push((finding, None)),
            }
        }
        for (target, secret) in report.secrets() {
            decision.secrets.push(Finding {
                id: secret.rule_id.clone(),
                package: target.target.clone(),
                installed: format!("lines {}-{}", secret.start_line, secret.end_line),
                fixed: String::new(),
                severity: secret.severity,
                title: format!("secret ({}): {}", secret.category, secret.title),
                target: target.target.clone(),
            });
        }
        decision
    }

    fn describe_threshold(&self) -> String {
        let severities: Vec<String> =
            Severity::ALL.iter().filter(|severity| **severity >= self.min_severity).map(ToString::to_string).collect();
        let fixed = if self.only_fixed { " with a fixed version" } else { "" };
        format!("{}{fixed}", severities.join("/"))
    }
}

impl AllowEntry {
    fn matches(&self, id: &str, package: &str) -> bool {
        self.id.eq_ignore_ascii_case(id)
            && self.package.as_deref().is_none_or(|wanted| wanted.eq_ignore_ascii_case(package))
    }

    fn describe(&self) -> String {
        match &self.package {
            Some(package) => format!("{} (package {package})", self.id),
            None => self.id.clone(),
        }
    }
}

fn validate(entries: &[AllowEntry]) -> Result<()> {
    for entry in entries {
        if entry.id.trim().is_empty() {
            bail!("an [[allow]] entry has an empty `id`: give the vulnerability ID it accepts");
        }
        if entry.reason.trim().is_empty() {
            bail!(
                "the [[allow]] entry for {} has an empty `reason`: say why the finding is accepted",
                entry.describe()
            );
        }
    }
    Ok(())
}

/// A vulnerability (or secret) in the table of findings.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub id: String,
    pub package: String,
    pub installed: String,
    pub fixed: String,
    pub severity: Severity,
    pub title: String,
    pub target: String,
}

#[derive(Debug, Default)]
pub struct Decision {
    /// Findings that fail the gate, with the expired allow-list entry that no longer excuses them.
    pub failing: Vec<(Finding, Option<AllowEntry>)>,
    pub secrets: Vec<Finding>,
    /// Findings that would fail but an unexpired allow-list entry accepts.
    pub excused: Vec<(Finding, AllowEntry)>,
    /// Vulnerabilities below the threshold (or without a fix under `only_fixed`).
    pub below_threshold: usize,
    /// Every vulnerability of the report, by severity.
    pub counts: BTreeMap<Severity, usize>,
}

impl Decision {
    pub fn passed(&self) -> bool {
        self.failing.is_empty() && self.secrets.is_empty()
    }

    /// One paragraph for humans: the verdict, why, and what to do.
    pub fn message(&self, image: &str, policy: &Policy) -> String {
        let threshold = policy.describe_threshold();
        let mut lines = Vec::new();
        if self.passed() {
            lines.push(format!("scan gate passed for {image}: no finding at {threshold}, no secret"));
        } else {
            let mut reasons = Vec::new();
            if !self.failing.is_empty() {
                reasons.push(format!("{} finding(s) at {threshold}", self.failing.len()));
            }
            if !self.secrets.is_empty() {
                reasons.push(format!("{} secret(s) in the image (secrets always fail)", self.secrets.len()));
            }
            lines.push(format!("scan gate FAILED for {image}: {}", reasons.join(", ")));
        }
        for (finding, entry) in &self.failing {
            if let Some(entry) = entry {
                lines.push(format!(
                    "  allow-list entry {} expired on {}: it no longer excuses {} in {} (reason was: {}); \
                     upgrade the package, or renew the entry with a new date and reason",
                    entry.describe(),
                    entry.expires,
                    finding.id,
                    finding.package,
                    entry.reason
                ));
            }
        }
        for (finding, entry) in &self.excused {
            lines.push(format!(
                "  excused until {}: {} in {} ({})",
                entry.expires, finding.id, finding.package, entry.reason
            ));
        }
        lines.join("\n")
    }
}

/// The allow-list's expiry: a calendar day written `YYYY-MM-DD`, quoted or as TOML's own date.
fn deserialize_date<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Date, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Text(String),
        Toml(toml::value::Datetime),
    }
    let text = match Written::deserialize(deserializer)? {
        Written::Text(text) => text,
        Written::Toml(datetime) => datetime.to_string(),
    };
    text.trim().parse::<Date>().map_err(|error| {
        serde::de::Error::custom(format!("`{text}` is not a valid date of the form YYYY-MM-DD: {error}"))
    })
}

/// Today in UTC, the day CI runs on.
pub fn today() -> Date {
    jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trivy;

    fn report_with(vulns: &[(&str, &str, &str, &str)], secret: bool) -> Report {
        let vulnerabilities: Vec<serde_json::Value> = vulns
            .iter()
            .map(|(id, package, fixed, severity)| {
                serde_json::json!({
                    "VulnerabilityID": id, "PkgName": package, "InstalledVersion": "1.0",
                    "FixedVersion": fixed, "Severity": severity, "Title": format!("{id} title"),
                })
            })
            .collect();
        let mut results = vec![serde_json::json!({
            "Target": "Python", "Class": "lang-pkgs", "Type": "python-pkg", "Vulnerabilities": vulnerabilities,
        })];
        if secret {
            results.push(serde_json::json!({
                "Target": "/app/settings.py", "Class": "secret",
                "Secrets": [{"RuleID": "aws-access-key-id", "Category": "AWS", "Severity": "CRITICAL",
                             "Title": "AWS Access Key ID", "StartLine": 3, "EndLine": 3, "Match": "AWS_KEY=****"}],
            }));
        }
        let text = serde_json::json!({"SchemaVersion": 2, "ArtifactName": "test", "Results": results}).to_string();
        trivy::parse(&text).unwrap()
    }

    fn date(text: &str) -> Date {
        text.parse().unwrap()
    }

    fn allow(id: &str, package: Option<&str>, expires: &str) -> AllowEntry {
        AllowEntry {
            id: id.into(),
            package: package.map(Into::into),
            reason: "accepted for the test".into(),
            expires: date(expires),
        }
    }

    const TODAY: &str = "2026-06-15";

    #[test]
    fn the_threshold_decides_by_default_high_and_critical() {
        let report = report_with(
            &[("CVE-1", "a", "2.0", "MEDIUM"), ("CVE-2", "b", "2.0", "HIGH"), ("CVE-3", "c", "2.0", "CRITICAL")],
            false,
        );
        let decision = Policy::default().evaluate(&report, date(TODAY));
        let failing: Vec<&str> = decision.failing.iter().map(|(finding, _)| finding.id.as_str()).collect();
        assert_eq!(failing, ["CVE-2", "CVE-3"]);
        assert!(!decision.passed());
        assert_eq!(decision.below_threshold, 1);
        assert_eq!(decision.counts[&Severity::Medium], 1);

        let strict = Policy { min_severity: Severity::Medium, ..Policy::default() };
        assert_eq!(strict.evaluate(&report, date(TODAY)).failing.len(), 3);
        let lenient = Policy { min_severity: Severity::Critical, ..Policy::default() };
        assert_eq!(lenient.evaluate(&report, date(TODAY)).failing.len(), 1);
    }

    #[test]
    fn findings_without_a_fix_only_fail_when_only_fixed_is_off() {
        let report = report_with(&[("CVE-1", "a", "", "CRITICAL")], false);
        let decision = Policy::default().evaluate(&report, date(TODAY));
        assert!(decision.passed(), "{decision:?}");
        let all = Policy { only_fixed: false, ..Policy::default() };
        assert!(!all.evaluate(&report, date(TODAY)).passed());
    }

    #[test]
    fn an_allow_entry_matches_by_id_and_optionally_by_package() {
        let report = report_with(&[("CVE-1", "flask", "2.2.5", "HIGH"), ("CVE-1", "werkzeug", "3.0.1", "HIGH")], false);
        let by_id = Policy { allow: vec![allow("cve-1", None, "2026-12-31")], ..Policy::default() };
        let decision = by_id.evaluate(&report, date(TODAY));
        assert!(decision.passed());
        assert_eq!(decision.excused.len(), 2);

        let by_package = Policy { allow: vec![allow("CVE-1", Some("Flask"), "2026-12-31")], ..Policy::default() };
        let decision = by_package.evaluate(&report, date(TODAY));
        assert_eq!(decision.excused.len(), 1);
        assert_eq!(decision.failing.len(), 1);
        assert_eq!(decision.failing[0].0.package, "werkzeug");
        assert!(decision.failing[0].1.is_none());

        let other_id = Policy { allow: vec![allow("CVE-2", None, "2026-12-31")], ..Policy::default() };
        assert_eq!(other_id.evaluate(&report, date(TODAY)).failing.len(), 2);
    }

    #[test]
    fn an_expired_entry_no_longer_excuses_and_the_gate_says_so() {
        let report = report_with(&[("CVE-2023-30861", "flask", "2.2.5", "HIGH")], false);
        let on_its_last_day = Policy { allow: vec![allow("CVE-2023-30861", None, TODAY)], ..Policy::default() };
        assert!(on_its_last_day.evaluate(&report, date(TODAY)).passed());

        let expired = Policy { allow: vec![allow("CVE-2023-30861", Some("flask"), "2026-06-14")], ..Policy::default() };
        let decision = expired.evaluate(&report, date(TODAY));
        assert!(!decision.passed());
        assert_eq!(decision.failing[0].1.as_ref().map(|entry| entry.expires), Some(date("2026-06-14")));
        let message = decision.message("demo", &expired);
        assert!(message.contains("FAILED"), "{message}");
        assert!(message.contains("CVE-2023-30861 (package flask) expired on 2026-06-14"), "{message}");
    }

    #[test]
    fn secrets_always_fail() {
        let report = report_with(&[], true);
        let anything_goes = Policy {
            min_severity: Severity::Critical,
            only_fixed: true,
            allow: vec![allow("aws-access-key-id", None, "2099-01-01")],
        };
        let decision = anything_goes.evaluate(&report, date(TODAY));
        assert!(!decision.passed());
        assert_eq!(decision.secrets[0].id, "aws-access-key-id");
        let message = decision.message("demo", &anything_goes);
        assert!(message.contains("1 secret(s)"), "{message}");
        assert!(!message.contains("****"), "the match never reaches the output: {message}");
    }

    #[test]
    fn policy_files_and_overrides() {
        let mut policy = Policy::parse(
            r#"
            min_severity = "CRITICAL"
            [[allow]]
            id = "CVE-1"
            reason = "not reachable"
            expires = 2026-12-31
            [[allow]]
            id = "CVE-2"
            package = "flask"
            reason = "upgrade planned"
            expires = "2027-01-31"
            "#,
        )
        .unwrap();
        assert_eq!(policy.min_severity, Severity::Critical);
        assert!(policy.only_fixed);
        assert_eq!(policy.allow[0].expires, date("2026-12-31"));
        assert_eq!(policy.allow[1].expires, date("2027-01-31"));

        let image: PolicyOverride = toml::from_str("min_severity = \"HIGH\"\nonly_fixed = false\n[[allow]]\nid = \"CVE-3\"\nreason = \"r\"\nexpires = \"2027-02-28\"").unwrap();
        policy.apply(&image).unwrap();
        assert_eq!((policy.min_severity, policy.only_fixed, policy.allow.len()), (Severity::High, false, 3));

        let unknown = Policy::parse("min_severity = \"HIGH\"\nseverity_threshold = 3").unwrap_err();
        assert!(format!("{unknown:#}").contains("unknown field"), "{unknown:#}");
        let bad_date =
            Policy::parse("[[allow]]\nid = \"CVE-1\"\nreason = \"r\"\nexpires = \"2026-02-30\"").unwrap_err();
        assert!(format!("{bad_date:#}").contains("2026-02-30"), "{bad_date:#}");
        let no_reason =
            Policy::parse("[[allow]]\nid = \"CVE-1\"\nreason = \" \"\nexpires = \"2026-02-28\"").unwrap_err();
        assert!(format!("{no_reason:#}").contains("empty `reason`"), "{no_reason:#}");
    }

    #[test]
    fn today_is_a_real_calendar_day() {
        assert!(today() > date("2025-01-01"));
    }
}
