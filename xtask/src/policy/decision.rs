//! What the policy decides about one Trivy report: the findings that fail the gate, those an allow-list entry
//! excuses, the secrets, the allow-list entries that excuse nothing any more, and whether Trivy could see the image
//! at all (a report that cannot decide fails).

use std::collections::BTreeMap;

use jiff::civil::Date;

use super::{AllowEntry, Policy};
use crate::trivy::{Report, Severity};

impl Policy {
    /// Decides on a report as of `today`, for an image expected to hold what `expect` says.
    pub fn evaluate(&self, report: &Report, today: Date, expect: &Expectations) -> Decision {
        let mut decision = Decision { blind: blind_spots(report, expect), ..Decision::default() };
        let mut used = vec![false; self.allow.len()];
        for (target, vuln) in report.vulnerabilities() {
            *decision.counts.entry(vuln.severity).or_default() += 1;
            let severity = self.severity_of(vuln.severity);
            if severity < self.min_severity || (self.only_fixed && vuln.fixed_version.is_empty()) {
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
            let entry = self.allow.iter().position(|entry| entry.matches(&finding.id, &finding.package));
            if let Some(index) = entry {
                used[index] = true;
            }
            match entry.map(|index| &self.allow[index]) {
                Some(entry) if entry.expires >= today => decision.excused.push((finding, entry.clone())),
                Some(entry) => decision.failing.push((finding, Some(entry.clone()))),
                None => decision.failing.push((finding, None)),
            }
        }
        decision.stale =
            self.allow.iter().zip(used).filter(|(_, used)| !used).map(|(entry, _)| entry.clone()).collect();
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
}

/// Why a report cannot decide: what Trivy could not see although the image holds it.
fn blind_spots(report: &Report, expect: &Expectations) -> Vec<String> {
    let mut blind = Vec::new();
    if report.results.is_empty() {
        blind.push("Trivy reported no results at all: it read nothing in the image (a wrong input?)".to_owned());
        return blind;
    }
    if expect.os_packages && report.package_count("os-pkgs") == 0 {
        blind.push(
            "Trivy saw no Debian package, but the image has package records under /var/lib/dpkg/status.d/".to_owned(),
        );
    }
    if expect.python_packages && report.package_count("lang-pkgs") == 0 {
        blind.push("Trivy saw no Python package, but the image has a virtual environment".to_owned());
    }
    blind
}

/// What an image holds that Trivy must see for its report to decide anything.
#[derive(Clone, Copy, Debug, Default)]
pub struct Expectations {
    /// Debian packages recorded under `/var/lib/dpkg/status.d/`.
    pub os_packages: bool,
    /// Python packages in a virtual environment.
    pub python_packages: bool,
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
    /// Why the report cannot decide (it saw nothing, or not a part the image has): the gate fails closed.
    pub blind: Vec<String>,
    /// Allow-list entries that excuse no finding of this report any more: remove them (`--strict` fails on them).
    pub stale: Vec<AllowEntry>,
}

impl Decision {
    pub fn passed(&self) -> bool {
        self.failing.is_empty() && self.secrets.is_empty() && self.blind.is_empty()
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
            reasons.extend(self.blind.iter().map(|blind| format!("the report cannot decide: {blind}")));
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
        for entry in &self.stale {
            lines.push(format!(
                "  stale allow-list entry {}: it excuses no finding any more; remove it (`scan --strict` fails on it)",
                entry.describe()
            ));
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
