//! The images of the project: one folder under `images/` each, described by its `image.toml`.
//!
//! Adding an image means adding a folder; nothing here names a particular image.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;

use crate::context::Context;

/// Where local tags live unless `XTASK_REPOSITORY` says otherwise.
pub const DEFAULT_REPOSITORY: &str = "distroless-python";

/// Settings of one image, read from `images/<name>/image.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// One line for humans and for the OCI description label.
    pub description: String,
    /// Build context, relative to the workspace root.
    #[serde(default = "default_context")]
    pub context: PathBuf,
    #[serde(default)]
    pub build_args: BTreeMap<String, String>,
    /// SPDX expression for the OCI `licenses` label.
    #[serde(default = "default_licenses")]
    pub licenses: String,
    /// The port the app listens on inside the container.
    pub port: u16,
    /// The HTTP endpoint that says the app is up; images without one (a database) are waited for on `port`.
    pub health: Option<Health>,
    /// Environment the container gets in healthchecks and tests.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Containers started beside it in healthchecks and tests (a database, say).
    #[serde(default)]
    pub needs: Vec<Companion>,
    /// For images without an HTTP health endpoint: the line on stderr that says the service is ready.
    pub ready_log: Option<String>,
    /// Whether this image is one of the project's deliverables (scanned, released) or only a test companion.
    #[serde(default = "yes")]
    pub release: bool,
    /// Adjustments of the workspace scan policy (`scan-policy.toml`) for this image.
    #[serde(default)]
    pub scan: crate::scan::policy::PolicyOverride,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    pub path: String,
    #[serde(default = "default_status")]
    pub status: u16,
    #[serde(default = "default_health_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// A container the image needs beside it: another image of this project, reachable under `alias`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Companion {
    /// Name of an image folder under `images/`.
    pub image: String,
    /// Host name the app uses to reach it on the private network.
    pub alias: String,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Port the companion listens on, waited for before the app starts.
    pub port: u16,
}

fn default_context() -> PathBuf {
    PathBuf::from(".")
}
fn default_licenses() -> String {
    "Apache-2.0".to_owned()
}
fn default_status() -> u16 {
    200
}
fn default_health_timeout() -> Duration {
    Duration::from_secs(60)
}
fn yes() -> bool {
    true
}

/// An image folder with its settings.
#[derive(Debug)]
pub struct Image {
    pub name: String,
    pub dir: PathBuf,
    pub settings: Settings,
}

impl Image {
    pub fn dockerfile(&self) -> PathBuf {
        self.dir.join("Dockerfile")
    }
}

/// Every image under `images/`, sorted by name.
pub fn all(ctx: &Context) -> Result<Vec<Image>> {
    let mut images = Vec::new();
    for entry in std::fs::read_dir(ctx.root.join("images")).context("reading images/")? {
        let dir = entry?.path();
        let manifest = dir.join("image.toml");
        if !manifest.is_file() {
            continue;
        }
        let name = dir.file_name().and_then(|n| n.to_str()).context("image folder name is not UTF-8")?.to_owned();
        let text = std::fs::read_to_string(&manifest).with_context(|| format!("reading {}", manifest.display()))?;
        let settings: Settings =
            toml::from_str(&text).with_context(|| format!("image {name}: invalid {}", manifest.display()))?;
        images.push(Image { name, dir, settings });
    }
    images.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(images)
}

/// The images named on the command line (the deliverables when none is named), in the order given.
pub fn select(ctx: &Context, names: &[String]) -> Result<Vec<Image>> {
    let mut all = all(ctx)?;
    if names.is_empty() {
        all.retain(|image| image.settings.release);
        return Ok(all);
    }
    let known: Vec<String> = all.iter().map(|image| image.name.clone()).collect();
    let mut chosen = Vec::new();
    for name in names {
        match all.iter().position(|image| &image.name == name) {
            Some(index) => chosen.push(all.remove(index)),
            None => {
                bail!("unknown image `{name}`: the images are {} (one folder each under images/)", known.join(", "))
            }
        }
    }
    Ok(chosen)
}

/// The git revision an image is tagged with: 12 hex digits, `-dirty` when the tree has uncommitted changes.
pub fn revision_tag(ctx: &Context) -> Result<String> {
    let sha = ctx
        .read("git", &["rev-parse", "--short=12", "HEAD"])
        .context("reading the git revision: is this a git checkout with a commit?")?;
    let status = ctx.read("git", &["status", "--porcelain", "--untracked-files=normal"])?;
    Ok(if status.is_empty() { sha } else { format!("{sha}-dirty") })
}

pub fn repository() -> String {
    std::env::var("XTASK_REPOSITORY").unwrap_or_else(|_| DEFAULT_REPOSITORY.to_owned())
}

/// `<repository>/<name>:<revision>`, the local tag of a built image.
pub fn reference(name: &str, revision: &str) -> String {
    format!("{}/{name}:{revision}", repository())
}

/// The named images (all when none is named) followed by the companions they need, each once.
pub fn with_companions(ctx: &Context, names: &[String]) -> Result<Vec<Image>> {
    let mut chosen = if names.is_empty() { all(ctx)? } else { select(ctx, names)? };
    let wanted: Vec<String> = chosen
        .iter()
        .flat_map(|image| image.settings.needs.iter().map(|need| need.image.clone()))
        .filter(|need| !chosen.iter().any(|image| &image.name == need))
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    let wanted: Vec<String> = wanted.into_iter().filter(|name| seen.insert(name.clone())).collect();
    if !wanted.is_empty() {
        chosen.extend(select(ctx, &wanted).context("an image.toml names an unknown image under `needs`")?);
    }
    Ok(chosen)
}
