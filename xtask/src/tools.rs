//! `cargo xtask tools`: the Go programs of the supply chain (scanner, SBOM, signing, DB builder, registry),
//! pinned by version and built from source into `.tools/bin`.
//!
//! A tool already on PATH is used when it reports the pinned major version and at least the pinned minor one;
//! otherwise the pinned version is built with the Go toolchain (`go install MODULE@VERSION`, or `go build` from a
//! tools module under `tools/` when a dependency must be raised). Go's build and module caches (`go env GOCACHE
//! GOMODCACHE`) live in the home directory and are reused by every later build.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use sha2::{Digest, Sha256};
use xshell::cmd;

use crate::context::Context;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Tool {
    Trivy,
    TrivyDb,
    Cosign,
    Syft,
    Registry,
    Actionlint,
}

impl Tool {
    pub const ALL: [Tool; 6] = [Tool::Trivy, Tool::TrivyDb, Tool::Cosign, Tool::Syft, Tool::Registry, Tool::Actionlint];

    pub fn binary(self) -> &'static str {
        self.pin().binary
    }

    /// The pinned version, without a leading `v`.
    pub fn version(self) -> &'static str {
        self.pin().version
    }

    fn pin(self) -> &'static Pin {
        match self {
            Tool::Trivy => &TRIVY,
            Tool::TrivyDb => &TRIVY_DB,
            Tool::Cosign => &COSIGN,
            Tool::Syft => &SYFT,
            Tool::Registry => &REGISTRY,
            Tool::Actionlint => &ACTIONLINT,
        }
    }
}

struct Pin {
    binary: &'static str,
    version: &'static str,
    build: Build,
    /// `-X` flag that stamps the version into the binary (the release builds set it; `go install` does not).
    version_variable: Option<&'static str>,
    /// Arguments that make the tool print its version; without them only the pinned build is used.
    version_args: Option<&'static [&'static str]>,
    /// `GOEXPERIMENT` the tool's release builds use and its code needs.
    go_experiment: &'static str,
}

enum Build {
    /// `go install PACKAGE@VERSION`: the module's own go.mod and go.sum decide every dependency.
    Install { package: &'static str, module_version: &'static str },
    /// `go build PACKAGE` inside a tools module under `tools/`, whose go.mod pins the tool and raises dependencies.
    Module { dir: &'static str, package: &'static str },
}

// The newest releases the Go module proxy serves and can build with Go 1.26 (checked 2026-11): trivy v0.74.0;
// trivy-db has no tags, its newest pseudo-version; cosign v3.1.3 (v3.1.4 needs Go 1.27); distribution v3.1.2;
// syft v1.54.1, because the proxy refuses dependencies of v1.55.0 to v1.57.0 (go-spdx v2.7.1/v2.8.0, docker/cli
// v29.9.2).
const TRIVY: Pin = Pin {
    binary: "trivy",
    version: "0.74.0",
    // tools/trivy/go.mod explains why this one is built from a module.
    build: Build::Module { dir: "tools/trivy", package: "github.com/aquasecurity/trivy/cmd/trivy" },
    version_variable: Some("github.com/aquasecurity/trivy/pkg/version/app.ver"),
    version_args: Some(&["--version"]),
    // trivy uses encoding/json/v2, still an experiment in Go 1.26.
    go_experiment: "jsonv2",
};
const TRIVY_DB: Pin = Pin {
    binary: "trivy-db",
    version: "0.0.0-20260813095258-0e0340a01b57",
    build: Build::Install {
        package: "github.com/aquasecurity/trivy-db/cmd/trivy-db",
        module_version: "v0.0.0-20260813095258-0e0340a01b57",
    },
    version_variable: None,
    version_args: None,
    go_experiment: "",
};
const COSIGN: Pin = Pin {
    binary: "cosign",
    version: "3.1.3",
    // tools/cosign/go.mod explains why this one is built from a module.
    build: Build::Module { dir: "tools/cosign", package: "github.com/sigstore/cosign/v3/cmd/cosign" },
    version_variable: Some("sigs.k8s.io/release-utils/version.gitVersion=v"),
    version_args: Some(&["version"]),
    go_experiment: "",
};
const SYFT: Pin = Pin {
    binary: "syft",
    version: "1.54.1",
    build: Build::Install { package: "github.com/anchore/syft/cmd/syft", module_version: "v1.54.1" },
    version_variable: Some("main.version"),
    version_args: Some(&["version"]),
    go_experiment: "",
};
const REGISTRY: Pin = Pin {
    binary: "registry",
    version: "3.1.2",
    build: Build::Install { package: "github.com/distribution/distribution/v3/cmd/registry", module_version: "v3.1.2" },
    version_variable: None,
    version_args: Some(&["--version"]),
    go_experiment: "",
};

/// Checks the GitHub Actions workflows (`.github/workflows/*.yml`).
const ACTIONLINT: Pin = Pin {
    binary: "actionlint",
    version: "1.7.12",
    build: Build::Install { package: "github.com/rhysd/actionlint/cmd/actionlint", module_version: "v1.7.12" },
    version_variable: None,
    version_args: None,
    go_experiment: "",
};

#[derive(clap::Args)]
pub struct ToolsArgs {
    /// Tools to install (default: all).
    #[arg(value_enum)]
    tools: Vec<Tool>,
}

/// `cargo xtask tools`: makes every (or every named) tool available and lists what is used.
pub fn run(ctx: &Context, args: &ToolsArgs) -> Result<()> {
    let resolved = if args.tools.is_empty() {
        ensure_all(ctx)?
    } else {
        args.tools.iter().map(|&tool| Ok((tool, ensure(ctx, tool)?))).collect::<Result<Vec<_>>>()?
    };
    for (tool, path) in resolved {
        println!("{:<9} {}", tool.binary(), path.display());
    }
    Ok(())
}

pub fn ensure_all(ctx: &Context) -> Result<Vec<(Tool, PathBuf)>> {
    let around = Surroundings::of(ctx);
    let to_build: Vec<&str> = Tool::ALL
        .into_iter()
        .filter(|tool| {
            !built_and_current(ctx, tool.pin(), &around) && acceptable_on_path(ctx, tool.pin(), &around).is_none()
        })
        .map(Tool::binary)
        .collect();
    if !to_build.is_empty() {
        // Said before it starts: on a new machine this is the longest step of the first run, and silent for minutes.
        eprintln!(
            "xtask: building {} from source with Go: expect 15-20 minutes on a new machine (cold Go cache; \
             trivy alone takes about 7), seconds once the Go cache is warm",
            to_build.join(", ")
        );
    }
    Tool::ALL.into_iter().map(|tool| Ok((tool, ensure(ctx, tool)?))).collect()
}

/// The path of a usable `tool`: the pinned build in `.tools/bin`, an acceptable one on PATH, or a fresh build.
pub fn ensure(ctx: &Context, tool: Tool) -> Result<PathBuf> {
    // One lock for the whole process: tests run on threads and must not build the same tool twice at once.
    static RESOLVED: OnceLock<Mutex<HashMap<Tool, PathBuf>>> = OnceLock::new();
    let mut resolved = RESOLVED.get_or_init(Default::default).lock().unwrap_or_else(|poison| poison.into_inner());
    if let Some(path) = resolved.get(&tool) {
        return Ok(path.clone());
    }
    let path = resolve(ctx, tool.pin(), &Surroundings::of(ctx))
        .with_context(|| format!("installing {} {}", tool.binary(), tool.version()))?;
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

/// Whether `.tools/bin` holds the pinned build made from the current recipe.
fn built_and_current(ctx: &Context, pin: &Pin, around: &Surroundings) -> bool {
    let stamp = around.bin_dir.join(format!(".{}.pin", pin.binary));
    around.bin_dir.join(pin.binary).is_file()
        && recipe(ctx, pin).is_ok_and(|recipe| std::fs::read_to_string(&stamp).is_ok_and(|built| built == recipe))
}

fn resolve(ctx: &Context, pin: &Pin, around: &Surroundings) -> Result<PathBuf> {
    let pinned = around.bin_dir.join(pin.binary);
    let stamp = around.bin_dir.join(format!(".{}.pin", pin.binary));
    let recipe = recipe(ctx, pin)?;
    if built_and_current(ctx, pin, around) {
        eprintln!("xtask: using {} {} (pinned build, {})", pin.binary, pin.version, pinned.display());
        return Ok(pinned);
    }
    if let Some((path, version)) = acceptable_on_path(ctx, pin, around) {
        eprintln!("xtask: using {} {version} from PATH ({}; pinned is {})", pin.binary, path.display(), pin.version);
        return Ok(path);
    }
    build(ctx, pin, &around.go, &pinned)?;
    std::fs::write(&stamp, &recipe).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(pinned)
}

/// What a build depends on, compared with the stamp of the last build: a changed pin or tools module rebuilds.
fn recipe(ctx: &Context, pin: &Pin) -> Result<String> {
    let mut recipe =
        format!("{} {}\nldflags: {}\nGOEXPERIMENT={}\n", pin.binary, pin.version, ldflags(pin), pin.go_experiment);
    match pin.build {
        Build::Install { package, module_version } => {
            recipe.push_str(&format!("go install {package}@{module_version}\n"))
        }
        Build::Module { dir, package } => {
            let mut hasher = Sha256::new();
            for file in ["go.mod", "go.sum"] {
                let path = ctx.root.join(dir).join(file);
                hasher.update(std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?);
            }
            let digest: String = hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect();
            recipe.push_str(&format!("go build {package} in {dir} (go.mod+go.sum sha256 {digest})\n"));
        }
    }
    Ok(recipe)
}

fn ldflags(pin: &Pin) -> String {
    // -s -w drop the symbol and DWARF tables: a third smaller, nothing lost for tools that are only run.
    match pin.version_variable {
        // A variable that ends in `=v` wants the version with its `v`.
        Some(variable) if variable.ends_with("=v") => format!("-s -w -X {variable}{}", pin.version),
        Some(variable) => format!("-s -w -X {variable}={}", pin.version),
        None => "-s -w".to_owned(),
    }
}

/// A binary of that name on PATH (outside `.tools/bin`) whose version is the pinned major and at least its minor.
fn acceptable_on_path(ctx: &Context, pin: &Pin, around: &Surroundings) -> Option<(PathBuf, String)> {
    let version_args = pin.version_args?;
    let path = std::env::split_paths(&around.search_path)
        .filter(|dir| dir != &around.bin_dir)
        .map(|dir| dir.join(pin.binary))
        .find(|candidate| candidate.is_file())?;
    let output = cmd!(ctx.sh, "{path} {version_args...}").quiet().ignore_stderr().read().ok()?;
    let found = parse_version(&output)?;
    let wanted = parse_version(pin.version)?;
    if found.0 == wanted.0 && found.1 >= wanted.1 {
        Some((path, format!("{}.{}.{}", found.0, found.1, found.2)))
    } else {
        eprintln!(
            "xtask: ignoring {} {}.{}.{} on PATH ({}): {} {}.{} or a newer minor release is needed",
            pin.binary,
            found.0,
            found.1,
            found.2,
            path.display(),
            pin.binary,
            wanted.0,
            wanted.1
        );
        None
    }
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

fn build(ctx: &Context, pin: &Pin, go: &Path, output: &Path) -> Result<()> {
    let sh = &ctx.sh;
    if cmd!(sh, "{go} version").quiet().ignore_stderr().read().is_err() {
        bail!(
            "{name} {version} is neither built in .tools/bin nor on PATH, and building it needs Go 1.26 or newer, \
             which is not installed: install Go (https://go.dev/doc/install, or the `golang-go` package where it \
             is 1.26+) and run `cargo xtask tools` again, or put {name} {major_minor} or newer on PATH",
            name = pin.binary,
            version = pin.version,
            major_minor = pin.version.splitn(3, '.').take(2).collect::<Vec<_>>().join("."),
        );
    }
    let bin_dir = output.parent().context("tool path has no parent")?;
    // Built beside the final place and renamed over it: a process still running the old binary keeps it.
    let staging = bin_dir.join(".staging");
    std::fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    let built = staging.join(pin.binary);
    let ldflags = format!("-ldflags={}", ldflags(pin));
    let started = Instant::now();
    eprintln!(
        "xtask: building {} {} with Go (minutes on a cold Go cache, seconds afterwards)",
        pin.binary, pin.version
    );
    match pin.build {
        Build::Install { package, module_version } => {
            let target = format!("{package}@{module_version}");
            cmd!(sh, "{go} install -trimpath {ldflags} {target}")
                .env("GOBIN", &staging)
                // Reproducible and independent of whatever module the current directory belongs to.
                .env("GOFLAGS", "-buildvcs=false")
                .env("GOTOOLCHAIN", "local")
                .env("GOEXPERIMENT", pin.go_experiment)
                .run()
                .with_context(|| format!("`go install {target}` failed"))?;
        }
        Build::Module { dir, package } => {
            let _dir = sh.push_dir(ctx.root.join(dir));
            cmd!(sh, "{go} build -trimpath -mod=readonly {ldflags} -o {built} {package}")
                .env("GOFLAGS", "-buildvcs=false")
                .env("GOTOOLCHAIN", "local")
                .env("GOEXPERIMENT", pin.go_experiment)
                .run()
                .with_context(|| format!("`go build {package}` in {dir} failed"))?;
        }
    }
    std::fs::rename(&built, output).with_context(|| {
        format!("the build did not produce {} (moving it to {})", built.display(), output.display())
    })?;
    let size =
        std::fs::metadata(output).with_context(|| format!("the build did not produce {}", output.display()))?.len();
    eprintln!(
        "xtask: built {} {} in {:.0?} ({:.1} MiB) at {}",
        pin.binary,
        pin.version,
        started.elapsed(),
        size as f64 / (1024.0 * 1024.0),
        output.display()
    );
    Ok(())
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
    fn the_version_is_stamped_into_the_binary() {
        assert_eq!(ldflags(&TRIVY), "-s -w -X github.com/aquasecurity/trivy/pkg/version/app.ver=0.74.0");
        assert_eq!(ldflags(&COSIGN), "-s -w -X sigs.k8s.io/release-utils/version.gitVersion=v3.1.3");
        assert_eq!(ldflags(&REGISTRY), "-s -w");
    }

    #[test]
    fn a_tool_that_is_nowhere_and_cannot_be_built_is_a_clear_error() {
        let ctx = Context::discover().unwrap();
        let empty = std::env::temp_dir().join(format!("xtask-no-tools-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        let around = Surroundings { bin_dir: empty.clone(), search_path: empty.clone().into(), go: empty.join("go") };
        let error = format!("{:#}", resolve(&ctx, &TRIVY, &around).unwrap_err());
        assert!(error.contains("trivy 0.74.0 is neither built in .tools/bin nor on PATH"), "{error}");
        assert!(error.contains("needs Go 1.26 or newer"), "{error}");
        assert!(error.contains("or put trivy 0.74 or newer on PATH"), "{error}");
        std::fs::remove_dir_all(&empty).unwrap();
    }
}
