//! An image running with what its settings say it needs beside it, through testcontainers.
//!
//! Used by `cargo xtask healthcheck` and by the image integration tests. Every container and network
//! started here carries the label [`LABEL`] with the id of the process that started it; a run that was
//! killed leaves them behind, and the next run sweeps those whose process is gone (runs still going on
//! beside it keep theirs).
//!
//! What a run is made of (hardening, environment and password, a companion's ready line, waiting for health) is
//! shared with `running.rs`, which starts the same containers to outlive the process (`deploy`, `up`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use testcontainers::core::{ContainerPort, Host, Mount, WaitFor};
use testcontainers::runners::SyncRunner;
use testcontainers::{Container, GenericImage, ImageExt};
use xshell::cmd;

use crate::context::Context;
use crate::docker;
use crate::images::{self, Health, Image};

/// Label on every container and network the xtask starts.
pub const LABEL: &str = "distroless-python.xtask";

/// The hardened run every image must survive unchanged (`deploy` and `up` run them the same way, through
/// [`Hardening::docker_run_flags`]): a read-only root filesystem with a tmpfs on `/tmp`, no capabilities, no
/// privilege escalation.
pub struct Hardening {
    pub read_only: bool,
    pub tmpfs: &'static str,
    pub cap_drop: &'static str,
    pub security_opt: &'static str,
}

pub const HARDENING: Hardening =
    Hardening { read_only: true, tmpfs: "/tmp", cap_drop: "ALL", security_opt: "no-new-privileges" };

impl Hardening {
    /// The same settings as `docker run` flags. The tmpfs is a `--mount`, as testcontainers mounts it (`--tmpfs`
    /// would add noexec and a size limit): what runs long-lived is exactly what the healthcheck tested.
    pub fn docker_run_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        if self.read_only {
            flags.push("--read-only".to_owned());
        }
        flags.extend(["--mount".to_owned(), format!("type=tmpfs,destination={}", self.tmpfs)]);
        flags.extend(["--cap-drop".to_owned(), self.cap_drop.to_owned()]);
        flags.extend(["--security-opt".to_owned(), self.security_opt.to_owned()]);
        flags
    }
}

/// What `${password}` in an image's settings stands for: one secret per run, shared by the app and its companions
/// (the app's DB_PASSWORD is the database's POSTGRES_PASSWORD), never written down.
pub const PASSWORD_PLACEHOLDER: &str = "${password}";

/// The environment of a container: its settings, then `overrides`, with the run's password put in.
pub fn environment(
    settings: &BTreeMap<String, String>,
    overrides: &BTreeMap<String, String>,
    password: &str,
) -> BTreeMap<String, String> {
    let mut env = settings.clone();
    env.extend(overrides.clone());
    env.into_iter().map(|(key, value)| (key, value.replace(PASSWORD_PLACEHOLDER, password))).collect()
}

/// The stderr line that says a companion is ready: its published port answers as soon as the container starts
/// (docker-proxy), so readiness comes from the companion's own log.
pub fn ready_log<'a>(companion: &'a Image, needed_by: &str) -> Result<&'a str> {
    match &companion.settings.ready_log {
        Some(line) => Ok(line),
        None => bail!("image {} is needed by {needed_by} but its image.toml has no `ready_log`", companion.name),
    }
}

/// How the app container is started.
#[derive(Default, Clone)]
pub struct Options {
    /// Environment on top of the image's settings.
    pub env: BTreeMap<String, String>,
    /// Arguments after the entrypoint (the launcher), e.g. `-- redis-server ...`.
    pub cmd: Vec<String>,
    /// Leave out the companion containers of the settings (the test provides its own).
    pub without_companions: bool,
    /// Host names the app resolves to the given addresses.
    pub hosts: Vec<(String, IpAddr)>,
    /// Join this network instead of creating one (to reach containers the caller started on it).
    pub network: Option<String>,
}

pub struct Stack {
    pub app: Container<GenericImage>,
    /// Kept to stop them after the app (fields drop in declaration order).
    _companions: Vec<Container<GenericImage>>,
    /// The network this stack created, removed last.
    _network: Option<Network>,
    network_name: String,
    port: u16,
    started: Instant,
}

/// The label value for what this process starts: `<host>/<pid>`, so that a sweep can tell whether the
/// process that started a container is still running.
pub fn owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}/{}", host.trim(), std::process::id())
}

fn owner_is_gone(owner: &str) -> bool {
    let this_host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    match owner.rsplit_once('/') {
        Some((host, pid)) if host == this_host.trim() => !std::path::Path::new("/proc").join(pid).exists(),
        // Another machine's run (a shared remote engine), or a label this code did not write: leave it.
        _ => false,
    }
}

/// Removes the containers and networks that a killed run left behind.
pub fn sweep(ctx: &Context) -> Result<()> {
    let sh = &ctx.sh;
    let filter = format!("label={LABEL}");
    let format = format!("{{{{.ID}}}} {{{{.Label \"{LABEL}\"}}}}");
    let listing = cmd!(sh, "docker ps --all --filter {filter} --format {format}").quiet().read()?;
    let containers: Vec<&str> = leftovers(&listing);
    if !containers.is_empty() {
        eprintln!("xtask: removing {} container(s) left by an earlier run", containers.len());
        cmd!(sh, "docker rm --force --volumes {containers...}").quiet().ignore_stdout().run()?;
    }
    let format = format!("{{{{.ID}}}} {{{{.Label \"{LABEL}\"}}}}");
    let listing = cmd!(sh, "docker network ls --filter {filter} --format {format}").quiet().read()?;
    let networks: Vec<&str> = leftovers(&listing);
    if !networks.is_empty() {
        cmd!(sh, "docker network rm {networks...}").quiet().ignore_stdout().run()?;
    }
    Ok(())
}

/// The ids of `<id> <owner>` lines whose owner process is gone.
fn leftovers(listing: &str) -> Vec<&str> {
    listing
        .lines()
        .filter_map(|line| line.split_once(' '))
        .filter(|(_, owner)| owner_is_gone(owner.trim()))
        .map(|(id, _)| id)
        .collect()
}

/// A labelled user-defined network, removed when dropped.
pub struct Network {
    name: String,
}

impl Network {
    pub fn create(ctx: &Context, image: &str) -> Result<Self> {
        let name = format!("xtask-{image}-{}", random_hex(4)?);
        let sh = &ctx.sh;
        let label = format!("{LABEL}={}", owner());
        cmd!(sh, "docker network create --label {label} {name}")
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| format!("creating docker network {name}"))?;
        Ok(Self { name })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let Ok(sh) = xshell::Shell::new() else { return };
        let name = &self.name;
        let _ = cmd!(sh, "docker network rm {name}").quiet().ignore_stdout().ignore_stderr().run();
    }
}

/// Starts the companions of `image`, then `image` itself (by `reference`), with its port published.
pub fn start(ctx: &Context, image: &Image, reference: &str, options: &Options) -> Result<Stack> {
    let owned_network = match &options.network {
        Some(_) => None,
        None => Some(Network::create(ctx, &image.name)?),
    };
    let network_name = match (&options.network, &owned_network) {
        (Some(name), _) => name.clone(),
        (None, Some(network)) => network.name.clone(),
        (None, None) => unreachable!("a network is created when none is given"),
    };
    let password = random_hex(16)?;
    let tag = reference.rsplit_once(':').map(|(_, tag)| tag).context("reference without a tag")?;
    // Companions run beside any platform's image at their one (amd64) build of the same revision.
    let revision = crate::platform::Platform::ALL.iter().fold(tag, |tag, platform| {
        tag.strip_suffix(platform.tag_suffix()).filter(|_| !platform.tag_suffix().is_empty()).unwrap_or(tag)
    });

    let mut companions = Vec::new();
    let mut hosts = options.hosts.clone();
    if !options.without_companions {
        for need in &image.settings.needs {
            let companion_image = ctx.image(&need.image)?;
            let companion_reference = images::reference(&need.image, revision);
            let env = environment(&companion_image.settings.env, &need.env, &password);
            let ready = WaitFor::message_on_stderr(ready_log(companion_image, &image.name)?);
            let container = container_request(&companion_reference, need.port, ready, &env, &network_name)
                .start()
                .with_context(|| format!("starting {} (needed by {})", companion_reference, image.name))?;
            let address = network_address(ctx, container.id(), &network_name)?;
            hosts.push((need.alias.clone(), address));
            companions.push(container);
        }
    }

    let env = environment(&image.settings.env, &options.env, &password);
    let mut request = container_request(reference, image.settings.port, WaitFor::Nothing, &env, &network_name)
        .with_readonly_rootfs(HARDENING.read_only)
        .with_mount(Mount::tmpfs_mount(HARDENING.tmpfs))
        .with_cap_drop(HARDENING.cap_drop)
        .with_security_opt(HARDENING.security_opt);
    if !options.cmd.is_empty() {
        request = request.with_cmd(options.cmd.clone());
    }
    for (host, address) in hosts {
        request = request.with_host(host, Host::Addr(address));
    }
    let started = Instant::now();
    let app = request.start().map_err(|error| start_error(reference, &format!("{error:#}")))?;
    Ok(Stack {
        app,
        _companions: companions,
        _network: owned_network,
        network_name,
        port: image.settings.port,
        started,
    })
}

/// Why a container did not start, with the fix for the usual cause.
pub fn start_error(reference: &str, message: &str) -> anyhow::Error {
    if message.contains("address already in use") || message.contains("port is already allocated") {
        anyhow::anyhow!(
            "starting {reference}: a host port it needs is already in use ({message}); stop what listens \
             there (`ss -ltnp`) or the container that holds it (`docker ps`)"
        )
    } else {
        anyhow::anyhow!("starting {reference}: {message}")
    }
}

fn container_request(
    reference: &str,
    port: u16,
    ready: WaitFor,
    env: &BTreeMap<String, String>,
    network: &str,
) -> testcontainers::ContainerRequest<GenericImage> {
    let (name, tag) = reference.rsplit_once(':').unwrap_or((reference, "latest"));
    let mut request = GenericImage::new(name, tag)
        .with_exposed_port(ContainerPort::Tcp(port))
        .with_wait_for(ready)
        .with_network(network)
        .with_label(LABEL, owner())
        .with_startup_timeout(Duration::from_secs(120));
    for (key, value) in env {
        request = request.with_env_var(key, value);
    }
    request
}

impl Stack {
    /// Polls the health endpoint until it answers the expected status; returns the time since start.
    pub fn wait_healthy(&self, health: &Health) -> Result<Duration> {
        let url = format!("{}{}", self.base_url()?, health.path);
        poll_health(&url, health, self.started, || self.app.is_running().unwrap_or(false), || self.failure_report())
    }

    /// The container's exit code and the last lines of its logs, for error messages.
    pub fn failure_report(&self) -> String {
        let exit = match self.app.exit_code() {
            Ok(Some(code)) => format!("exited with code {code}"),
            Ok(None) => "still running".to_owned(),
            Err(error) => format!("state unknown ({error})"),
        };
        let mut logs = String::from_utf8_lossy(&self.app.stdout_to_vec().unwrap_or_default()).into_owned();
        logs.push_str(&String::from_utf8_lossy(&self.app.stderr_to_vec().unwrap_or_default()));
        failure_text(self.app.id(), &exit, &logs)
    }

    pub fn network(&self) -> &str {
        &self.network_name
    }

    /// Where the app's published port answers (the port changes when the container is restarted).
    pub fn base_url(&self) -> Result<String> {
        Ok(format!("http://{}:{}", docker::published_host(), self.app.get_host_port_ipv4(self.port)?))
    }

    /// Restarts the app container (its companions keep running) and measures from the new start.
    pub fn restart(&mut self) -> Result<()> {
        self.app.stop().context("stopping the app container")?;
        self.started = Instant::now();
        self.app.start().context("starting the app container again")?;
        Ok(())
    }
}

/// Polls `url` until it answers the health status; returns the time since `started`. Stops early, with
/// `failure_report`, when the container is no longer running.
pub fn poll_health(
    url: &str,
    health: &Health,
    started: Instant,
    is_running: impl Fn() -> bool,
    failure_report: impl Fn() -> String,
) -> Result<Duration> {
    let client = http_client()?;
    let deadline = started + health.timeout;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        match client.get(url).send() {
            Ok(response) if response.status().as_u16() == health.status => return Ok(started.elapsed()),
            Ok(response) => last = format!("answered {}", response.status()),
            Err(error) => last = crate::process::error_chain(&error),
        }
        if !is_running() {
            bail!("the container exited before it was healthy\n{}", failure_report());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{url} did not answer {} within {:?} (last: {last})\n{}", health.status, health.timeout, failure_report())
}

/// A container's state and the last 30 lines of its logs, for error messages.
pub fn failure_text(container: &str, state: &str, logs: &str) -> String {
    let tail: Vec<&str> = logs.lines().rev().take(30).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    format!("container {container} {state}; last log lines:\n  {}", tail.join("\n  "))
}

/// A blocking HTTP client that never goes through a proxy: every target is on this machine.
pub fn http_client() -> Result<reqwest::blocking::Client> {
    Ok(reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// The container's address on the given network.
pub fn network_address(ctx: &Context, container: &str, network: &str) -> Result<IpAddr> {
    let sh = &ctx.sh;
    let format = format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}");
    let address = cmd!(sh, "docker inspect --format {format} {container}").quiet().read()?;
    address.parse().with_context(|| format!("container {container} has no address on network {network}"))
}

/// `bytes` random bytes from the kernel, as hex: run passwords and unique names.
pub fn random_hex(bytes: usize) -> Result<String> {
    use std::io::Read;
    let mut buffer = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buffer)?;
    Ok(hex::encode(buffer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_docker_run_flags_say_what_the_hardening_says() {
        assert_eq!(
            HARDENING.docker_run_flags().join(" "),
            "--read-only --mount type=tmpfs,destination=/tmp --cap-drop ALL --security-opt no-new-privileges"
        );
    }

    #[test]
    fn settings_then_overrides_with_the_run_password_put_in() {
        let settings = BTreeMap::from([("A".into(), "${password}".into()), ("B".into(), "settings".into())]);
        let overrides = BTreeMap::from([("B".into(), "override".into()), ("C".into(), "x${password}y".into())]);
        let env = environment(&settings, &overrides, "s3cret");
        let env: Vec<(&str, &str)> = env.iter().map(|(key, value)| (key.as_str(), value.as_str())).collect();
        assert_eq!(env, [("A", "s3cret"), ("B", "override"), ("C", "xs3crety")]);
    }
}
