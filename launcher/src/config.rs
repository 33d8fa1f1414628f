//! The launcher's TOML config: parsing and validation into the plan that `supervise` runs.
//!
//! Every string value is expanded (see `expand`) while it is deserialized, so an error (unset
//! variable, malformed duration, empty command...) carries the span of the offending value and is
//! reported as `file:line:column: message` before anything starts.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

use crate::duration::{self, DisplayDuration};
use crate::expand;
use crate::probe::Target;

pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Finite, so that a hung migration cannot hold the container forever; long enough for real ones.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(300);
/// Names end up in abstract socket names (at most 107 bytes) and in messages.
const MAX_NAME_LEN: usize = 64;

#[derive(Debug)]
pub struct Config {
    pub grace_period: Duration,
    pub setup: Vec<SetupStep>,
    /// In start order: every service comes after the services it names in `after`.
    pub services: Vec<Service>,
}

#[derive(Debug)]
pub struct SetupStep {
    pub name: String,
    pub action: SetupAction,
}

#[derive(Debug)]
pub enum SetupAction {
    Mkdir {
        path: PathBuf,
        mode: Option<u32>,
    },
    /// A command, stopped (its whole process group) when it runs longer than `timeout`.
    Run {
        launch: Launch,
        timeout: Duration,
    },
}

/// What to exec: argv (argv[0] looked up in PATH), environment additions, working directory.
#[derive(Debug)]
pub struct Launch {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub workdir: Option<PathBuf>,
}

#[derive(Debug)]
pub struct Service {
    pub name: String,
    pub launch: Launch,
    pub enabled: bool,
    /// Indices into `Config::services` of the services that must be ready first.
    pub after: Vec<usize>,
    pub signal_process_group: bool,
    pub ready: Option<Readiness>,
}

#[derive(Debug)]
pub struct Readiness {
    pub check: ReadyCheck,
    pub timeout: Duration,
}

#[derive(Debug)]
pub enum ReadyCheck {
    /// systemd notify protocol: a `READY=1` datagram on `NOTIFY_SOCKET`.
    Notify,
    Probe(Target),
}

impl Config {
    /// The config of `launcher -- CMD ARGS...`: one service, no setup.
    pub fn single_command(argv: Vec<String>) -> Config {
        let name = Path::new(&argv[0])
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| argv[0].clone());
        let launch = Launch { argv, env: BTreeMap::new(), workdir: None };
        let service =
            Service { name, launch, enabled: true, after: Vec::new(), signal_process_group: false, ready: None };
        Config { grace_period: DEFAULT_GRACE_PERIOD, setup: Vec::new(), services: vec![service] }
    }

    /// The plan that `launcher check` prints. Environment values are left out: they often hold secrets.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "grace period: {}", DisplayDuration(self.grace_period));
        let _ = writeln!(out, "setup steps, in order:{}", if self.setup.is_empty() { " none" } else { "" });
        for (number, step) in self.setup.iter().enumerate() {
            match &step.action {
                SetupAction::Mkdir { path, mode } => {
                    let _ = write!(out, "  {}. {}: mkdir {}", number + 1, step.name, path.display());
                    if let Some(mode) = mode {
                        let _ = write!(out, " (mode {mode:04o})");
                    }
                    out.push('\n');
                }
                SetupAction::Run { launch, timeout } => {
                    let _ = writeln!(out, "  {}. {}: {}", number + 1, step.name, launch);
                    let _ = writeln!(out, "     timeout: {}", DisplayDuration(*timeout));
                }
            }
        }
        let _ = writeln!(out, "services, in start order:{}", if self.services.is_empty() { " none" } else { "" });
        for (number, service) in self.services.iter().enumerate() {
            let state = if service.enabled { "" } else { " (disabled)" };
            let _ = writeln!(out, "  {}. {}{state}: {}", number + 1, service.name, service.launch);
            if !service.after.is_empty() {
                let names: Vec<&str> = service.after.iter().map(|&dep| self.services[dep].name.as_str()).collect();
                let _ = writeln!(out, "     after: {}", names.join(", "));
            }
            match &service.ready {
                Some(ready) => {
                    let _ = writeln!(out, "     ready: {} within {}", ready.check, DisplayDuration(ready.timeout));
                }
                None => out.push_str("     ready: as soon as started\n"),
            }
            if service.signal_process_group {
                out.push_str("     signals go to its whole process group\n");
            }
        }
        out
    }
}

impl fmt::Display for Launch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, arg) in self.argv.iter().enumerate() {
            let separator = if index == 0 { "" } else { " " };
            let plain = !arg.is_empty() && !arg.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'');
            if plain {
                write!(f, "{separator}{arg}")?;
            } else {
                write!(f, "{separator}{arg:?}")?;
            }
        }
        if !self.env.is_empty() {
            let names: Vec<&str> = self.env.keys().map(String::as_str).collect();
            write!(f, " [env: {}]", names.join(", "))?;
        }
        if let Some(dir) = &self.workdir {
            write!(f, " [workdir: {}]", dir.display())?;
        }
        Ok(())
    }
}

impl fmt::Display for ReadyCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadyCheck::Notify => f.write_str("notify (READY=1 on NOTIFY_SOCKET)"),
            ReadyCheck::Probe(target) => write!(f, "{target}"),
        }
    }
}

/// Reads and validates a config file. The error is one line naming the file, line and column.
pub fn load(path: &Path) -> Result<Config, String> {
    let source = std::fs::read_to_string(path).map_err(|err| {
        format!("cannot read the config {}: {err} (give another with --config FILE or LAUNCHER_CONFIG)", path.display())
    })?;
    parse(&source, &path.display().to_string())
}

pub fn parse(source: &str, origin: &str) -> Result<Config, String> {
    let locate = |span: Option<Range<usize>>, message: &str| match span {
        Some(span) => {
            let (line, column) = line_and_column(source, span.start);
            format!("{origin}:{line}:{column}: {message}")
        }
        None => format!("{origin}: {message}"),
    };
    let raw: RawConfig = toml::from_str(source).map_err(|err| locate(err.span(), err.message().trim_end()))?;
    raw.validate().map_err(|Located { span, message }| locate(Some(span), &message))
}

fn line_and_column(source: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or_default().chars().count() + 1;
    (line, column)
}

/// A config error with the byte span it is about.
struct Located {
    span: Range<usize>,
    message: String,
}

/// Deserializes a string, expands its `${VAR}` references from the launcher's environment, and
/// converts it. Both happen inside the visitor, so that toml attaches the span of this very value
/// (an array element included) to an error.
fn deserialize_expanded<'de, D, T>(deserializer: D, convert: fn(String) -> Result<T, String>) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct ExpandedVisitor<T>(fn(String) -> Result<T, String>);
    impl<T> Visitor<'_> for ExpandedVisitor<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, raw: &str) -> Result<T, E> {
            let value = expand::from_environment(raw).map_err(E::custom)?;
            if value.contains('\0') {
                return Err(E::custom("a NUL character cannot be passed to a process"));
            }
            (self.0)(value).map_err(E::custom)
        }
    }
    deserializer.deserialize_str(ExpandedVisitor(convert))
}

/// A string value, `${VAR}` references already expanded from the launcher's environment.
#[derive(Debug)]
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_expanded(deserializer, |text| Ok(Text(text)))
    }
}

/// A service or step name: used in messages and in notify socket names.
#[derive(Debug)]
struct Name(String);

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_expanded(deserializer, |name| {
            let valid = !name.is_empty()
                && name.len() <= MAX_NAME_LEN
                && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if valid {
                Ok(Name(name))
            } else {
                Err(format!("invalid name {name:?}: use 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.'"))
            }
        })
    }
}

/// argv of a command: not empty, argv[0] not empty.
#[derive(Debug)]
struct Argv(Vec<String>);

impl<'de> Deserialize<'de> for Argv {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let args = Vec::<Text>::deserialize(deserializer)?;
        match args.first() {
            None => Err(de::Error::custom(
                "empty command: give the program and its arguments, e.g. [\"gunicorn\", \"app:app\"]",
            )),
            Some(Text(program)) if program.is_empty() => {
                Err(de::Error::custom("the command's program (its first element) is empty"))
            }
            Some(_) => Ok(Argv(args.into_iter().map(|Text(arg)| arg).collect())),
        }
    }
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct EnvName(String);

impl<'de> Deserialize<'de> for EnvName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(de::Error::custom(format!("invalid environment variable name {name:?}")));
        }
        Ok(EnvName(name))
    }
}

/// "500ms", "8s", "2m", "1h".
#[derive(Debug, Clone, Copy)]
struct ConfigDuration(Duration);

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_expanded(deserializer, |text| duration::parse(&text).map(ConfigDuration))
    }
}

/// An octal mode string such as "0777"; a string so that TOML cannot read it as decimal.
#[derive(Debug)]
struct Mode(u32);

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_expanded(deserializer, |text| {
            let digits = text.strip_prefix("0o").unwrap_or(&text);
            match u32::from_str_radix(digits, 8) {
                Ok(mode) if !digits.is_empty() && mode <= 0o7777 => Ok(Mode(mode)),
                _ => Err(format!("malformed mode {text:?}: write an octal string such as \"0777\" or \"0755\"")),
            }
        })
    }
}

/// `enabled`: a boolean, or a string that expands to true/false, 1/0 or yes/no.
#[derive(Debug)]
struct Flag(bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FlagVisitor;
        impl Visitor<'_> for FlagVisitor {
            type Value = Flag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false, or a string expanding to true/false, 1/0 or yes/no")
            }
            fn visit_bool<E: de::Error>(self, value: bool) -> Result<Flag, E> {
                Ok(Flag(value))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Flag, E> {
                let expanded = expand::from_environment(value).map_err(E::custom)?;
                match expanded.trim().to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" => Ok(Flag(true)),
                    "false" | "0" | "no" => Ok(Flag(false)),
                    _ => Err(E::custom(format!(
                        "{value:?} expands to {expanded:?}, which is not a boolean: use true/false, 1/0 or yes/no"
                    ))),
                }
            }
        }
        deserializer.deserialize_any(FlagVisitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    grace_period: Option<ConfigDuration>,
    #[serde(default)]
    setup: Vec<RawSetup>,
    #[serde(default)]
    service: Vec<RawService>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSetup {
    name: Spanned<Name>,
    mkdir: Option<Spanned<Text>>,
    mode: Option<Spanned<Mode>>,
    command: Option<Spanned<Argv>>,
    env: Option<Spanned<BTreeMap<EnvName, Text>>>,
    workdir: Option<Spanned<Text>>,
    timeout: Option<Spanned<ConfigDuration>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: Spanned<Name>,
    command: Argv,
    #[serde(default)]
    env: BTreeMap<EnvName, Text>,
    workdir: Option<Text>,
    enabled: Option<Flag>,
    #[serde(default)]
    after: Vec<Spanned<Name>>,
    #[serde(default)]
    signal_process_group: bool,
    ready: Option<Spanned<RawReady>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReady {
    #[serde(default)]
    notify: bool,
    tcp: Option<Spanned<Text>>,
    http: Option<Spanned<Text>>,
    timeout: Option<ConfigDuration>,
}

fn launch(argv: Argv, env: BTreeMap<EnvName, Text>, workdir: Option<Text>) -> Launch {
    Launch {
        argv: argv.0,
        env: env.into_iter().map(|(EnvName(name), Text(value))| (name, value)).collect(),
        workdir: workdir.map(|Text(dir)| PathBuf::from(dir)),
    }
}

impl RawConfig {
    fn validate(self) -> Result<Config, Located> {
        reject_duplicates(self.setup.iter().map(|step| &step.name), "setup step")?;
        let setup = self.setup.into_iter().map(RawSetup::validate).collect::<Result<Vec<_>, _>>()?;
        reject_duplicates(self.service.iter().map(|service| &service.name), "service")?;
        let order = start_order(&self.service)?;
        let mut position = vec![0; order.len()];
        for (new, &old) in order.iter().enumerate() {
            position[old] = new;
        }
        let names = service_names(&self.service);
        let afters: Vec<Vec<usize>> = self
            .service
            .iter()
            .map(|service| service.after.iter().map(|dep| position[index_of(&names, dep)]).collect())
            .collect();
        let mut by_file_order: Vec<Option<Service>> = Vec::with_capacity(order.len());
        for (raw, after) in self.service.into_iter().zip(afters) {
            let ready = raw.ready.map(RawReady::validate).transpose()?;
            by_file_order.push(Some(Service {
                name: raw.name.into_inner().0,
                launch: launch(raw.command, raw.env, raw.workdir),
                enabled: raw.enabled.is_none_or(|Flag(enabled)| enabled),
                after,
                signal_process_group: raw.signal_process_group,
                ready,
            }));
        }
        let services = order.iter().map(|&old| by_file_order[old].take().expect("each service once")).collect();
        let grace_period = self.grace_period.map_or(DEFAULT_GRACE_PERIOD, |ConfigDuration(grace)| grace);
        Ok(Config { grace_period, setup, services })
    }
}

fn service_names(services: &[RawService]) -> Vec<&str> {
    services.iter().map(|service| service.name.get_ref().0.as_str()).collect()
}

/// Where `name` is in `names`; only called once `start_order` has checked that every `after` name exists.
fn index_of(names: &[&str], name: &Spanned<Name>) -> usize {
    names.iter().position(|candidate| *candidate == name.get_ref().0).expect("after names were checked")
}

fn reject_duplicates<'a>(names: impl Iterator<Item = &'a Spanned<Name>>, what: &str) -> Result<(), Located> {
    let mut seen: Vec<&str> = Vec::new();
    for name in names {
        let text = name.get_ref().0.as_str();
        if seen.contains(&text) {
            return Err(Located {
                span: name.span(),
                message: format!("duplicate {what} name `{text}`: names must be unique"),
            });
        }
        seen.push(text);
    }
    Ok(())
}

/// Services in start order (dependencies first, otherwise file order), rejecting unknown and cyclic `after`.
fn start_order(services: &[RawService]) -> Result<Vec<usize>, Located> {
    let names = service_names(services);
    for service in services {
        for dep in &service.after {
            let dep_name = &dep.get_ref().0;
            if !names.contains(&dep_name.as_str()) {
                return Err(Located {
                    span: dep.span(),
                    message: format!(
                        "service `{}` is after `{dep_name}`, which is not a service (services: {})",
                        service.name.get_ref().0,
                        names.join(", ")
                    ),
                });
            }
        }
    }
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Visiting,
        Done,
    }
    fn visit(
        index: usize,
        services: &[RawService],
        names: &[&str],
        marks: &mut [Mark],
        path: &mut Vec<usize>,
        order: &mut Vec<usize>,
    ) -> Result<(), Located> {
        marks[index] = Mark::Visiting;
        path.push(index);
        for dep in &services[index].after {
            let dep_index = index_of(names, dep);
            match marks[dep_index] {
                Mark::Done => {}
                Mark::New => visit(dep_index, services, names, marks, path, order)?,
                Mark::Visiting => {
                    let cycle_start = path.iter().position(|&i| i == dep_index).unwrap_or(0);
                    let mut cycle: Vec<&str> = path[cycle_start..].iter().map(|&i| names[i]).collect();
                    cycle.push(names[dep_index]);
                    return Err(Located {
                        span: dep.span(),
                        message: format!("`after` makes a cycle: {}", cycle.join(" -> ")),
                    });
                }
            }
        }
        path.pop();
        marks[index] = Mark::Done;
        order.push(index);
        Ok(())
    }
    let mut marks = vec![Mark::New; services.len()];
    let mut order = Vec::with_capacity(services.len());
    for index in 0..services.len() {
        if marks[index] == Mark::New {
            visit(index, services, &names, &mut marks, &mut Vec::new(), &mut order)?;
        }
    }
    Ok(order)
}

impl RawSetup {
    fn validate(self) -> Result<SetupStep, Located> {
        let name = self.name.get_ref().0.clone();
        let misplaced = |span: Range<usize>, key: &str, kind: &str| Located {
            span,
            message: format!("setup step `{name}`: `{key}` does not apply to a {kind} step"),
        };
        let action = match (self.mkdir, self.command) {
            (Some(_), Some(command)) => {
                return Err(Located {
                    span: command.span(),
                    message: format!(
                        "setup step `{name}` has both `mkdir` and `command`: give exactly one (make two steps)"
                    ),
                })
            }
            (None, None) => {
                return Err(Located {
                    span: self.name.span(),
                    message: format!(
                        "setup step `{name}` needs one of `mkdir = \"/path\"` or `command = [\"program\", \"arg\"]`"
                    ),
                })
            }
            (Some(path), None) => {
                if let Some(env) = self.env {
                    return Err(misplaced(env.span(), "env", "mkdir"));
                }
                if let Some(workdir) = self.workdir {
                    return Err(misplaced(workdir.span(), "workdir", "mkdir"));
                }
                // mkdir runs inside the launcher and cannot hang the way a command can.
                if let Some(timeout) = self.timeout {
                    return Err(misplaced(timeout.span(), "timeout", "mkdir"));
                }
                let path = path.into_inner().0;
                if path.is_empty() {
                    return Err(Located {
                        span: self.name.span(),
                        message: format!("setup step `{name}`: `mkdir` is empty"),
                    });
                }
                SetupAction::Mkdir { path: PathBuf::from(path), mode: self.mode.map(|mode| mode.into_inner().0) }
            }
            (None, Some(command)) => {
                if let Some(mode) = self.mode {
                    return Err(misplaced(mode.span(), "mode", "command"));
                }
                let env = self.env.map(Spanned::into_inner).unwrap_or_default();
                let timeout = match self.timeout {
                    None => DEFAULT_STEP_TIMEOUT,
                    Some(timeout) if timeout.get_ref().0.is_zero() => {
                        return Err(Located {
                            span: timeout.span(),
                            message: format!(
                                "setup step `{name}`: `timeout` must be more than 0 (the default is {})",
                                DisplayDuration(DEFAULT_STEP_TIMEOUT)
                            ),
                        })
                    }
                    Some(timeout) => timeout.into_inner().0,
                };
                let launch = launch(command.into_inner(), env, self.workdir.map(Spanned::into_inner));
                SetupAction::Run { launch, timeout }
            }
        };
        Ok(SetupStep { name, action })
    }
}

impl RawReady {
    fn validate(ready: Spanned<RawReady>) -> Result<Readiness, Located> {
        let span = ready.span();
        let raw = ready.into_inner();
        let timeout = raw.timeout.map_or(DEFAULT_READY_TIMEOUT, |ConfigDuration(timeout)| timeout);
        let check = match (raw.notify, raw.tcp, raw.http) {
            (true, None, None) => ReadyCheck::Notify,
            (false, Some(tcp), None) => {
                let target = Target::parse_tcp_address(&tcp.get_ref().0)
                    .map_err(|message| Located { span: tcp.span(), message })?;
                ReadyCheck::Probe(target)
            }
            (false, None, Some(http)) => {
                let target =
                    Target::parse_url(&http.get_ref().0).map_err(|message| Located { span: http.span(), message })?;
                if !matches!(target, Target::Http { .. }) {
                    return Err(Located { span: http.span(), message: "`http` needs an http:// URL".into() });
                }
                ReadyCheck::Probe(target)
            }
            _ => {
                return Err(Located {
                    span,
                    message: "`ready` needs exactly one of `notify = true`, `tcp = \"host:port\"` or \
                              `http = \"http://host:port/path\"`"
                        .into(),
                })
            }
        };
        Ok(Readiness { check, timeout })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_services_after_their_dependencies() {
        let config = parse(
            r#"
            [[service]]
            name = "web"
            command = ["gunicorn"]
            after = ["redis", "db"]
            [[service]]
            name = "redis"
            command = ["redis-server"]
            [[service]]
            name = "db"
            command = ["postgres"]
            after = ["redis"]
            "#,
            "test.toml",
        )
        .unwrap();
        let names: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["redis", "db", "web"]);
        assert_eq!(config.services[2].after, [0, 1]);
        assert_eq!(config.grace_period, DEFAULT_GRACE_PERIOD);
    }

    #[test]
    fn errors_name_line_and_column() {
        let error = parse("grace_period = \"8s\"\n\n[[service]]\nname = \"a\"\ncommand = []\n", "x.toml").unwrap_err();
        assert!(error.starts_with("x.toml:5:11: empty command"), "{error}");
        let error = parse("[[service]]\nname = \"a\"\ncommand = [\"a\"]\nafter = [\"a\"]\n", "x.toml").unwrap_err();
        assert!(error.starts_with("x.toml:4:10: `after` makes a cycle: a -> a"), "{error}");
    }

    #[test]
    fn enabled_accepts_booleans_and_expanded_strings() {
        let config = parse(
            "[[service]]\nname = \"a\"\ncommand = [\"a\"]\nenabled = \"${LAUNCHER_TEST_SURELY_UNSET:-no}\"\n\
             [[service]]\nname = \"b\"\ncommand = [\"b\"]\nenabled = true\n",
            "x.toml",
        )
        .unwrap();
        assert!(!config.services[0].enabled);
        assert!(config.services[1].enabled);
    }

    #[test]
    fn setup_commands_have_a_finite_timeout() {
        let config = parse(
            "[[setup]]\nname = \"a\"\ncommand = [\"a\"]\n[[setup]]\nname = \"b\"\ncommand = [\"b\"]\ntimeout = \"2s\"\n",
            "x.toml",
        )
        .unwrap();
        let timeouts: Vec<Duration> = config
            .setup
            .iter()
            .map(|step| match step.action {
                SetupAction::Run { timeout, .. } => timeout,
                SetupAction::Mkdir { .. } => panic!("a command step"),
            })
            .collect();
        assert_eq!(timeouts, [DEFAULT_STEP_TIMEOUT, Duration::from_secs(2)]);
        let error = parse("[[setup]]\nname = \"a\"\ncommand = [\"a\"]\ntimeout = \"0s\"\n", "x.toml").unwrap_err();
        assert!(error.starts_with("x.toml:4:11: setup step `a`: `timeout` must be more than 0"), "{error}");
    }
}
