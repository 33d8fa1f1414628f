//! Builds the launcher crate as the static binary that every image runs as PID 1.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use xshell::cmd;

use crate::context::Context;
use crate::platform::Platform;

const CARGO_AUDITABLE_VERSION: &str = "0.7.7";

/// Where the Dockerfiles copy the launcher of a platform from, relative to the build context
/// (`launcher/${TARGETARCH}/launcher`).
pub fn context_path(platform: Platform) -> String {
    format!("launcher/{}/launcher", platform.arch())
}

/// Builds `launcher` for musl with cargo-auditable, so that scanners can list its crates, and returns the path of
/// the binary. The binary is the same wherever the checkout, the cargo home and the target folder are: their paths
/// are remapped to fixed ones (rustc writes source paths into panic locations), and rust-toolchain.toml pins rustc.
///
/// Cross builds (arm64 on amd64) link with the toolchain's own rust-lld: musl's C runtime ships with the Rust
/// target, so no cross C toolchain is needed.
pub fn build(ctx: &Context, platform: Platform) -> Result<PathBuf> {
    let target = platform.rust_target();
    ensure_target(ctx, target)?;
    let cargo_auditable = ensure_cargo_auditable(ctx)?;
    let sh = &ctx.sh;
    // cargo runs cargo-auditable, its rustc wrapper, from PATH.
    let path = std::env::join_paths(
        std::iter::once(cargo_auditable.parent().unwrap().to_path_buf())
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| ctx.root.join("target"), PathBuf::from);
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    // The last matching prefix wins: the target folder may lie inside the checkout.
    let remaps = [(&ctx.root, "/workspace"), (&cargo_home, "/cargo"), (&target_dir, "/target")]
        .map(|(from, to)| format!("--remap-path-prefix={}={to}", from.display()))
        .join(" ");
    // What `cargo auditable build` does, but naming its wrapper by name (found on PATH) rather than by its absolute
    // path: cargo hashes the wrapper's path into the symbols of the workspace's crates, so a wrapper installed in
    // another checkout would lay the binary out differently. The arguments are the ones `cargo auditable` hands on.
    let auditable_arguments = r#"{"offline":false,"locked":true,"frozen":false,"config":[]}"#;
    let target_variable = target.to_uppercase().replace('-', "_");
    let mut build = cmd!(sh, "cargo build --quiet --locked --package launcher --profile launcher --target {target}")
        .env("PATH", path)
        .env("RUSTC_WORKSPACE_WRAPPER", "cargo-auditable")
        .env("CARGO_AUDITABLE_ORIG_ARGS", auditable_arguments)
        .env(format!("CARGO_TARGET_{target_variable}_RUSTFLAGS"), remaps);
    if platform != Platform::Amd64 {
        build = build.env(format!("CARGO_TARGET_{target_variable}_LINKER"), "rust-lld");
    }
    build.run().with_context(|| {
        format!("building the static launcher for {platform} (cargo build with cargo-auditable, --target {target})")
    })?;
    let binary = target_dir.join(target).join("launcher").join("launcher");
    anyhow::ensure!(binary.is_file(), "cargo built the launcher but {} is missing", binary.display());
    Ok(binary)
}

fn ensure_target(ctx: &Context, target: &str) -> Result<()> {
    let sh = &ctx.sh;
    let installed = cmd!(sh, "rustup target list --installed")
        .quiet()
        .read()
        .context("listing rustup targets: is rustup installed? (https://rustup.rs)")?;
    if !installed.lines().any(|line| line.trim() == target) {
        eprintln!("xtask: installing the rustup target {target}");
        cmd!(sh, "rustup target add {target}").run().with_context(|| format!("`rustup target add {target}` failed"))?;
    }
    Ok(())
}

/// cargo-auditable, pinned, installed under `.tools/` unless that version is already there.
fn ensure_cargo_auditable(ctx: &Context) -> Result<PathBuf> {
    let root = ctx.root.join(".tools").join("cargo");
    let binary = root.join("bin").join("cargo-auditable");
    let sh = &ctx.sh;
    let installed = cmd!(sh, "cargo install --list --root {root}").quiet().ignore_stderr().read().unwrap_or_default();
    let current = installed.lines().find(|line| line.starts_with("cargo-auditable ")).unwrap_or_default().to_owned();
    if !binary.is_file() || !current.contains(CARGO_AUDITABLE_VERSION) {
        eprintln!("xtask: installing cargo-auditable {CARGO_AUDITABLE_VERSION} into {}", root.display());
        cmd!(sh, "cargo install --quiet --locked --root {root} cargo-auditable --version {CARGO_AUDITABLE_VERSION}")
            .run()
            .context("installing cargo-auditable from crates.io")?;
    }
    Ok(binary)
}
