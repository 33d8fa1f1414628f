//! Running processes: every command is built with xshell's `cmd!`; this is the one helper for the commands whose
//! output is streamed (a build, a test runner) and the one place that turns library errors into a readable line.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use anyhow::{Context as _, Result};

/// Runs `command` with stderr merged into stdout, hands each output line to `on_line` as it comes (to stream it
/// through and read it at once), and returns the exit status.
pub fn stream(command: xshell::Cmd<'_>, mut on_line: impl FnMut(&str)) -> Result<ExitStatus> {
    let mut command = std::process::Command::from(command);
    let (reader, writer) = std::io::pipe().context("creating a pipe for the command's output")?;
    command.stdin(std::process::Stdio::null()).stdout(writer.try_clone()?).stderr(writer);
    let mut child = command.spawn().with_context(|| format!("starting {:?}", command.get_program()))?;
    // The command keeps copies of the pipe's write end: without dropping them the output never ends.
    drop(command);
    let mut lines = std::io::BufReader::new(reader);
    let mut line = String::new();
    while lines.read_line(&mut line)? > 0 {
        on_line(&line);
        line.clear();
    }
    child.wait().context("waiting for the command")
}

/// An error with all its sources on one line: some libraries (reqwest, bollard) leave the cause (connection
/// refused, DNS, TLS) out of their own message.
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

/// The CA bundle the host trusts: SSL_CERT_FILE, PIP_CERT, or the system bundle. Behind a TLS-intercepting proxy
/// it holds the proxy's CA, which pip and the builds that reach PyPI must trust.
pub fn host_ca_bundle() -> Option<PathBuf> {
    ["SSL_CERT_FILE", "PIP_CERT"]
        .iter()
        .filter_map(|var| std::env::var_os(var).map(PathBuf::from))
        .chain(std::iter::once(PathBuf::from("/etc/ssl/certs/ca-certificates.crt")))
        .find(|path| path.is_file())
}

/// `program` as a shell finds it: a path as it is, a bare name in the folders of PATH.
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Path::new(program).is_file().then(|| PathBuf::from(program));
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_streams_arrive_line_by_line_with_the_exit_status() {
        let sh = xshell::Shell::new().unwrap();
        let mut lines = Vec::new();
        let script = "echo out; echo err >&2; exit 3";
        let status = stream(xshell::cmd!(sh, "sh -c {script}"), |line| lines.push(line.to_owned())).unwrap();
        assert_eq!(status.code(), Some(3));
        lines.sort();
        assert_eq!(lines, ["err\n", "out\n"]);
    }

    #[test]
    fn a_program_is_found_by_path_or_by_name() {
        assert!(find_program("/bin/sh").is_some());
        assert!(find_program("sh").is_some_and(|path| path.ends_with("sh")));
        assert!(find_program("surely-not-a-program-xyz").is_none());
    }
}
