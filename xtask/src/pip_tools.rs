//! Command-line tools from PyPI, pinned by a hash-checked lock under `tools/` and installed into their own virtual
//! environment under `.tools/`. Today only zizmor, the GitHub Actions auditor the workflow tests run.

use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{bail, Context as _, Result};
use xshell::cmd;

use crate::context::Context;

/// zizmor's lock, relative to the workspace root.
pub const ZIZMOR_LOCK: &str = "tools/zizmor/requirements.lock";

/// The path of the pinned zizmor, `.tools/zizmor/bin/zizmor`, installed from `tools/zizmor/requirements.lock` when the
/// lock changed since the last install (or the venv no longer runs, e.g. its Python was replaced).
pub fn ensure_zizmor(ctx: &Context) -> Result<PathBuf> {
    // Tests run on threads: one install at a time.
    static INSTALLING: Mutex<()> = Mutex::new(());
    let _installing = INSTALLING.lock().unwrap_or_else(|poison| poison.into_inner());

    let lock_path = ctx.root.join(ZIZMOR_LOCK);
    let lock = std::fs::read_to_string(&lock_path).with_context(|| format!("reading {}", lock_path.display()))?;
    let venv = ctx.root.join(".tools/zizmor");
    let zizmor = venv.join("bin/zizmor");
    // The content of the lock it was installed from.
    let stamp = venv.join(".lock");
    let sh = &ctx.sh;
    let runs = || cmd!(sh, "{zizmor} --version").quiet().ignore_stdout().ignore_stderr().run().is_ok();
    if std::fs::read_to_string(&stamp).is_ok_and(|installed| installed == lock) && runs() {
        return Ok(zizmor);
    }

    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    if cmd!(sh, "{python} --version").quiet().ignore_stdout().ignore_stderr().run().is_err() {
        bail!(
            "zizmor is installed from {ZIZMOR_LOCK} with Python 3.11 or newer, and `{python}` was not found: install \
             python3 with its venv module (Debian: `apt-get install python3 python3-venv`) or name one in PYTHON"
        );
    }
    eprintln!("xtask: installing zizmor from {ZIZMOR_LOCK} into {}", venv.display());
    cmd!(sh, "{python} -m venv --clear {venv}")
        .run()
        .with_context(|| format!("`{python} -m venv` failed (Debian needs the python3-venv package)"))?;
    let pip = venv.join("bin/pip");
    cmd!(sh, "{pip} install --quiet --require-hashes --no-deps --only-binary=:all: -r {lock_path}")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .run()
        .with_context(|| {
            format!(
                "pip could not install zizmor from {ZIZMOR_LOCK} (its output is above): PyPI (or the index in \
                 PIP_INDEX_URL) is unreachable, or `{python}` is older than 3.11"
            )
        })?;
    if !runs() {
        bail!("zizmor was installed from {ZIZMOR_LOCK} but `{} --version` fails", zizmor.display());
    }
    std::fs::write(&stamp, &lock).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(zizmor)
}
