//! Containers that outlive the xtask: an image with its companions on a private network, started with the docker CLI
//! (testcontainers removes what it starts when the process ends, see `stack.rs`). `deploy` leaves them running until
//! `deploy --stop`; `up` removes them when interrupted.
//!
//! They run as `stack.rs` runs an image in the healthcheck and the tests: the same hardening, the same environment
//! with one generated password per run, companions waited for on their ready line, the app on its health endpoint.
//! Every container and the network carry one label, by which [`remove`] finds them again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use xshell::cmd;

use crate::context::Context;
use crate::images::Image;
use crate::stack::{self, HARDENING};

/// How long a companion may take to say it is ready (as long as testcontainers waits in `stack.rs`).
const COMPANION_TIMEOUT: Duration = Duration::from_secs(120);

/// What a set of containers belongs to.
pub struct Group {
    /// `key=value`, on the network and on every container: what [`remove`] and [`listed`] find them by.
    pub label: String,
    /// The name of the network and of the app's container; a companion's container is `<name>-<alias>`.
    pub name: String,
    /// `--restart` policy of every container (`unless-stopped` for a deployment that survives an engine restart).
    pub restart: Option<&'static str>,
}

/// The app to run in a group.
pub struct Launch<'a> {
    pub image: &'a Image,
    /// What the engine runs: a pinned registry digest for `deploy`, the local tag for `up`.
    pub reference: &'a str,
    /// The port on 127.0.0.1 to publish the app's port on; a free one when `None`.
    pub host_port: Option<u16>,
}

/// A group that answers its health endpoint.
#[derive(Debug)]
pub struct Running {
    /// The app's container (and the network's name).
    pub name: String,
    /// Every container of the group, the companions first.
    pub containers: Vec<String>,
    /// `http://127.0.0.1:<port>`, where the app's port is published.
    pub url: String,
    /// The health endpoint it answered.
    pub health_url: String,
    pub healthy_after: Duration,
    /// `(variable, container)` for each variable holding the generated password; empty when none does.
    pub secrets: Vec<(String, String)>,
}

/// Starts the companions of the image, waits until each says it is ready, then the app, hardened, and waits until it
/// is healthy. On failure, what was started is removed again and the error carries the failing container's state
/// and its last log lines.
pub fn start(ctx: &Context, group: &Group, launch: &Launch) -> Result<Running> {
    let mut started = Started::default();
    let outcome = start_group(ctx, group, launch, &mut started);
    if outcome.is_err() {
        started.remove(ctx);
    }
    outcome
}

/// What [`start`] created so far: removed again when a later step fails.
#[derive(Default)]
struct Started {
    network: Option<String>,
    containers: Vec<String>,
}

impl Started {
    fn remove(&self, ctx: &Context) {
        let sh = &ctx.sh;
        let containers = &self.containers;
        if !containers.is_empty() {
            let _ =
                cmd!(sh, "docker rm --force --volumes {containers...}").quiet().ignore_stdout().ignore_stderr().run();
        }
        if let Some(network) = &self.network {
            let _ = cmd!(sh, "docker network rm {network}").quiet().ignore_stdout().ignore_stderr().run();
        }
    }
}

fn start_group(ctx: &Context, group: &Group, launch: &Launch, started: &mut Started) -> Result<Running> {
    let sh = &ctx.sh;
    let (image, label, network) = (launch.image, &group.label, &group.name);
    cmd!(sh, "docker network create --label {label} {network}")
        .quiet()
        .ignore_stdout()
        .run()
        .with_context(|| format!("creating the docker network {network}"))?;
    started.network = Some(network.clone());

    let password = stack::random_hex(16)?;
    let mut secrets = Vec::new();
    let restart: Vec<String> = group.restart.iter().map(|policy| format!("--restart={policy}")).collect();
    for need in &image.settings.needs {
        let companion = ctx.image(&need.image)?;
        let reference = ctx.reference(&need.image)?;
        let ready_line = stack::ready_log(companion, &image.name)?;
        let container = format!("{}-{}", group.name, need.alias);
        let env = stack::environment(&companion.settings.env, &need.env, &password);
        secrets.extend(secret_names(&env, &password, &container));
        let alias = &need.alias;
        let flags = [&restart[..], &["--network-alias".to_owned(), alias.clone()]].concat();
        // Listed before it runs: a `docker run` that fails can leave a created container behind.
        started.containers.push(container.clone());
        docker_run(ctx, group, &container, &flags, &env, &password, &reference)
            .with_context(|| format!("starting {reference} (needed by {})", image.name))?;
        wait_for_line(ctx, &container, ready_line)
            .with_context(|| format!("{reference} (needed by {}) did not get ready", image.name))?;
    }

    let port = image.settings.port;
    let publish = match launch.host_port {
        Some(host_port) => format!("127.0.0.1:{host_port}:{port}"),
        None => format!("127.0.0.1::{port}"),
    };
    let flags = [&restart[..], &["--publish".to_owned(), publish], &HARDENING.docker_run_flags()].concat();
    let env = stack::environment(&image.settings.env, &BTreeMap::new(), &password);
    secrets.extend(secret_names(&env, &password, &group.name));
    let since = Instant::now();
    started.containers.push(group.name.clone());
    docker_run(ctx, group, &group.name, &flags, &env, &password, launch.reference)?;

    let format = format!("{port}/tcp");
    let name = &group.name;
    let published = cmd!(sh, "docker port {name} {format}").quiet().read()?;
    let host_port = published
        .lines()
        .find_map(|line| line.trim().rsplit_once(':'))
        .and_then(|(_, port)| port.parse::<u16>().ok())
        .with_context(|| format!("`docker port {name} {format}` names no host port: {published}"))?;
    let url = format!("http://127.0.0.1:{host_port}");
    let health = image.health()?;
    let health_url = format!("{url}{}", health.path);
    let healthy_after =
        stack::poll_health(&health_url, health, since, || is_running(ctx, name), || failure_report(ctx, name))
            .with_context(|| format!("{} did not get healthy", launch.reference))?;
    let containers = started.containers.clone();
    Ok(Running { name: name.clone(), containers, url, health_url, healthy_after, secrets })
}

impl Running {
    /// An error naming the container that no longer runs, with its state and last log lines.
    pub fn check(&self, ctx: &Context) -> Result<()> {
        match self.containers.iter().find(|container| !is_running(ctx, container)) {
            Some(stopped) => bail!("{stopped} stopped\n{}", failure_report(ctx, stopped)),
            None => Ok(()),
        }
    }
}

/// `docker run --detach` in the group (its label, its network). A value holding the password goes to the CLI through
/// its environment (`--env NAME` without a value), so that it appears on no command line and in no log.
fn docker_run(
    ctx: &Context,
    group: &Group,
    container: &str,
    flags: &[String],
    env: &BTreeMap<String, String>,
    password: &str,
    reference: &str,
) -> Result<()> {
    let sh = &ctx.sh;
    let (label, network) = (&group.label, &group.name);
    let mut variables = Vec::new();
    for (name, value) in env {
        variables.push("--env".to_owned());
        variables.push(if value.contains(password) { name.clone() } else { format!("{name}={value}") });
    }
    let mut command = cmd!(
        sh,
        "docker run --detach --name {container} --label {label} --network {network} {flags...} {variables...} {reference}"
    )
    .quiet()
    .ignore_stdout();
    for (name, value) in env.iter().filter(|(_, value)| value.contains(password)) {
        command = command.env(name, value);
    }
    let output = command.ignore_status().output()?;
    if !output.status.success() {
        return Err(stack::start_error(reference, String::from_utf8_lossy(&output.stderr).trim()));
    }
    Ok(())
}

fn secret_names(env: &BTreeMap<String, String>, password: &str, container: &str) -> Vec<(String, String)> {
    env.iter()
        .filter(|(_, value)| value.contains(password))
        .map(|(name, _)| (name.clone(), container.to_owned()))
        .collect()
}

/// Waits until the container writes `line` to stderr.
fn wait_for_line(ctx: &Context, container: &str, line: &str) -> Result<()> {
    let sh = &ctx.sh;
    let deadline = Instant::now() + COMPANION_TIMEOUT;
    while Instant::now() < deadline {
        let logs = cmd!(sh, "docker logs {container}").quiet().ignore_status().output()?;
        if String::from_utf8_lossy(&logs.stderr).contains(line) {
            return Ok(());
        }
        if !is_running(ctx, container) {
            bail!("it stopped before it said `{line}`\n{}", failure_report(ctx, container));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!("it did not say `{line}` within {COMPANION_TIMEOUT:?}\n{}", failure_report(ctx, container))
}

fn is_running(ctx: &Context, container: &str) -> bool {
    let sh = &ctx.sh;
    let format = "{{.State.Running}}";
    cmd!(sh, "docker inspect --format {format} {container}").quiet().ignore_stderr().read().is_ok_and(|s| s == "true")
}

/// The container's state and its last log lines.
fn failure_report(ctx: &Context, container: &str) -> String {
    let sh = &ctx.sh;
    let format = "{{.State.Status}} (exit code {{.State.ExitCode}})";
    let state = cmd!(sh, "docker inspect --format {format} {container}")
        .quiet()
        .ignore_stderr()
        .read()
        .unwrap_or_else(|_| "gone".to_owned());
    let logs = cmd!(sh, "docker logs --tail 30 {container}").quiet().ignore_status().output();
    let logs = logs.map_or(String::new(), |output| {
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
    });
    stack::failure_text(container, &state, &logs)
}

/// The names of the containers and networks carrying the label.
pub fn listed(ctx: &Context, label: &str) -> Result<(Vec<String>, Vec<String>)> {
    let sh = &ctx.sh;
    let filter = format!("label={label}");
    let format = "{{.Names}}";
    let containers = cmd!(sh, "docker ps --all --filter {filter} --format {format}").quiet().read()?;
    let format = "{{.Name}}";
    let networks = cmd!(sh, "docker network ls --filter {filter} --format {format}").quiet().read()?;
    let names = |listing: String| listing.lines().map(str::to_owned).collect::<Vec<_>>();
    Ok((names(containers), names(networks)))
}

/// Stops (gracefully, as `docker stop` does) and removes the containers carrying the label, then its networks;
/// returns what it removed.
pub fn remove(ctx: &Context, label: &str) -> Result<(Vec<String>, Vec<String>)> {
    let sh = &ctx.sh;
    let (containers, networks) = listed(ctx, label)?;
    if !containers.is_empty() {
        // A container that already stopped makes `docker stop` complain; `rm --force` removes it all the same.
        let ids = &containers;
        let _ = cmd!(sh, "docker stop {ids...}").quiet().ignore_stdout().ignore_stderr().run();
        cmd!(sh, "docker rm --force --volumes {ids...}")
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| format!("removing the containers {}", containers.join(", ")))?;
    }
    if !networks.is_empty() {
        let ids = &networks;
        cmd!(sh, "docker network rm {ids...}")
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| format!("removing the networks {}", networks.join(", ")))?;
    }
    Ok((containers, networks))
}

/// SIGINT (Ctrl-C) and SIGTERM, noted instead of ending the process, so that `up` removes what it started before it
/// exits: the handler only stores the signal's number, and the caller polls it.
pub mod interruption {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, OnceLock};

    use signal_hook::consts::{SIGINT, SIGTERM};

    static CAUGHT: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

    /// From now on SIGINT and SIGTERM are noted, not fatal.
    pub fn catch() -> anyhow::Result<()> {
        let caught = CAUGHT.get_or_init(|| Arc::new(AtomicUsize::new(0)));
        for number in [SIGINT, SIGTERM] {
            signal_hook::flag::register_usize(number, Arc::clone(caught), number as usize)
                .map_err(|error| anyhow::anyhow!("catching signal {number}: {error}"))?;
        }
        Ok(())
    }

    /// The signal caught since [`catch`], by name.
    pub fn caught() -> Option<&'static str> {
        match CAUGHT.get()?.load(Ordering::SeqCst) {
            0 => None,
            number if number == SIGINT as usize => Some("SIGINT"),
            number if number == SIGTERM as usize => Some("SIGTERM"),
            _ => Some("a signal"),
        }
    }
}
