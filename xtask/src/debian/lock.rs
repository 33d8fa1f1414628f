//! `images/<name>/packages.lock`: the exact `.deb` of every package an image's root filesystem is made of, per
//! architecture, and the state of each suite it was resolved from. Written by `cargo xtask lock`, read by the build.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use anyhow::{bail, Context as _, Result};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::index::{Candidate, SuiteEntries};
use super::{Archive, Sha256, Suite, ARCHITECTURE_ALL};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    /// What the lock is resolved for; a package of architecture `all` serves each of them.
    pub architectures: Vec<String>,
    #[serde(rename = "suite")]
    pub suites: Vec<SuiteState>,
    #[serde(rename = "package", default)]
    pub packages: Vec<Locked>,
}

/// The state of a suite the lock was resolved from: the `Date` of its signed `InRelease`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteState {
    pub suite: Suite,
    pub archive: Archive,
    pub date: Timestamp,
}

/// One binary package at one version: where its `.deb` lies in its archive's pool, and what it must hash to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Locked {
    pub name: String,
    pub version: String,
    /// The package's own architecture: an image architecture, or `all`.
    pub architecture: String,
    pub source: String,
    pub source_version: String,
    pub archive: Archive,
    pub suite: Suite,
    /// The path below the archive's root (`pool/...`), on the mirror and on snapshot.debian.org alike.
    pub filename: String,
    pub size: u64,
    pub sha256: Sha256,
}

impl Locked {
    fn from_candidate(suite: Suite, candidate: &Candidate) -> Self {
        Self {
            name: candidate.name.clone(),
            version: candidate.version_text.clone(),
            architecture: candidate.architecture.clone(),
            source: candidate.source.clone(),
            source_version: candidate.source_version.clone(),
            archive: suite.archive(),
            suite,
            filename: candidate.filename.clone(),
            size: candidate.size,
            sha256: candidate.sha256.clone(),
        }
    }

    fn serves(&self, architecture: &str) -> bool {
        self.architecture == architecture || self.architecture == ARCHITECTURE_ALL
    }
}

impl Lock {
    /// The lock of `packages` (in their order) from each architecture's newest entries across the suites.
    pub fn resolve(suites: Vec<SuiteState>, indexes: &[(&str, &[SuiteEntries])], packages: &[String]) -> Result<Self> {
        let mut locked: Vec<Locked> = Vec::new();
        let mut missing = Vec::new();
        for name in packages {
            for (architecture, per_suite) in indexes {
                match super::index::newest(per_suite, name) {
                    Some((suite, candidate)) => {
                        let entry = Locked::from_candidate(suite, candidate);
                        if !locked.contains(&entry) {
                            locked.push(entry);
                        }
                    }
                    None => missing.push(format!("{name} ({architecture})")),
                }
            }
        }
        if !missing.is_empty() {
            let suites: Vec<&str> = Suite::ALL.iter().map(|suite| suite.name()).collect();
            bail!("no suite has {}: looked in {}", missing.join(", "), suites.join(", "));
        }
        let architectures = indexes.iter().map(|(architecture, _)| architecture.to_string()).collect();
        Ok(Self { architectures, suites, packages: locked })
    }

    pub fn parse(text: &str) -> Result<Self> {
        let lock: Lock = toml::from_str(text)?;
        for state in &lock.suites {
            if state.archive != state.suite.archive() {
                bail!(
                    "suite {} is in archive {}, not {}",
                    state.suite,
                    state.suite.archive().name(),
                    state.archive.name()
                );
            }
        }
        for package in &lock.packages {
            let describe = || format!("package {} {}", package.name, package.version);
            if package.archive != package.suite.archive() {
                bail!("{}: suite {} is in archive {}", describe(), package.suite, package.suite.archive().name());
            }
            lock.date_of(package.suite).with_context(describe)?;
            super::index::parse_version(&package.version).with_context(describe)?;
        }
        Ok(lock)
    }

    /// The lock as its file holds it, with the header that says where it comes from.
    pub fn render(&self, image: &str) -> Result<String> {
        let body = toml::to_string(self).context("writing the lock as TOML")?;
        Ok(format!(
            "# written by `cargo xtask lock`; refresh with `cargo xtask lock {image}` (a security update, a new package).\n\
             # Each package of `[rootfs] packages` in image.toml, at the version the build unpacks, for each architecture;\n\
             # `date` is the state of each suite it was resolved from (snapshot.debian.org keeps that state).\n\n{body}"
        ))
    }

    /// When the archive wrote the state of `suite` this lock was resolved from.
    pub fn date_of(&self, suite: Suite) -> Result<Timestamp> {
        match self.suites.iter().find(|state| state.suite == suite) {
            Some(state) => Ok(state.date),
            None => bail!("the lock has no [[suite]] entry for {suite}"),
        }
    }

    /// Checks the lock against the packages the image lists: one line per mismatch, naming the package and the fix.
    pub fn check(&self, image: &str, listed: &[String]) -> Result<()> {
        let fix = format!("run `cargo xtask lock {image}`");
        for package in &self.packages {
            if !listed.contains(&package.name) {
                bail!(
                    "image {image}: packages.lock locks {} but `[rootfs] packages` of images/{image}/image.toml does not list it: {fix}",
                    package.name
                );
            }
            if package.architecture != ARCHITECTURE_ALL && !self.architectures.contains(&package.architecture) {
                bail!(
                    "image {image}: packages.lock locks {} for {}, an architecture it is not for: {fix}",
                    package.name,
                    package.architecture
                );
            }
        }
        for architecture in &self.architectures {
            for name in listed {
                match self.packages.iter().filter(|p| &p.name == name && p.serves(architecture)).count() {
                    1 => {}
                    0 => bail!(
                        "image {image}: `[rootfs] packages` of images/{image}/image.toml lists {name} but packages.lock does not lock it for {architecture}: {fix}"
                    ),
                    _ => bail!("image {image}: packages.lock locks {name} more than once for {architecture}: {fix}"),
                }
            }
        }
        Ok(())
    }

    /// The locked packages an image of `architecture` is made of, or an error when the lock is for others.
    pub fn for_architecture(&self, image: &str, architecture: &str) -> Result<Vec<&Locked>> {
        if !self.architectures.iter().any(|locked| locked == architecture) {
            let mut all = self.architectures.clone();
            all.push(architecture.to_owned());
            let flags: Vec<String> = all.iter().map(|a| format!("--architecture {a}")).collect();
            bail!(
                "image {image}: packages.lock is for {}, not {architecture}: run `cargo xtask lock {image} {}`",
                self.architectures.join(", "),
                flags.join(" ")
            );
        }
        Ok(self.packages.iter().filter(|package| package.serves(architecture)).collect())
    }
}

/// What a new lock changes in a package, for the messages of `cargo xtask lock`.
#[derive(Debug, PartialEq)]
pub enum Change {
    Updated { name: String, architecture: String, from: String, to: String },
    Added { name: String, architecture: String, version: String },
    Removed { name: String, architecture: String, version: String },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Updated { name, architecture, from, to } => write!(f, "{name} ({architecture}): {from} → {to}"),
            Change::Added { name, architecture, version } => write!(f, "{name} ({architecture}): added at {version}"),
            Change::Removed { name, architecture, version } => {
                write!(f, "{name} ({architecture}): removed (was {version})")
            }
        }
    }
}

impl Lock {
    /// Every package that differs from `old` (a package whose file changed at the same version counts as updated).
    pub fn changes_from(&self, old: Option<&Lock>) -> Vec<Change> {
        let key = |p: &Locked| (p.name.clone(), p.architecture.clone());
        let before: HashMap<_, &Locked> = old.iter().flat_map(|lock| &lock.packages).map(|p| (key(p), p)).collect();
        let after: HashMap<_, &Locked> = self.packages.iter().map(|p| (key(p), p)).collect();
        let keys: BTreeSet<_> = before.keys().chain(after.keys()).cloned().collect();
        let mut changes = Vec::new();
        for (name, architecture) in keys {
            let change = match (
                before.get(&(name.clone(), architecture.clone())),
                after.get(&(name.clone(), architecture.clone())),
            ) {
                (Some(old), Some(new)) if old != new => {
                    Change::Updated { from: old.version.clone(), to: new.version.clone(), name, architecture }
                }
                (None, Some(new)) => Change::Added { version: new.version.clone(), name, architecture },
                (Some(old), None) => Change::Removed { version: old.version.clone(), name, architecture },
                _ => continue,
            };
            changes.push(change);
        }
        changes
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> Lock {
        let date = |text: &str| text.parse::<Timestamp>().unwrap();
        let package = |name: &str, version: &str, architecture: &str, suite: Suite| Locked {
            name: name.into(),
            version: version.into(),
            architecture: architecture.into(),
            source: format!("{name}-src"),
            source_version: version.into(),
            archive: suite.archive(),
            suite,
            filename: format!("pool/main/x/{name}/{name}_{version}_{architecture}.deb"),
            size: 3,
            sha256: Sha256::of(name.as_bytes()),
        };
        Lock {
            architectures: vec!["amd64".into()],
            suites: vec![
                SuiteState { suite: Suite::Trixie, archive: Archive::Debian, date: date("2026-11-21T09:15:44Z") },
                SuiteState {
                    suite: Suite::TrixieSecurity,
                    archive: Archive::DebianSecurity,
                    date: date("2026-11-30T00:22:33Z"),
                },
            ],
            packages: vec![
                package("zlib1g", "1:1.3.dfsg+really1.3.1-1+b1", "amd64", Suite::Trixie),
                package("tzdata", "2025b-4", "all", Suite::Trixie),
                package("libssl3t64", "3.5.7-1~deb13u3", "amd64", Suite::TrixieSecurity),
            ],
        }
    }

    fn listed(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn a_lock_reads_back_as_written() {
        let lock = sample();
        let text = lock.render("shop").unwrap();
        assert!(text.starts_with("# written by `cargo xtask lock`; refresh with `cargo xtask lock shop`"), "{text}");
        assert!(
            text.contains("architectures = [\"amd64\"]") && text.contains("archive = \"debian-security\""),
            "{text}"
        );
        assert!(
            text.contains("date = \"2026-11-30T00:22:33Z\"") && text.contains("suite = \"trixie-security\""),
            "{text}"
        );
        assert_eq!(Lock::parse(&text).unwrap(), lock);
        let wrong = text.replacen("archive = \"debian-security\"", "archive = \"debian\"", 1);
        assert!(Lock::parse(&wrong).unwrap_err().to_string().contains("archive debian-security"));
        assert!(Lock::parse(&text.replace("sha256 = \"", "sha256 = \"X")).is_err());
    }

    #[test]
    fn a_lock_and_the_settings_must_name_the_same_packages() {
        let lock = sample();
        lock.check("shop", &listed(&["zlib1g", "tzdata", "libssl3t64"])).unwrap();
        let error = lock.check("shop", &listed(&["zlib1g", "tzdata"])).unwrap_err().to_string();
        assert_eq!(
            error,
            "image shop: packages.lock locks libssl3t64 but `[rootfs] packages` of images/shop/image.toml does not list it: run `cargo xtask lock shop`"
        );
        let error =
            lock.check("shop", &listed(&["zlib1g", "tzdata", "libssl3t64", "libffi8"])).unwrap_err().to_string();
        assert_eq!(
            error,
            "image shop: `[rootfs] packages` of images/shop/image.toml lists libffi8 but packages.lock does not lock it for amd64: run `cargo xtask lock shop`"
        );
    }

    #[test]
    fn a_lock_serves_only_its_architectures_and_all() {
        let mut lock = sample();
        let names: Vec<&str> =
            lock.for_architecture("shop", "amd64").unwrap().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["zlib1g", "tzdata", "libssl3t64"]);
        let error = lock.for_architecture("shop", "arm64").unwrap_err().to_string();
        assert_eq!(
            error,
            "image shop: packages.lock is for amd64, not arm64: run `cargo xtask lock shop --architecture amd64 --architecture arm64`"
        );
        // A second architecture needs its own entry of every package that is not `all`.
        lock.architectures.push("arm64".into());
        let error = lock.check("shop", &listed(&["zlib1g", "tzdata", "libssl3t64"])).unwrap_err().to_string();
        assert!(error.contains("lists zlib1g but packages.lock does not lock it for arm64"), "{error}");
    }

    #[test]
    fn resolving_takes_the_newest_of_each_package_and_names_every_missing_one() {
        use crate::debian::index::tests::suite;
        let entries = [
            suite(Suite::Trixie, &[("zlib1g", "1:1.3-1"), ("tzdata", "2025b-4")]),
            suite(Suite::TrixieSecurity, &[("zlib1g", "1:1.3-1+deb13u1")]),
        ];
        let lock = Lock::resolve(sample().suites, &[("amd64", &entries)], &listed(&["tzdata", "zlib1g"])).unwrap();
        let picked: Vec<(&str, &str, Archive)> =
            lock.packages.iter().map(|p| (p.name.as_str(), p.version.as_str(), p.archive)).collect();
        assert_eq!(
            picked,
            [("tzdata", "2025b-4", Archive::Debian), ("zlib1g", "1:1.3-1+deb13u1", Archive::DebianSecurity)]
        );
        assert_eq!(lock.architectures, ["amd64"]);
        let error = Lock::resolve(sample().suites, &[("amd64", &entries)], &listed(&["tzdata", "nope", "gone"]));
        assert_eq!(
            error.unwrap_err().to_string(),
            "no suite has nope (amd64), gone (amd64): looked in trixie, trixie-updates, trixie-security"
        );
    }

    #[test]
    fn changes_name_each_package_once() {
        let old = sample();
        let mut new = sample();
        assert_eq!(new.changes_from(Some(&old)), []);
        new.packages[2].version = "3.5.8-1~deb13u1".into();
        new.packages.remove(1);
        let lines: Vec<String> = new.changes_from(Some(&old)).iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            ["libssl3t64 (amd64): 3.5.7-1~deb13u3 → 3.5.8-1~deb13u1", "tzdata (all): removed (was 2025b-4)"]
        );
        assert_eq!(old.changes_from(None).len(), 3);
    }
}
