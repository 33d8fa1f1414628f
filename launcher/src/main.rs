//! launcher: a small static PID 1 for shell-less container images. See README.md.

/// The launcher's own messages: stderr, one line each (a single write), prefixed `launcher: `.
/// A failing write is ignored: there is nowhere left to report it, and PID 1 must not die of it.
macro_rules! log {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let line = format!("launcher: {}\n", format_args!($($arg)*));
        let _ = std::io::stderr().write_all(line.as_bytes());
    }};
}

// One file per concern. Imports only go down this list of layers, never up nor in a circle:
//   supervise          the event loop: steps, services, reaping, forwarding, the stop
//   child, notify      starting one process; its notify socket
//   config             the TOML plan
//   probe              TCP/HTTP checks (readiness, `launcher probe`)
//   signals, procfs, duration, expand   leaves: signal plumbing, /proc, "8s", ${VAR}
//   sys                libc's error convention (for signals and notify)
// main uses supervise, config, probe and duration.
mod child;
mod config;
mod duration;
mod expand;
mod notify;
mod probe;
mod procfs;
mod signals;
mod supervise;
mod sys;

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use config::Config;

const DEFAULT_CONFIG: &str = "/etc/launcher.toml";
const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

const HELP: &str = "\
launcher: a small PID 1 for shell-less container images

usage:
  launcher [--config FILE]               run the setup steps and services of FILE
  launcher check [--config FILE]         validate FILE and print what would run
  launcher probe URL [--timeout 2s]      health check: http://host:port/path (2xx) or tcp://host:port
  launcher -- CMD [ARGS...]              supervise one command: forward signals, reap zombies
  launcher --help | --version

The config defaults to $LAUNCHER_CONFIG, else /etc/launcher.toml.
Exit codes: the code of the first failing service (128+N for signal N), or of a failing setup
step; 124 when a setup step times out; 0 after SIGTERM/SIGINT (a second one kills everything at
once); 1 for the launcher's own failures. probe exits 0 (healthy) or 1, never 2.
";

#[derive(Debug, PartialEq)]
enum Mode {
    Run(PathBuf),
    Check(PathBuf),
    Probe { url: String, timeout: Duration },
    Exec(Vec<String>),
    Help,
    Version,
}

fn main() {
    let code = match arguments().and_then(|args| parse_cli(&args)) {
        Err(problem) => {
            log!("{problem}");
            1
        }
        Ok(mode) => run(mode),
    };
    std::process::exit(code);
}

fn arguments() -> Result<Vec<String>, String> {
    std::env::args_os()
        .skip(1)
        .map(|arg| arg.into_string().map_err(|arg| format!("argument {arg:?} is not valid UTF-8")))
        .collect()
}

fn run(mode: Mode) -> i32 {
    match mode {
        Mode::Help => print(HELP),
        Mode::Version => print(&format!("launcher {}\n", env!("CARGO_PKG_VERSION"))),
        Mode::Check(path) => match config::load(&path) {
            Ok(config) => print(&format!("{}: valid\n{}", path.display(), config.describe())),
            Err(problem) => {
                log!("{problem}");
                1
            }
        },
        Mode::Probe { url, timeout } => probe::run_cli(&url, timeout),
        Mode::Exec(argv) => supervise::run(&Config::single_command(argv), true),
        Mode::Run(path) => match config::load(&path) {
            Ok(config) => supervise::run(&config, false),
            Err(problem) => {
                log!("{problem}");
                1
            }
        },
    }
}

fn print(text: &str) -> i32 {
    match std::io::stdout().write_all(text.as_bytes()) {
        Ok(()) => 0,
        Err(err) => {
            log!("cannot write to stdout: {err}");
            1
        }
    }
}

fn parse_cli(args: &[String]) -> Result<Mode, String> {
    match args.first().map(String::as_str) {
        Some("--help" | "-h" | "help") => Ok(Mode::Help),
        Some("--version" | "-V") => Ok(Mode::Version),
        Some("--") if args.len() > 1 => Ok(Mode::Exec(args[1..].to_vec())),
        Some("--") => Err("`--` needs a command to run, e.g. launcher -- gunicorn app:app".into()),
        Some("check") => Ok(Mode::Check(config_path(&args[1..])?)),
        Some("probe") => parse_probe(&args[1..]),
        _ => Ok(Mode::Run(config_path(args)?)),
    }
}

/// `--NAME VALUE` or `--NAME=VALUE`: the value when `arg` is that option.
fn option_value<'a>(
    name: &str,
    arg: &'a str,
    rest: &mut impl Iterator<Item = &'a String>,
) -> Result<Option<&'a str>, String> {
    let Some(tail) = arg.strip_prefix("--").and_then(|arg| arg.strip_prefix(name)) else { return Ok(None) };
    if let Some(value) = tail.strip_prefix('=') {
        return Ok(Some(value));
    }
    if !tail.is_empty() {
        return Ok(None);
    }
    rest.next().map(|value| Some(value.as_str())).ok_or_else(|| format!("--{name} needs a value"))
}

fn config_path(args: &[String]) -> Result<PathBuf, String> {
    let mut path = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match option_value("config", arg, &mut rest)? {
            Some(value) => path = Some(PathBuf::from(value)),
            None => return Err(format!("unexpected argument {arg:?}: see launcher --help")),
        }
    }
    Ok(path.unwrap_or_else(|| {
        std::env::var_os("LAUNCHER_CONFIG")
            .filter(|value| !value.is_empty())
            .map_or(DEFAULT_CONFIG.into(), PathBuf::from)
    }))
}

fn parse_probe(args: &[String]) -> Result<Mode, String> {
    let mut url = None;
    let mut timeout = DEFAULT_PROBE_TIMEOUT;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if let Some(value) = option_value("timeout", arg, &mut rest)? {
            timeout = duration::parse(value).map_err(|why| format!("--timeout: {why}"))?;
            if timeout.is_zero() {
                return Err("--timeout must be more than 0".into());
            }
        } else if url.is_none() && !arg.starts_with("--") {
            url = Some(arg.clone());
        } else {
            return Err(format!("unexpected argument {arg:?}: usage: launcher probe URL [--timeout 2s]"));
        }
    }
    let url = url.ok_or("probe needs a URL: launcher probe http://127.0.0.1:8000/healthz or tcp://127.0.0.1:6379")?;
    Ok(Mode::Probe { url, timeout })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|arg| arg.to_string()).collect()
    }

    #[test]
    fn parses_the_command_line() {
        assert_eq!(parse_cli(&args(&["--config", "a.toml"])).unwrap(), Mode::Run("a.toml".into()));
        assert_eq!(parse_cli(&args(&["check", "--config=b.toml"])).unwrap(), Mode::Check("b.toml".into()));
        assert_eq!(
            parse_cli(&args(&["probe", "tcp://127.0.0.1:1", "--timeout", "500ms"])).unwrap(),
            Mode::Probe { url: "tcp://127.0.0.1:1".into(), timeout: Duration::from_millis(500) }
        );
        assert_eq!(parse_cli(&args(&["--", "sleep", "--config"])).unwrap(), Mode::Exec(args(&["sleep", "--config"])));
        assert!(parse_cli(&args(&["--"])).is_err());
        assert!(parse_cli(&args(&["--configure"])).unwrap_err().contains("unexpected argument"));
        assert!(parse_cli(&args(&["probe"])).unwrap_err().contains("needs a URL"));
        assert!(parse_cli(&args(&["probe", "tcp://x:1", "--timeout", "0s"])).is_err());
    }
}
