//! The workspace as every stage sees it, read once per command and handed down: where it is, the images and their
//! settings, the git revision, the Docker engine, and where each artifact goes under `out/`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context as _, Result};
use xshell::Shell;

use crate::docker::Engine;
use crate::images::Image;
use crate::out::Out;
use crate::revision::Revision;

pub struct Context {
    pub root: PathBuf,
    pub sh: Shell,
    pub out: Out,
    images: Vec<Image>,
    // Asked for only by the stages that need them, then kept: git and the engine answer once per command.
    revision: OnceLock<Revision>,
    engine: OnceLock<Engine>,
}

impl Context {
    /// The workspace this xtask belongs to: the parent of its manifest directory, wherever cargo was run from.
    pub fn discover() -> Result<Self> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("xtask must live one level below the workspace root")?
            .to_path_buf();
        Self::at(root)
    }

    /// The workspace at `root` (a checkout made by a test, say).
    pub fn at(root: PathBuf) -> Result<Self> {
        let sh = Shell::new()?;
        sh.change_dir(&root);
        let images = crate::images::read_all(&root)?;
        Ok(Self {
            out: Out::new(root.join("out")),
            root,
            sh,
            images,
            revision: OnceLock::new(),
            engine: OnceLock::new(),
        })
    }

    /// Every image folder under `images/`, sorted by name.
    pub fn images(&self) -> &[Image] {
        &self.images
    }

    pub fn image(&self, name: &str) -> Result<&Image> {
        crate::images::find(&self.images, name)
    }

    /// The images named on the command line, the deliverables when none is named.
    pub fn select(&self, names: &[String]) -> Result<Vec<&Image>> {
        crate::images::select(&self.images, names)
    }

    /// The named images (all when none is named) followed by the companions they need.
    pub fn with_companions(&self, names: &[String]) -> Result<Vec<&Image>> {
        crate::images::with_companions(&self.images, names)
    }

    /// The local tag of an image built from this revision.
    pub fn reference(&self, image: &str) -> Result<String> {
        Ok(crate::images::reference(image, &self.revision()?.tag))
    }

    /// The engine's tag of one platform's image: [`Context::reference`], with `-arm64` appended for arm64.
    pub fn platform_reference(&self, image: &str, platform: crate::platform::Platform) -> Result<String> {
        Ok(format!("{}{}", self.reference(image)?, platform.tag_suffix()))
    }

    /// The commit being built, read from git on first use.
    pub fn revision(&self) -> Result<&Revision> {
        if let Some(revision) = self.revision.get() {
            return Ok(revision);
        }
        let revision = Revision::read(&self.sh)?;
        Ok(self.revision.get_or_init(|| revision))
    }

    /// The Docker engine and the builder that talks to it, checked on first use.
    pub fn engine(&self) -> Result<&Engine> {
        if let Some(engine) = self.engine.get() {
            return Ok(engine);
        }
        let engine = Engine::connect(&self.sh)?;
        Ok(self.engine.get_or_init(|| engine))
    }

    /// The content-addressed cache of Debian packages (`debian::PackageCache`): `XTASK_PACKAGE_CACHE` when set (a
    /// folder several checkouts or machines share), else `.cache/packages` in the workspace.
    pub fn package_cache(&self) -> PathBuf {
        std::env::var_os("XTASK_PACKAGE_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| self.root.join(".cache").join("packages"))
    }

    /// True under `CI=true` or `CI=1` (GitHub Actions, `.ci/run`): missing tools are errors there, never skips.
    pub fn in_ci() -> bool {
        std::env::var("CI").is_ok_and(|value| value.eq_ignore_ascii_case("true") || value == "1")
    }

    pub fn is_github_actions() -> bool {
        std::env::var("GITHUB_ACTIONS").is_ok_and(|value| value == "true")
    }

    /// Runs a command and returns its trimmed stdout, naming the command in the error.
    pub fn read(&self, program: &str, args: &[&str]) -> Result<String> {
        let sh = &self.sh;
        xshell::cmd!(sh, "{program} {args...}")
            .quiet()
            .read()
            .with_context(|| format!("running `{program} {}`", args.join(" ")))
    }
}
