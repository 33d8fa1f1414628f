//! The build context a Dockerfile sees for one platform, staged under `out/context/<image>/<arch>/`: the workspace
//! files it may copy, the static launcher, the locked Debian packages (the platform's, and the build machine's for
//! the tools that assemble the image) and the locked wheels, and nothing else.
//!
//! Staging makes the context the same on every checkout: only files git knows (tracked, or new and not ignored),
//! every mode 0644 or 0755 whatever the umask, every time the commit's time whatever the checkout's file times. The
//! build itself then needs no network.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result};
use xshell::cmd;

use crate::context::Context;
use crate::files::remove_dir_if_present;
use crate::platform::Platform;

/// What the staged context holds besides the workspace files.
pub struct Inputs<'a> {
    pub platform: Platform,
    /// The platform's static launcher, staged at `static_launcher::context_path` (the Dockerfiles copy it from
    /// there).
    pub launcher: &'a Path,
    /// Each locked `.deb` of the platform with the name it gets under `packages/`.
    pub packages: Vec<(PathBuf, String)>,
    /// Each locked `.deb` of the build machine, under `build-packages/`: the Python that assembles the image.
    pub build_packages: Vec<(PathBuf, String)>,
    /// The folder of wheels staged as `wheels/`.
    pub wheels: &'a Path,
}

/// Stages the context of `image` for the inputs' platform and returns its folder.
pub fn stage(ctx: &Context, image: &str, inputs: &Inputs) -> Result<PathBuf> {
    let dir = ctx.out.build_context(image, inputs.platform);
    let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(ctx.revision()?.commit_time);
    remove_dir_if_present(&dir)?;
    for relative in workspace_files(ctx)? {
        place(&ctx.root.join(&relative), &dir.join(&relative), epoch)?;
    }
    place(inputs.launcher, &dir.join(crate::static_launcher::context_path(inputs.platform)), epoch)?;
    for (folder, packages) in [("packages", &inputs.packages), ("build-packages", &inputs.build_packages)] {
        // Every Dockerfile copies both folders, so both exist even when empty.
        std::fs::create_dir_all(dir.join(folder))?;
        for (source, name) in packages {
            place(source, &dir.join(folder).join(name), epoch)?;
        }
    }
    for entry in std::fs::read_dir(inputs.wheels).with_context(|| format!("reading {}", inputs.wheels.display()))? {
        let source = entry?.path();
        if source.extension().is_some_and(|extension| extension == "whl") {
            let name = source.file_name().context("a wheel without a name")?;
            place(&source, &dir.join("wheels").join(name), epoch)?;
        }
    }
    // Every folder too: BuildKit copies their modes and times along with them.
    normalize_folders(&dir, epoch)?;
    Ok(dir)
}

/// The files of `apps/` and `images/` that git knows: tracked ones (unless deleted) and new ones it does not ignore.
fn workspace_files(ctx: &Context) -> Result<Vec<PathBuf>> {
    let sh = &ctx.sh;
    let listing = cmd!(sh, "git ls-files -z --cached --others --exclude-standard -- apps images")
        .quiet()
        .read()
        .context("listing the workspace files of the build context (git ls-files)")?;
    Ok(listing
        .split('\0')
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
        .filter(|path| ctx.root.join(path).is_file())
        .collect())
}

/// Copies a file with the mode it gets in any checkout (0755 when its owner may run it, else 0644) and `epoch` as its
/// time.
fn place(source: &Path, destination: &Path, epoch: SystemTime) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(folder) = destination.parent() {
        std::fs::create_dir_all(folder).with_context(|| format!("creating {}", folder.display()))?;
    }
    std::fs::copy(source, destination)
        .with_context(|| format!("staging {} as {}", source.display(), destination.display()))?;
    let executable = std::fs::metadata(source)?.permissions().mode() & 0o100 != 0;
    let file = std::fs::File::options().write(true).open(destination)?;
    file.set_permissions(std::fs::Permissions::from_mode(if executable { 0o755 } else { 0o644 }))?;
    file.set_modified(epoch).with_context(|| format!("setting the time of {}", destination.display()))
}

fn normalize_folders(dir: &Path, epoch: SystemTime) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            normalize_folders(&path, epoch)?;
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    std::fs::File::open(dir)?.set_modified(epoch).with_context(|| format!("setting the time of {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_file_gets_the_mode_and_time_of_any_checkout() {
        let folder = tempfile::tempdir().unwrap();
        let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for (mode, expected) in [(0o600, 0o644), (0o664, 0o644), (0o700, 0o755), (0o775, 0o755)] {
            let source = folder.path().join(format!("source-{mode:o}"));
            std::fs::write(&source, "x").unwrap();
            std::fs::set_permissions(&source, std::fs::Permissions::from_mode(mode)).unwrap();
            let staged = folder.path().join("staged").join(format!("{mode:o}"));
            place(&source, &staged, epoch).unwrap();
            let metadata = std::fs::metadata(&staged).unwrap();
            assert_eq!(metadata.permissions().mode() & 0o7777, expected, "{mode:o}");
            assert_eq!(metadata.modified().unwrap(), epoch);
        }
    }
}
