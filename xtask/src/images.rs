//! The images of the project: one folder under `images/` each, described by its `image.toml`.
//!
//! Every fact about an image lives in its folder; nothing in the Rust code names a particular image.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;

use crate::policy::PolicyOverride;

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
    /// The port the app listens on inside the container (the Dockerfile's EXPOSE and HEALTHCHECK must agree).
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
    /// What the root filesystem leaves out, beyond what every image prunes.
    #[serde(default)]
    pub rootfs: Rootfs,
    /// The Python virtual environment the image installs, if it has one.
    pub venv: Option<Venv>,
    /// Adjustments of the workspace scan policy (`scan-policy.toml`) for this image.
    #[serde(default)]
    pub scan: PolicyOverride,
    /// What `cargo xtask bench` measures of this image, and against what.
    #[serde(default)]
    pub bench: Bench,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// The endpoint that says the app is ready to serve (what healthchecks and tests wait for).
    pub path: String,
    /// The endpoint that says the process is alive, for the Dockerfile's HEALTHCHECK (default: `path`). An app whose
    /// readiness depends on a database keeps answering here while the database is away.
    pub liveness_path: Option<String>,
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

/// What the root filesystem is made of, and the image-specific pruning handed to `images/common/assemble-rootfs.sh`
/// as build arguments.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rootfs {
    /// The Debian packages unpacked into it, each pinned in the image's `packages.lock` (`cargo xtask lock`).
    #[serde(default)]
    pub packages: Vec<String>,
    /// Paths (relative to `/`) that no process of this image runs or reads.
    #[serde(default)]
    pub prune: Vec<String>,
    /// Top-level standard-library modules or packages that the app and its packages never import.
    #[serde(default)]
    pub python_stdlib_omit: Vec<String>,
}

/// The app's virtual environment, installed in the build from the wheels of its hash-pinned lock.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Venv {
    /// The app's `requirements.lock`, relative to the workspace root.
    pub requirements: PathBuf,
}

/// Targets and baselines of `cargo xtask bench` for this image.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bench {
    /// The most the image may weigh uncompressed, in decimal megabytes.
    pub size_target_mb: Option<f64>,
    /// The longest the image may take from start to healthy.
    #[serde(default, with = "humantime_serde")]
    pub healthy_target: Option<Duration>,
    /// A folder under `bench/baselines/` with the same image under a Python entrypoint as PID 1.
    pub entrypoint_baseline: Option<String>,
    /// A file of the app changed by the incremental pipeline run (a change that renders to nothing).
    pub incremental_change: Option<String>,
    /// A throughput comparison of one endpoint against another way of serving it.
    pub load: Option<Load>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Load {
    /// A folder under `bench/baselines/` whose Dockerfile builds the comparison from the image (`ARG IMAGE`).
    pub baseline: String,
    /// What the baseline's `app` service runs instead of the image's own command.
    pub baseline_command: Vec<String>,
    /// What the baseline is, in the words of the page.
    pub baseline_description: String,
    pub path: String,
    /// The JSON body of each POST.
    pub body: String,
    /// What the target is, in the words of the page, and the factor over the baseline it asks for.
    pub target: String,
    pub times_baseline: f64,
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

    /// The image's health settings, or an error naming the image and the missing table.
    pub fn health(&self) -> Result<&Health> {
        self.settings
            .health
            .as_ref()
            .with_context(|| format!("image {} has no [health] endpoint in its image.toml", self.name))
    }
}

/// Every image under `root/images/`, sorted by name (none when the folder is missing).
pub fn read_all(root: &Path) -> Result<Vec<Image>> {
    let folder = root.join("images");
    if !folder.is_dir() {
        return Ok(Vec::new());
    }
    let mut images = Vec::new();
    for entry in std::fs::read_dir(&folder).context("reading images/")? {
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
    for image in &images {
        for need in &image.settings.needs {
            find(&images, &need.image).with_context(|| format!("image {}: its `[[needs]]` names", image.name))?;
        }
    }
    Ok(images)
}

/// The image of that name, or an error listing the images there are.
pub fn find<'a>(images: &'a [Image], name: &str) -> Result<&'a Image> {
    match images.iter().find(|image| image.name == name) {
        Some(image) => Ok(image),
        None => {
            let known: Vec<&str> = images.iter().map(|image| image.name.as_str()).collect();
            bail!("unknown image `{name}`: the images are {} (one folder each under images/)", known.join(", "))
        }
    }
}

/// The images named on the command line (the deliverables when none is named), in the order given.
pub fn select<'a>(images: &'a [Image], names: &[String]) -> Result<Vec<&'a Image>> {
    if names.is_empty() {
        return Ok(images.iter().filter(|image| image.settings.release).collect());
    }
    names.iter().map(|name| find(images, name)).collect()
}

/// The named images (all when none is named) followed by the companions they need, each once.
pub fn with_companions<'a>(images: &'a [Image], names: &[String]) -> Result<Vec<&'a Image>> {
    let mut chosen: Vec<&Image> = if names.is_empty() { images.iter().collect() } else { select(images, names)? };
    let mut index = 0;
    while index < chosen.len() {
        for need in &chosen[index].settings.needs {
            if !chosen.iter().any(|image| image.name == need.image) {
                chosen.push(find(images, &need.image)?);
            }
        }
        index += 1;
    }
    Ok(chosen)
}

pub fn repository() -> String {
    std::env::var("XTASK_REPOSITORY").unwrap_or_else(|_| DEFAULT_REPOSITORY.to_owned())
}

/// `<repository>/<name>:<tag>`, the local tag of a built image.
pub fn reference(name: &str, tag: &str) -> String {
    format!("{}/{name}:{tag}", repository())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str, release: bool, needs: &[&str]) -> Image {
        let needs: Vec<String> =
            needs.iter().map(|need| format!("[[needs]]\nimage = \"{need}\"\nalias = \"{need}\"\nport = 1\n")).collect();
        let text = format!("description = \"d\"\nport = 1\nrelease = {release}\n{}", needs.join("\n"));
        Image { name: name.to_owned(), dir: PathBuf::from(name), settings: toml::from_str(&text).unwrap() }
    }

    #[test]
    fn selection_defaults_to_the_deliverables_and_companions_come_once_after_them() {
        let images = [image("db", false, &[]), image("shop", true, &["db"]), image("web", true, &["db"])];
        let names = |chosen: Vec<&Image>| chosen.iter().map(|image| image.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(select(&images, &[]).unwrap()), ["shop", "web"]);
        assert_eq!(names(with_companions(&images, &["web".into(), "shop".into()]).unwrap()), ["web", "shop", "db"]);
        assert_eq!(names(with_companions(&images, &[]).unwrap()), ["db", "shop", "web"]);
        let error = select(&images, &["nope".into()]).unwrap_err().to_string();
        assert!(error.contains("unknown image `nope`") && error.contains("db, shop, web"), "{error}");
    }

    #[test]
    fn the_project_images_read_and_their_dockerfiles_agree_with_their_settings() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let images = read_all(root).unwrap();
        assert!(images.iter().filter(|image| image.settings.release).count() >= 2);
        for image in &images {
            let dockerfile = std::fs::read_to_string(image.dockerfile()).unwrap();
            let base = format!("ARG DEBIAN_BASE={}", crate::debian_base::OFFICIAL_BASE);
            assert!(dockerfile.lines().any(|line| line == base), "{}: the Dockerfile must say `{base}`", image.name);
            let port = image.settings.port;
            assert!(
                dockerfile.lines().any(|line| line.trim() == format!("EXPOSE {port}")),
                "{}: the Dockerfile must EXPOSE {port}, the port of image.toml",
                image.name
            );
            if let Some(health) = &image.settings.health {
                let url = format!("http://127.0.0.1:{port}{}", health.liveness_path.as_ref().unwrap_or(&health.path));
                assert!(
                    dockerfile.contains(&format!("\"{url}\"")),
                    "{}: the Dockerfile's HEALTHCHECK must probe {url}, the liveness endpoint of image.toml",
                    image.name
                );
            }
        }
    }
}
