//! The supply-chain tools (scanner, SBOM, signing, DB builder, registry, workflow checkers) and the test cluster's
//! Kubernetes components and admission webhook, pinned in `tools/pins.toml` and installed into `.tools/bin`.
//!
//! A tool already on PATH is used when it reports the pinned major version and at least the pinned minor one;
//! otherwise the pinned version is built from source with Go (`go install MODULE@VERSION`, or `go build` in a tools
//! module under `tools/` when a dependency must be raised), or installed from PyPI by a hash-checked lock into a
//! virtual environment of its own. Go's build and module caches live in the home directory and serve every later
//! build.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;
use xshell::cmd;

use crate::context::Context;
use crate::stamp::{self, Stamp};

pub const PINS_FILE: &str = "tools/pins.toml";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Tool {
    Trivy,
    TrivyDb,
    Cosign,
    Syft,
    Registry,
    Actionlint,
    Zizmor,
    KubeApiserver,
    KubeControllerManager,
    KubeScheduler,
    Kubelet,
    Kubectl,
    PolicyController,
}

impl Tool {
    /// What the pipeline itself runs: `cargo xtask ci` makes these available.
    pub const SUPPLY_CHAIN: [Tool; 7] =
        [Tool::Trivy, Tool::TrivyDb, Tool::Cosign, Tool::Syft, Tool::Registry, Tool::Actionlint, Tool::Zizmor];
    /// The Kubernetes test's cluster (`xtask/tests/common/kube.rs`): minutes to build, so not part of `ci`.
    pub const CLUSTER: [Tool; 6] = [
        Tool::KubeApiserver,
        Tool::KubeControllerManager,
        Tool::KubeScheduler,
        Tool::Kubelet,
        Tool::Kubectl,
        Tool::PolicyController,
    ];
    /// Every pinned tool: the supply chain's, then the cluster's.
    pub fn all() -> Vec<Tool> {
        [Tool::SUPPLY_CHAIN.as_slice(), Tool::CLUSTER.as_slice()].concat()
    }

    /// The binary's name, which is also its table in `tools/pins.toml`.
    pub fn binary(self) -> &'static str {
        match self {
            Tool::Trivy => "trivy",
            Tool::TrivyDb => "trivy-db",
            Tool::Cosign => "cosign",
            Tool::Syft => "syft",
            Tool::Registry => "registry",
            Tool::Actionlint => "actionlint",
            Tool::Zizmor => "zizmor",
            Tool::KubeApiserver => "kube-apiserver",
            Tool::KubeControllerManager => "kube-controller-manager",
            Tool::KubeScheduler => "kube-scheduler",
            Tool::Kubelet => "kubelet",
            Tool::Kubectl => "kubectl",
            Tool::PolicyController => "policy-controller",
        }
    }
}

/// One table of `tools/pins.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Pin {
    /// The pinned version, without a leading `v`.
    version: String,
    go_install: Option<String>,
    go_build: Option<GoBuild>,
    /// A hash-pinned requirements file (relative to the workspace root) installed with pip, wheels only.
    pip_lock: Option<String>,
    /// `-X` assignments that stamp the version into the binary, as the release builds do (`go install` does not):
    /// `PACKAGE.VARIABLE=VALUE`, where `{version}`, `{major}` and `{minor}` in VALUE stand for the pinned version
    /// and its first two numbers.
    #[serde(default)]
    version_variables: Vec<String>,
    /// Arguments that make the tool print its version; without them only the pinned build is used.
    version_args: Option<Vec<String>>,
    /// `GOEXPERIMENT` the tool's release builds use and its code needs.
    #[serde(default)]
    go_experiment: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GoBuild {
    module: String,
    package: String,
}

/// How a pin is built, exactly one way.
enum Recipe<'a> {
    Install(&'a str),
    Module(&'a GoBuild),
    PipLock(&'a str),
}

impl Pin {
    fn recipe(&self, name: &str) -> Result<Recipe<'_>> {
        match (&self.go_install, &self.go_build, &self.pip_lock) {
            (Some(target), None, None) => Ok(Recipe::Install(target)),
            (None, Some(module), None) => Ok(Recipe::Module(module)),
            (None, None, Some(lock)) => Ok(Recipe::PipLock(lock)),
            _ => bail!("{PINS_FILE}: [{name}] must have exactly one of `go_install`, `go_build` and `pip_lock`"),
        }
    }

    fn is_go(&self) -> bool {
        self.pip_lock.is_none()
    }

    fn ldflags(&self) -> String {
        // -s -w drop the symbol and DWARF tables: a third smaller, nothing lost for tools that are only run.
        let mut numbers = self.version.split('.');
        let (major, minor) = (numbers.next().unwrap_or_default(), numbers.next().unwrap_or_default());
        let mut ldflags = "-s -w".to_owned();
        for variable in &self.version_variables {
            let value =
                variable.replace("{version}", &self.version).replace("{major}", major).replace("{minor}", minor);
            ldflags.push_str(&format!(" -X {value}"));
        }
        ldflags
    }
}

fn read_pins(root: &Path) -> Result<BTreeMap<String, Pin>> {
    let path = root.join(PINS_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid {}", path.display()))
}

fn pin_of(pins: &BTreeMap<String, Pin>, tool: Tool) -> Result<&Pin> {
    pins.get(tool.binary()).with_context(|| format!("{PINS_FILE} has no [{}] table", tool.binary()))
}

/// The pinned version of `tool`, as written in `tools/pins.toml` (without a leading `v`).
pub fn version(ctx: &Context, tool: Tool) -> Result<String> {
    Ok(pin_of(&read_pins(&ctx.root)?, tool)?.version.clone())
}

/// Makes every one of `tools` available, first saying how long building the missing ones takes.
pub fn ensure_all(ctx: &Context, tools: &[Tool]) -> Result<Vec<(Tool, PathBuf)>> {
    let pins = read_pins(&ctx.root)?;
    let around = Surroundings::of(ctx);
    let mut to_build = Vec::new();
    for &tool in tools {
        let pin = pin_of(&pins, tool)?;
        let missing =
            !stamp_of(ctx, tool, pin, &around)?.is_current() && acceptable_on_path(ctx, tool, pin, &around).is_none();
        if missing && pin.is_go() {
            to_build.push(tool);
        }
    }
    if !to_build.is_empty() {
        // Said before it starts: on a new machine this is the longest step of the first run, and silent for minutes.
        let mut expected = Vec::new();
        if to_build.iter().any(|tool| Tool::SUPPLY_CHAIN.contains(tool)) {
            expected.push("15-20 minutes for the supply-chain tools (trivy alone takes about 7)");
        }
        if to_build.iter().any(|tool| Tool::CLUSTER.contains(tool)) {
            expected.push("10-20 for the test cluster's (kube-apiserver alone takes about half)");
        }
        let names: Vec<&str> = to_build.iter().map(|tool| tool.binary()).collect();
        eprintln!(
            "xtask: building {} from source with Go: expect {} on a new machine (cold Go cache), seconds once the Go \
             cache is warm",
            names.join(", "),
            expected.join(" and ")
        );
    }
    tools.iter().map(|&tool| Ok((tool, ensure(ctx, tool)?))).collect()
}

/// The path of a usable `tool`: the pinned build in `.tools/bin`, an acceptable one on PATH, or a fresh build.
pub fn ensure(ctx: &Context, tool: Tool) -> Result<PathBuf> {
    // One lock for the whole process: tests run on threads and must not build the same tool twice at once.
    static RESOLVED: OnceLock<Mutex<HashMap<Tool, PathBuf>>> = OnceLock::new();
    let mut resolved = RESOLVED.get_or_init(Default::default).lock().unwrap_or_else(|poison| poison.into_inner());
    if let Some(path) = resolved.get(&tool) {
        return Ok(path.clone());
    }
    let pins = read_pins(&ctx.root)?;
    let pin = pin_of(&pins, tool)?;
    let path = resolve(ctx, tool, pin, &Surroundings::of(ctx))
        .with_context(|| format!("installing {} {}", tool.binary(), pin.version))?;
    resolved.insert(tool, path.clone());
    Ok(path)
}

pub fn bin_dir(ctx: &Context) -> PathBuf {
    ctx.root.join(".tools").join("bin")
}

/// Where tools are looked for and built with.
struct Surroundings {
    bin_dir: PathBuf,
    search_path: OsString,
    go: PathBuf,
}

impl Surroundings {
    fn of(ctx: &Context) -> Surroundings {
        Surroundings {
            bin_dir: bin_dir(ctx),
            search_path: std::env::var_os("PATH").unwrap_or_default(),
            go: PathBuf::from("go"),
        }
    }
}

/// The stamp of the pinned build: what it was built from (a changed pin or tools module rebuilds).
fn stamp_of(ctx: &Context, tool: Tool, pin: &Pin, around: &Surroundings) -> Result<Stamp> {
    let name = tool.binary();
    let mut recipe =
        format!("{name} {}\nldflags: {}\nGOEXPERIMENT={}\n", pin.version, pin.ldflags(), pin.go_experiment);
    let mut inputs = Vec::new();
    match pin.recipe(name)? {
        Recipe::Install(target) => recipe.push_str(&format!("go install {target}\n")),
        Recipe::Module(module) => {
            recipe.push_str(&format!("go build {} in {}\n", module.package, module.module));
            inputs.extend(["go.mod", "go.sum"].map(|file| ctx.root.join(&module.module).join(file)));
        }
        Recipe::PipLock(lock) => {
            recipe.push_str(&format!("pip install -r {lock}\n"));
            inputs.push(ctx.root.join(lock));
        }
    }
    let mut module_files = Vec::new();
    for path in &inputs {
        let file = path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
        module_files.push((file, std::fs::read(path).with_context(|| format!("reading {}", path.display()))?));
    }
    let parts = std::iter::once(("recipe", recipe.as_bytes()))
        .chain(module_files.iter().map(|(file, content)| (*file, content.as_slice())));
    Ok(Stamp::new(around.bin_dir.join(format!(".{name}.pin")), stamp::fingerprint(parts)))
}

fn resolve(ctx: &Context, tool: Tool, pin: &Pin, around: &Surroundings) -> Result<PathBuf> {
    let name = tool.binary();
    let pinned = around.bin_dir.join(name);
    let stamp = stamp_of(ctx, tool, pin, around)?;
    if pinned.is_file() && stamp.is_current() {
        eprintln!("xtask: using {name} {} (pinned build, {})", pin.version, pinned.display());
        return Ok(pinned);
    }
    if let Some((path, version)) = acceptable_on_path(ctx, tool, pin, around) {
        eprintln!("xtask: using {name} {version} from PATH ({}; pinned is {})", path.display(), pin.version);
        return Ok(path);
    }
    build(ctx, tool, pin, &around.go, &pinned)?;
    stamp.record()?;
    Ok(pinned)
}

/// A binary of that name on PATH (outside `.tools/bin`) whose version is the pinned major and at least its minor.
fn acceptable_on_path(ctx: &Context, tool: Tool, pin: &Pin, around: &Surroundings) -> Option<(PathBuf, String)> {
    let version_args = pin.version_args.as_ref()?;
    let name = tool.binary();
    let path = std::env::split_paths(&around.search_path)
        .filter(|dir| dir != &around.bin_dir)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())?;
    let output = cmd!(ctx.sh, "{path} {version_args...}").quiet().ignore_stderr().read().ok()?;
    let found = parse_version(&output)?;
    let wanted = parse_version(&pin.version)?;
    let shown = format!("{}.{}.{}", found.0, found.1, found.2);
    if found.0 == wanted.0 && found.1 >= wanted.1 {
        return Some((path, shown));
    }
    eprintln!(
        "xtask: ignoring {name} {shown} on PATH ({}): {name} {}.{} or a newer minor release is needed",
        path.display(),
        wanted.0,
        wanted.1
    );
    None
}

/// The first `MAJOR.MINOR.PATCH` (optionally after a `v`) in a tool's version output.
fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|word| {
            let mut parts = word.split('.');
            let numbers = (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
            Some(numbers)
        })
        .next()
}

fn build(ctx: &Context, tool: Tool, pin: &Pin, go: &Path, output: &Path) -> Result<()> {
    let name = tool.binary();
    if let Recipe::PipLock(lock) = pin.recipe(name)? {
        return install_from_pypi(ctx, name, lock, output);
    }
    let sh = &ctx.sh;
    if cmd!(sh, "{go} version").quiet().ignore_stderr().read().is_err() {
        bail!(
            "{name} {version} is neither built in .tools/bin nor on PATH, and building it needs Go 1.26 or newer, \
             which is not installed: install Go (https://go.dev/doc/install, or the `golang-go` package where it \
             is 1.26+) and run `cargo xtask tools` again, or put {name} {major_minor} or newer on PATH",
            version = pin.version,
            major_minor = pin.version.splitn(3, '.').take(2).collect::<Vec<_>>().join("."),
        );
    }
    let bin_dir = output.parent().context("tool path has no parent")?;
    // Built beside the final place and renamed over it: a process still running the old binary keeps it.
    let staging = bin_dir.join(".staging");
    std::fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    let built = staging.join(name);
    let ldflags = format!("-ldflags={}", pin.ldflags());
    let started = Instant::now();
    eprintln!("xtask: building {name} {} with Go (minutes on a cold Go cache, seconds afterwards)", pin.version);
    // Reproducible, independent of whatever module the current directory belongs to, and with the local Go.
    let environment = [("GOFLAGS", "-buildvcs=false"), ("GOTOOLCHAIN", "local"), ("GOEXPERIMENT", &pin.go_experiment)];
    match pin.recipe(name)? {
        Recipe::Install(target) => cmd!(sh, "{go} install -trimpath {ldflags} {target}")
            .envs(environment)
            .env("GOBIN", &staging)
            .run()
            .with_context(|| format!("`go install {target}` failed"))?,
        Recipe::Module(module) => {
            let _dir = sh.push_dir(ctx.root.join(&module.module));
            let package = &module.package;
            cmd!(sh, "{go} build -trimpath -mod=readonly {ldflags} -o {built} {package}")
                .envs(environment)
                .run()
                .with_context(|| format!("`go build {package}` in {} failed", module.module))?
        }
        Recipe::PipLock(_) => unreachable!("installed from PyPI above"),
    }
    std::fs::rename(&built, output).with_context(|| {
        format!("the build did not produce {} (moving it to {})", built.display(), output.display())
    })?;
    let size = std::fs::metadata(output)?.len();
    eprintln!(
        "xtask: built {name} {} in {:.0?} ({:.1} MiB) at {}",
        pin.version,
        started.elapsed(),
        size as f64 / (1024.0 * 1024.0),
        output.display()
    );
    Ok(())
}

/// Installs a hash-pinned lock into `.tools/venvs/<name>` (wheels only) and links its program as `output`.
fn install_from_pypi(ctx: &Context, name: &str, lock: &str, output: &Path) -> Result<()> {
    let sh = &ctx.sh;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    if cmd!(sh, "{python} --version").quiet().ignore_stdout().ignore_stderr().run().is_err() {
        bail!(
            "{name} is installed from {lock} with Python 3.11 or newer, and `{python}` was not found: install python3 \
             with its venv module (Debian: `apt-get install python3 python3-venv`) or name one in PYTHON"
        );
    }
    let venv = ctx.root.join(".tools").join("venvs").join(name);
    eprintln!("xtask: installing {name} from {lock} into {}", venv.display());
    cmd!(sh, "{python} -m venv --clear {venv}")
        .run()
        .with_context(|| format!("`{python} -m venv` failed (Debian needs the python3-venv package)"))?;
    let pip = venv.join("bin/pip");
    let lock_path = ctx.root.join(lock);
    cmd!(sh, "{pip} install --quiet --require-hashes --no-deps --only-binary=:all: -r {lock_path}")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .run()
        .with_context(|| {
            format!("pip could not install {name} from {lock} (its output is above): PyPI (or PIP_INDEX_URL) is unreachable")
        })?;
    let program = venv.join("bin").join(name);
    anyhow::ensure!(program.is_file(), "installing {lock} did not provide {}", program.display());
    std::fs::create_dir_all(output.parent().context("tool path has no parent")?)?;
    let _ = std::fs::remove_file(output);
    std::os::unix::fs::symlink(&program, output).with_context(|| format!("linking {}", output.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_the_tools_own_words() {
        assert_eq!(parse_version("Version: 0.74.0\nVulnerability DB:"), Some((0, 74, 0)));
        assert_eq!(parse_version("GitVersion:    v3.1.3\nGitCommit: abc"), Some((3, 1, 3)));
        assert_eq!(parse_version("registry github.com/distribution/distribution/v3 v3.1.2+unknown"), Some((3, 1, 2)));
        assert_eq!(parse_version("Version: [not provided]"), None);
    }

    #[test]
    fn every_tool_has_a_pin_with_one_recipe_and_the_version_is_stamped_into_the_binary() {
        let ctx = Context::discover().unwrap();
        let pins = read_pins(&ctx.root).unwrap();
        for tool in Tool::all() {
            let pin = pin_of(&pins, tool).unwrap();
            pin.recipe(tool.binary()).unwrap();
        }
        let ldflags = |tool| pin_of(&pins, tool).unwrap().ldflags();
        assert_eq!(ldflags(Tool::Trivy), "-s -w -X github.com/aquasecurity/trivy/pkg/version/app.ver=0.74.0");
        assert_eq!(ldflags(Tool::Cosign), "-s -w -X sigs.k8s.io/release-utils/version.gitVersion=v3.1.3");
        assert_eq!(ldflags(Tool::Registry), "-s -w");
        assert_eq!(
            ldflags(Tool::Kubelet),
            "-s -w -X k8s.io/component-base/version.gitVersion=v1.34.12 -X k8s.io/component-base/version.gitMajor=1 \
             -X k8s.io/component-base/version.gitMinor=34"
        );
        assert_eq!(pins.len(), Tool::all().len(), "every table of {PINS_FILE} is a tool the xtask knows");
        let names: std::collections::BTreeSet<&str> = Tool::all().into_iter().map(Tool::binary).collect();
        assert_eq!(names.len(), Tool::all().len(), "no tool is in both Tool::SUPPLY_CHAIN and Tool::CLUSTER");
    }

    #[test]
    fn a_tool_that_is_nowhere_and_cannot_be_built_is_a_clear_error() {
        let ctx = Context::discover().unwrap();
        let pins = read_pins(&ctx.root).unwrap();
        let empty = tempfile::tempdir().unwrap();
        let around = Surroundings {
            bin_dir: empty.path().to_owned(),
            search_path: empty.path().as_os_str().to_owned(),
            go: empty.path().join("go"),
        };
        let error =
            format!("{:#}", resolve(&ctx, Tool::Trivy, pin_of(&pins, Tool::Trivy).unwrap(), &around).unwrap_err());
        assert!(error.contains("trivy 0.74.0 is neither built in .tools/bin nor on PATH"), "{error}");
        assert!(error.contains("needs Go 1.26 or newer"), "{error}");
        assert!(error.contains("or put trivy 0.74 or newer on PATH"), "{error}");
    }
}
