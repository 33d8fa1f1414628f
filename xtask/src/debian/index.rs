//! What the Debian archive says about itself, parsed once into typed values: the deb822 stanzas of its files, a
//! suite's `Release` (the signed content of `InRelease`) and the entries of a `Packages` index. Pure: no I/O here.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;

use anyhow::{bail, Context as _, Result};
use jiff::Timestamp;

use super::{Sha256, Suite};

/// The stanzas of a deb822 file (`Packages`, `Release`): paragraphs separated by blank lines.
pub fn stanzas(text: &str) -> impl Iterator<Item = &str> {
    text.split("\n\n").map(|stanza| stanza.trim_matches('\n')).filter(|stanza| !stanza.trim().is_empty())
}

/// One stanza's fields in order. A continuation line (starting with a space or tab) joins the field above it with a
/// newline; field names compare case-insensitively, as deb822 says.
#[derive(Debug, PartialEq)]
pub struct Stanza<'a> {
    fields: Vec<(&'a str, String)>,
}

impl<'a> Stanza<'a> {
    pub fn parse(text: &'a str) -> Result<Self> {
        let mut fields: Vec<(&str, String)> = Vec::new();
        for line in text.lines() {
            if line.starts_with([' ', '\t']) {
                let (_, value) = fields.last_mut().with_context(|| format!("continuation line first: `{line}`"))?;
                value.push('\n');
                value.push_str(line.trim());
            } else if !line.starts_with('#') {
                let (name, value) =
                    line.split_once(':').with_context(|| format!("a line without a colon: `{line}`"))?;
                fields.push((name.trim(), value.trim().to_owned()));
            }
        }
        Ok(Self { fields })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(field, _)| field.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    pub fn require(&self, name: &str) -> Result<&str> {
        self.get(name).with_context(|| format!("no `{name}` field"))
    }
}

/// A suite's `Release`, the content `gpgv` verified in its `InRelease`.
#[derive(Debug)]
pub struct Release {
    pub codename: String,
    /// When the archive wrote this state: the lock records it, and the snapshot fallback finds the files by it.
    pub date: Timestamp,
    pub valid_until: Option<Timestamp>,
    /// Whether index files are also served under `by-hash/SHA256/<hex>`, which a mirror update cannot swap midway.
    pub acquire_by_hash: bool,
    /// Index files by path below `dists/<suite>/`, with their size and SHA-256.
    pub files: BTreeMap<String, (u64, Sha256)>,
}

impl Release {
    pub fn parse(text: &str) -> Result<Self> {
        let stanza = Stanza::parse(text)?;
        let mut files = BTreeMap::new();
        for line in stanza.require("SHA256")?.lines().filter(|line| !line.is_empty()) {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [hash, size, path] = parts[..] else { bail!("a SHA256 line that is not `hash size path`: `{line}`") };
            let size = size.parse().with_context(|| format!("the size of {path}"))?;
            files.insert(path.to_owned(), (size, hash.parse()?));
        }
        Ok(Self {
            codename: stanza.require("Codename")?.to_owned(),
            date: parse_date(stanza.require("Date")?)?,
            valid_until: stanza.get("Valid-Until").map(parse_date).transpose()?,
            acquire_by_hash: stanza.get("Acquire-By-Hash").is_some_and(|value| value.eq_ignore_ascii_case("yes")),
            files,
        })
    }

    /// The `Packages` index of `main` for an architecture: the xz or gzip form, whichever the suite lists (trixie has
    /// both; trixie-updates and trixie-security list the uncompressed one too, but mirrors serve only the xz).
    pub fn packages_index(&self, architecture: &str) -> Result<(&str, u64, &Sha256)> {
        let stem = format!("main/binary-{architecture}/Packages");
        [format!("{stem}.xz"), format!("{stem}.gz")]
            .iter()
            .find_map(|path| self.files.get_key_value(path.as_str()))
            .map(|(path, (size, hash))| (path.as_str(), *size, hash))
            .with_context(|| {
                format!("the Release lists no {stem}.xz or .gz (is {architecture} a Debian architecture?)")
            })
    }
}

/// An RFC 2822 date as Release files write it (`Sat, 21 Nov 2026 09:15:44 UTC`; RFC 2822 itself says `+0000`).
pub fn parse_date(text: &str) -> Result<Timestamp> {
    let normal = match text.strip_suffix(" UTC") {
        Some(stem) => format!("{stem} +0000"),
        None => text.to_owned(),
    };
    let zoned = jiff::fmt::rfc2822::parse(&normal).with_context(|| format!("the date `{text}`"))?;
    Ok(zoned.timestamp())
}

/// One entry of a `Packages` index: a binary package at one version, as its `.deb` in the pool.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub name: String,
    pub version: debversion::Version,
    /// The version as the archive spells it (what the lock records and file names carry).
    pub version_text: String,
    pub architecture: String,
    pub source: String,
    pub source_version: String,
    pub filename: String,
    pub size: u64,
    pub sha256: Sha256,
}

impl Candidate {
    pub fn parse(stanza: &Stanza) -> Result<Self> {
        let name = stanza.require("Package")?.to_owned();
        let version_text = stanza.require("Version")?.to_owned();
        let version = parse_version(&version_text).with_context(|| format!("package {name}"))?;
        let (source, source_version) = parse_source(stanza.get("Source"), &name, &version_text);
        let describe = || format!("package {name} {version_text}");
        Ok(Self {
            architecture: stanza.require("Architecture").with_context(describe)?.to_owned(),
            filename: stanza.require("Filename").with_context(describe)?.to_owned(),
            size: stanza.require("Size").with_context(describe)?.parse().with_context(describe)?,
            sha256: stanza.require("SHA256").with_context(describe)?.parse().with_context(describe)?,
            name,
            version,
            version_text,
            source,
            source_version,
        })
    }
}

pub fn parse_version(text: &str) -> Result<debversion::Version> {
    debversion::Version::from_str(text).map_err(|error| anyhow::anyhow!("`{text}` is not a Debian version: {error}"))
}

/// The `Source` field: absent when the source package has the binary's name and version, `src` when only the
/// version is the same, `src (version)` when both differ (a binNMU, or a binary built from an older source).
pub fn parse_source(field: Option<&str>, package: &str, version: &str) -> (String, String) {
    match field.map(str::trim) {
        None | Some("") => (package.to_owned(), version.to_owned()),
        Some(field) => match field.split_once('(') {
            Some((name, rest)) => (name.trim().to_owned(), rest.trim_end_matches(')').trim().to_owned()),
            None => (field.to_owned(), version.to_owned()),
        },
    }
}

/// The entries of a `Packages` index for the packages in `wanted`, by name. Only those stanzas are parsed in full:
/// trixie's index holds some 65,000.
pub fn read_packages(text: &str, wanted: &HashSet<&str>) -> Result<HashMap<String, Vec<Candidate>>> {
    let mut found: HashMap<String, Vec<Candidate>> = HashMap::new();
    for stanza in stanzas(text) {
        // The archive writes `Package` first; any other order is parsed in full.
        let first = stanza.lines().next().unwrap_or_default();
        if first.strip_prefix("Package:").is_some_and(|name| !wanted.contains(name.trim())) {
            continue;
        }
        let stanza = Stanza::parse(stanza)?;
        if stanza.get("Package").is_some_and(|name| wanted.contains(name)) {
            let candidate = Candidate::parse(&stanza)?;
            found.entry(candidate.name.clone()).or_default().push(candidate);
        }
    }
    Ok(found)
}

/// The entries of the wanted packages in one suite's index, by name.
pub type SuiteEntries = (Suite, HashMap<String, Vec<Candidate>>);

/// The newest version of `name` across the suites' entries, in Debian's version order. Of equal versions the first
/// suite wins (trixie before its updates and security), whose pool keeps files longest.
pub fn newest<'a>(suites: &'a [SuiteEntries], name: &str) -> Option<(Suite, &'a Candidate)> {
    let mut best: Option<(Suite, &Candidate)> = None;
    for (suite, entries) in suites {
        for candidate in entries.get(name).into_iter().flatten() {
            if best.is_none_or(|(_, best)| candidate.version > best.version) {
                best = Some((*suite, candidate));
            }
        }
    }
    best
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const HASH: &str = "ff16bc048bcd7d1b256094450b79c77947d8e76fe2a24bd99b91021d591fa074";

    fn entry(name: &str, version: &str, extra: &str) -> String {
        format!(
            "Package: {name}\n{extra}Version: {version}\nArchitecture: amd64\nDescription: a package\n more text\n\
             Filename: pool/main/x/{name}/{name}_{version}_amd64.deb\nSize: 42\nSHA256: {HASH}\n"
        )
    }

    #[test]
    fn stanzas_split_on_blank_lines_and_continuations_join_their_field() {
        let text = format!("\n{}\n\n\n{}", entry("a", "1", ""), entry("b", "2", "Source: bsrc\n"));
        let all: Vec<&str> = stanzas(&text).collect();
        assert_eq!(all.len(), 2);
        let stanza = Stanza::parse(all[0]).unwrap();
        assert_eq!(stanza.get("package"), Some("a"));
        assert_eq!(stanza.get("Description"), Some("a package\nmore text"));
        assert_eq!(stanza.get("Source"), None);
        assert!(Stanza::parse(" leading continuation").is_err());
        assert!(Stanza::parse("Package a").unwrap_err().to_string().contains("without a colon"));
    }

    #[test]
    fn the_source_field_has_three_forms() {
        let parse = |field| parse_source(field, "libssl3t64", "3.5.1-1");
        assert_eq!(parse(None), ("libssl3t64".into(), "3.5.1-1".into()));
        assert_eq!(parse(Some("openssl")), ("openssl".into(), "3.5.1-1".into()));
        assert_eq!(parse(Some("inetutils (2:2.6-3+deb13u3)")), ("inetutils".into(), "2:2.6-3+deb13u3".into()));
    }

    #[test]
    fn only_wanted_packages_are_read_and_every_version_is_kept() {
        let text = [entry("zlib1g", "1:1.3", ""), entry("other", "1", ""), entry("zlib1g", "1:1.3.1", "")].join("\n");
        let found = read_packages(&text, &HashSet::from(["zlib1g"])).unwrap();
        assert_eq!(found.len(), 1);
        let versions: Vec<&str> = found["zlib1g"].iter().map(|c| c.version_text.as_str()).collect();
        assert_eq!(versions, ["1:1.3", "1:1.3.1"]);
        let candidate = &found["zlib1g"][0];
        assert_eq!((candidate.source.as_str(), candidate.size), ("zlib1g", 42));
        assert_eq!(candidate.filename, "pool/main/x/zlib1g/zlib1g_1:1.3_amd64.deb");
        let broken = entry("zlib1g", "1", "").replace("Size: 42", "Size: many");
        assert!(read_packages(&broken, &HashSet::from(["zlib1g"])).unwrap_err().to_string().contains("zlib1g 1"));
    }

    pub(crate) fn suite(suite: Suite, entries: &[(&str, &str)]) -> SuiteEntries {
        let text: Vec<String> = entries.iter().map(|(name, version)| entry(name, version, "")).collect();
        let names: HashSet<&str> = entries.iter().map(|(name, _)| *name).collect();
        (suite, read_packages(&text.join("\n"), &names).unwrap())
    }

    #[test]
    fn the_newest_version_wins_in_debian_order_and_the_main_suite_wins_ties() {
        let suites = [
            suite(
                Suite::Trixie,
                &[("libssl3t64", "3.5.1-1"), ("zlib1g", "1:1.3.dfsg+really1.3.1-1"), ("tzdata", "2025b-4")],
            ),
            suite(Suite::TrixieUpdates, &[("tzdata", "2025b-4+deb13u1"), ("zlib1g", "1.4-1")]),
            suite(Suite::TrixieSecurity, &[("libssl3t64", "3.5.1-1~deb13u1"), ("tzdata", "2025b-4+deb13u1")]),
        ];
        let pick = |name| newest(&suites, name).map(|(suite, c)| (suite, c.version_text.clone()));
        // `~` sorts before everything: the security build of the same upstream is older than the release's.
        assert_eq!(pick("libssl3t64"), Some((Suite::Trixie, "3.5.1-1".into())));
        // An epoch outranks any upstream version.
        assert_eq!(pick("zlib1g"), Some((Suite::Trixie, "1:1.3.dfsg+really1.3.1-1".into())));
        assert_eq!(pick("tzdata"), Some((Suite::TrixieUpdates, "2025b-4+deb13u1".into())));
        assert_eq!(pick("missing"), None);
        let newer = [
            suite(Suite::Trixie, &[("libssl3t64", "3.5.1-1")]),
            suite(Suite::TrixieSecurity, &[("libssl3t64", "3.5.1-1+deb13u1")]),
        ];
        assert_eq!(newest(&newer, "libssl3t64").unwrap().0, Suite::TrixieSecurity);
    }

    #[test]
    fn a_release_lists_its_indexes_and_dates() {
        let text = format!(
            "Origin: Debian\nCodename: trixie-security\nDate: Mon, 30 Nov 2026 00:22:33 UTC\n\
             Valid-Until: Mon, 07 Dec 2026 00:22:33 +0000\nAcquire-By-Hash: yes\nSHA256:\n \
             {HASH}  2259642 main/binary-amd64/Packages\n {HASH}   311108 main/binary-amd64/Packages.xz\n"
        );
        let release = Release::parse(&text).unwrap();
        assert_eq!(release.codename, "trixie-security");
        assert_eq!(release.date.to_string(), "2026-11-30T00:22:33Z");
        assert_eq!(release.valid_until.unwrap().to_string(), "2026-12-07T00:22:33Z");
        assert!(release.acquire_by_hash);
        let (path, size, _) = release.packages_index("amd64").unwrap();
        assert_eq!((path, size), ("main/binary-amd64/Packages.xz", 311108));
        assert!(release.packages_index("arm64").unwrap_err().to_string().contains("binary-arm64/Packages.xz"));
    }
}
