//! The scan gate's policy: which findings of a Trivy report fail an image.
//!
//! The workspace policy is `scan-policy.toml`; an image adjusts it with a `[scan]` table in its `image.toml`.
//! The decision is ours, not Trivy's exit code: a finding fails the gate when its severity reaches the threshold,
//! (by default) a fixed version exists, and no unexpired allow-list entry excuses it. Secrets always fail.

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;

mod decision;

use jiff::civil::Date;

use crate::trivy::Severity;
pub use decision::{Decision, Expectations, Finding};

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
    /// The severity an UNKNOWN finding (not rated yet) counts as; by default the threshold itself, so that a fixable
    /// UNKNOWN fails the gate.
    pub unknown_as: Option<Severity>,
    /// Accepted findings, each with a reason and an expiry date.
    #[serde(default)]
    pub allow: Vec<AllowEntry>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { min_severity: default_threshold(), only_fixed: true, unknown_as: None, allow: Vec::new() }
    }
}

/// The `[scan]` table of an image's `image.toml`: replaces the threshold or the only-fixed rule, adds allow entries.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyOverride {
    pub min_severity: Option<Severity>,
    pub only_fixed: Option<bool>,
    pub unknown_as: Option<Severity>,
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
        if let Some(unknown_as) = image_override.unknown_as {
            self.unknown_as = Some(unknown_as);
        }
        self.allow.extend(image_override.allow.iter().cloned());
        Ok(())
    }

    /// The severity a finding counts as: its own, or for UNKNOWN what the policy says.
    pub fn severity_of(&self, severity: Severity) -> Severity {
        match severity {
            Severity::Unknown => self.unknown_as.unwrap_or(self.min_severity),
            rated => rated,
        }
    }

    pub(crate) fn describe_threshold(&self) -> String {
        let severities: Vec<String> =
            Severity::ALL.iter().filter(|severity| **severity >= self.min_severity).map(ToString::to_string).collect();
        let fixed = if self.only_fixed { " with a fixed version" } else { "" };
        format!("{}{fixed}", severities.join("/"))
    }
}

impl AllowEntry {
    pub(crate) fn matches(&self, id: &str, package: &str) -> bool {
        self.id.eq_ignore_ascii_case(id)
            && self.package.as_deref().is_none_or(|wanted| wanted.eq_ignore_ascii_case(package))
    }

    pub(crate) fn describe(&self) -> String {
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
mod tests;
