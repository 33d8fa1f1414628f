//! What every stage needs to know about where it runs.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use xshell::{cmd, Shell};

pub struct Context {
    pub root: PathBuf,
    pub sh: Shell,
}

impl Context {
    /// The workspace root is the parent of this crate's manifest directory, wherever cargo was run from.
    pub fn discover() -> Result<Self> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("xtask must live one level below the workspace root")?
            .to_path_buf();
        let sh = Shell::new()?;
        sh.change_dir(&root);
        Ok(Self { root, sh })
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
        cmd!(self.sh, "{program} {args...}")
            .quiet()
            .read()
            .with_context(|| format!("running `{program} {}`", args.join(" ")))
    }
}

/// An error with all its sources on one line: some libraries (reqwest, bollard) leave the cause
/// (connection refused, DNS, TLS) out of their own message.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Runs a command with stderr merged into stdout, hands each output line to `on_line` as it comes
/// (for streaming it through and reading it at once), and returns the exit status.
pub fn stream_lines(command: duct::Expression, mut on_line: impl FnMut(&str)) -> Result<std::process::ExitStatus> {
    use std::io::BufRead as _;
    let reader = command.stderr_to_stdout().unchecked().reader()?;
    let mut lines = std::io::BufReader::new(&reader);
    let mut line = String::new();
    while lines.read_line(&mut line)? > 0 {
        on_line(&line);
        line.clear();
    }
    reader.try_wait()?.map(|output| output.status).context("the command's output ended before it exited")
}
