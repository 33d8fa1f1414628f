//! `deploy` and `up` against the real engine, a distribution registry on 127.0.0.1 and the real cosign.
//!
//! A released image is the local build of an app (its reproducible layout, SBOM and provenance) published with a
//! throwaway key as `release` publishes it; the images that must not deploy are tiny layouts (`common::layout`) with
//! some of their evidence missing or wrong: none of them may create a container or even be pulled. `deploy` and
//! `up` run as the xtask binary where it matters that the containers outlive it, that its output shows no secret, and
//! that a signal ends it.

mod common;

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use xshell::cmd;
use xtask::built::Built;
use xtask::context::Context;
use xtask::cosign::{self, Secret, Tlog};
use xtask::registry::push_layout;
use xtask::running;
use xtask::signing::{KeySource, Signer, Verifier};
use xtask::stages::deploy::{self, DeployArgs, LABEL};
use xtask::stages::release::{publish, Destination, PlatformImage, Published, Signing};
use xtask::stages::verify::TrustArgs;

use common::evidence;
use common::registry::LocalRegistry;
use common::require;

/// The image whose settings the tiny layouts borrow: no companion, so a wrong deploy would start it at once.
const APP: &str = "giropops-senhas";
const XTASK: &str = env!("CARGO_BIN_EXE_xtask");

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{}-{:x}", std::process::id(), nanos & 0xffff_ffff)
}

/// One test's world: the workspace, the engine, a registry, cosign and a throwaway key pair.
struct World {
    ctx: Context,
    registry: LocalRegistry,
    cosign: PathBuf,
    private_key: PathBuf,
    public_key: PathBuf,
    password: String,
    folder: tempfile::TempDir,
}

impl World {
    fn new() -> Option<Self> {
        let ctx = Context::discover().expect("the xtask workspace");
        require("a Docker engine", ctx.engine().map(drop))?;
        let cosign = require("cosign", cosign::cosign(&ctx))?;
        let registry = require("a registry binary", LocalRegistry::start(&ctx))?;
        let folder = tempfile::Builder::new().prefix("xtask-deploy-").tempdir().unwrap();
        let password = unique("password");
        let prefix = folder.path().join("cosign");
        cmd!(ctx.sh, "{cosign} generate-key-pair --output-key-prefix {prefix}")
            .env("COSIGN_PASSWORD", &password)
            .stdin("")
            .quiet()
            .ignore_stdout()
            .run()
            .expect("cosign generate-key-pair");
        let (private_key, public_key) = (folder.path().join("cosign.key"), folder.path().join("cosign.pub"));
        Some(Self { ctx, registry, cosign, private_key, public_key, password, folder })
    }

    fn signer(&self) -> Signer {
        Signer::Key { key: KeySource::File(self.private_key.clone()), password: Secret::new(&self.password) }
    }

    /// `127.0.0.1:PORT/team/<image>`
    fn repository(&self, image: &str) -> String {
        format!("{}/team/{image}", self.registry.address)
    }

    /// The local build of `image` at this revision published as `release` publishes it: layout, SBOM, provenance.
    fn publish_built(&self, image: &str) -> Option<Published> {
        let build = format!("a build of {image} at this revision (`cargo xtask build`)");
        let built = require(&build, Built::current(&self.ctx, image))?;
        let platform = PlatformImage::of(&self.ctx, &built);
        let sbom = &platform.sbom;
        if !sbom.is_file() {
            // `ci` writes the real one with syft; what deploy checks is that one is attached and signed.
            // Written beside it and renamed: a test running beside this one never reads half a file.
            std::fs::create_dir_all(sbom.parent().unwrap()).unwrap();
            let written = sbom.with_extension(unique("partial"));
            std::fs::write(&written, evidence::EMPTY_SBOM).unwrap();
            std::fs::rename(written, sbom).unwrap();
        }
        let destination = Destination::parse(&format!("{}/team", self.registry.address)).unwrap();
        let signing = Signing {
            signer: self.signer(),
            verifier: Verifier::Key(self.public_key.clone()),
            tlog: Tlog::Offline,
            cosign: self.cosign.clone(),
        };
        Some(publish(&self.ctx, image, &[platform], &destination, &signing).unwrap())
    }

    /// A tiny image under `team/giropops-senhas`, labelled as built from `commit`, pushed unsigned.
    fn push_tiny(&self, commit: &str) -> String {
        let dir = self.folder.path().join(unique("layout"));
        let content = unique("content");
        let layout = common::layout::built_from(&dir, &content, Some(commit));
        let digest = push_layout(&layout.dir, &self.repository(APP), &[unique("tag")]).unwrap();
        format!("{}@{digest}", self.repository(APP))
    }

    fn sign(&self, pinned: &str) {
        self.signer().sign(&self.cosign, pinned, Tlog::Offline).unwrap();
    }

    fn attest_sbom(&self, pinned: &str) {
        let path = self.folder.path().join(unique("sbom"));
        std::fs::write(&path, evidence::EMPTY_SBOM).unwrap();
        self.signer().attest(&self.cosign, pinned, cosign::SBOM_PREDICATE, &path, Tlog::Offline).unwrap();
    }

    /// A provenance of this pipeline for the image, naming `commit`, as `build` writes one.
    fn attest_provenance(&self, pinned: &str, commit: &str) {
        let path = self.folder.path().join(unique("provenance"));
        std::fs::write(&path, evidence::provenance(APP, "linux/amd64", commit).to_string()).unwrap();
        let kind = xtask::provenance::COSIGN_TYPE;
        self.signer().attest(&self.cosign, pinned, kind, &path, Tlog::Offline).unwrap();
    }

    fn deploy_args(&self, image: &str, name: &str) -> DeployArgs {
        DeployArgs {
            image: Some(image.to_owned()),
            trust: TrustArgs { key: Some(self.public_key.clone()), ..TrustArgs::default() },
            name: Some(name.to_owned()),
            ..DeployArgs::default()
        }
    }

    /// Deploys in this process and returns the error, which must come before anything ran.
    fn refused(&self, args: &DeployArgs) -> String {
        let name = args.name.clone().unwrap();
        let _cleanup = Cleanup { ctx: &self.ctx, name: name.clone(), pulled: None };
        let error = format!("{:#}", deploy::deploy(&self.ctx, args).expect_err("the deploy must be refused"));
        eprintln!("refused: {error}");
        assert!(error.contains("it did not verify, so nothing was pulled or started"), "{error}");
        self.assert_nothing_of(&name);
        let pinned = args.image.as_deref().unwrap();
        let sh = &self.ctx.sh;
        assert!(cmd!(sh, "docker image inspect {pinned}").quiet().ignore_stdout().ignore_stderr().run().is_err());
        error
    }

    fn assert_nothing_of(&self, name: &str) {
        let (containers, networks) = running::listed(&self.ctx, &format!("{LABEL}={name}")).unwrap();
        assert!(containers.is_empty() && networks.is_empty(), "left of {name}: {containers:?} {networks:?}");
    }

    /// Runs the xtask binary to its end.
    fn xtask(&self, args: &[&str]) -> (bool, String, String) {
        let sh = &self.ctx.sh;
        let output = cmd!(sh, "{XTASK} {args...}").quiet().ignore_status().output().unwrap();
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        (output.status.success(), text(&output.stdout), text(&output.stderr))
    }

    fn docker_inspect(&self, format: &str, container: &str) -> String {
        let sh = &self.ctx.sh;
        cmd!(sh, "docker inspect --format {format} {container}").quiet().read().unwrap()
    }
}

/// Removes a deployment, and the engine's reference to the pulled digest, when a test ends, passed or not.
struct Cleanup<'a> {
    ctx: &'a Context,
    name: String,
    pulled: Option<String>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = running::remove(self.ctx, &format!("{LABEL}={}", self.name));
        if let Some(pinned) = &self.pulled {
            let sh = &self.ctx.sh;
            let _ = cmd!(sh, "docker image rm {pinned}").quiet().ignore_stdout().ignore_stderr().run();
        }
    }
}

fn status_of(url: &str) -> Option<u16> {
    let client = xtask::stack::http_client().unwrap();
    client.get(url).send().ok().map(|response| response.status().as_u16())
}

/// The networks a container is on, by name.
const NETWORKS: &str = "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}}{{end}}";

/// The value after `  <field>` in the output of `deploy`.
fn field<'a>(stdout: &'a str, name: &str) -> &'a str {
    let line = stdout.lines().find(|line| line.trim_start().starts_with(name)).unwrap_or_else(|| panic!("{stdout}"));
    line.trim_start()[name.len()..].split_whitespace().next().unwrap()
}

/// A published image deployed by the binary, which has ended when this returns: its name, stdout and stderr.
fn deploy_with_the_binary<'a>(world: &'a World, published: &Published, image: &str) -> (Cleanup<'a>, String, String) {
    let name = unique(image);
    let cleanup = Cleanup { ctx: &world.ctx, name: name.clone(), pulled: Some(published.pinned.clone()) };
    let commit = world.ctx.revision().unwrap().commit.clone();
    let key = world.public_key.to_str().unwrap();
    let started = Instant::now();
    let (ok, stdout, stderr) =
        world.xtask(&["deploy", &published.pinned, "--key", key, "--source-revision", &commit, "--name", &name]);
    eprintln!("figure: deploy of {image} (verify, pull, start, healthy) took {:.2?}", started.elapsed());
    eprintln!("--- deploy stdout ---\n{stdout}--- deploy stderr ---\n{stderr}");
    assert!(ok, "deploy failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("cargo xtask deploy --stop {name}")), "{stdout}");
    (cleanup, stdout, stderr)
}

/// `deploy --stop` with the binary, then nothing of the deployment may be left.
fn stop_with_the_binary(world: &World, name: &str) {
    let (ok, stdout, stderr) = world.xtask(&["deploy", "--stop", name]);
    eprintln!("--- deploy --stop stdout ---\n{stdout}");
    assert!(ok, "deploy --stop failed:\n{stdout}\n{stderr}");
    world.assert_nothing_of(name);
}

#[test]
fn a_released_image_is_deployed_by_digest_hardened_outlives_the_xtask_and_is_stopped() {
    let Some(world) = World::new() else { return };
    let Some(published) = world.publish_built(APP) else { return };
    let (deployment, stdout, _) = deploy_with_the_binary(&world, &published, APP);
    let name = &deployment.name;
    assert!(stdout.contains("verified   signature, SBOM (CycloneDX), provenance (SLSA v1)"), "{stdout}");
    assert!(!stdout.contains("secrets"), "{APP} has no secret to mention:\n{stdout}");

    // The xtask has ended; the app answers, runs the verified digest (not a tag), hardened, on loopback only.
    let health = field(&stdout, "health");
    assert!(health.starts_with("http://127.0.0.1:"), "{stdout}");
    assert_eq!(status_of(health), Some(200), "{health} after the xtask ended");
    assert_eq!(world.docker_inspect("{{.Config.Image}}", name), published.pinned);
    let hardening = "{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}}";
    assert_eq!(world.docker_inspect(hardening, name), "true [ALL] [no-new-privileges]");
    let mounts = world.docker_inspect("{{range .HostConfig.Mounts}}{{.Type}}:{{.Target}} {{end}}", name);
    assert_eq!(mounts.trim(), "tmpfs:/tmp");
    assert_eq!(world.docker_inspect(NETWORKS, name), *name);

    stop_with_the_binary(&world, name);
    assert_eq!(status_of(health), None, "{health} still answers after --stop");
}

#[test]
fn a_released_app_runs_with_its_database_beside_it_and_no_secret_is_printed() {
    let Some(world) = World::new() else { return };
    let Some(published) = world.publish_built("fake-shop") else { return };
    let (deployment, stdout, stderr) = deploy_with_the_binary(&world, &published, "fake-shop");
    let name = &deployment.name;
    // Readiness of fake-shop is its database answering: the companion runs beside it on the private network.
    assert_eq!(status_of(field(&stdout, "health")), Some(200));
    let database = format!("{name}-postgres");
    assert_eq!(world.docker_inspect(NETWORKS, &database), *name);
    assert_eq!(world.docker_inspect("{{len .NetworkSettings.Ports}}", &database), "1", "exposed, never published");
    assert_eq!(world.docker_inspect("{{range .NetworkSettings.Ports}}{{len .}}{{end}}", &database), "0");
    let env = world.docker_inspect("{{json .Config.Env}}", &database);
    let password = env.split('"').find_map(|entry| entry.strip_prefix("POSTGRES_PASSWORD=")).unwrap().to_owned();
    assert_eq!(password.len(), 32, "a generated password");
    assert!(world.docker_inspect("{{json .Config.Env}}", name).contains(&format!("DB_PASSWORD={password}")));
    assert!(!stdout.contains(&password) && !stderr.contains(&password), "the password was printed");
    assert!(stdout.contains("DB_PASSWORD") && stdout.contains("docker inspect"), "how to read it: {stdout}");
    stop_with_the_binary(&world, name);
}

#[test]
fn an_unsigned_image_is_refused_and_nothing_runs() {
    let Some(world) = World::new() else { return };
    let pinned = world.push_tiny(&unique("commit"));
    let error = world.refused(&world.deploy_args(&pinned, &unique("unsigned")));
    assert!(error.contains("has no signature that verifies"), "{error}");
}

#[test]
fn a_signature_alone_is_refused_naming_the_missing_sbom_and_provenance() {
    let Some(world) = World::new() else { return };
    let pinned = world.push_tiny(&unique("commit"));
    world.sign(&pinned);
    let error = world.refused(&world.deploy_args(&pinned, &unique("signature-only")));
    assert!(error.contains("no SBOM attestation") && error.contains("no provenance attestation"), "{error}");
}

#[test]
fn an_image_without_provenance_is_refused_and_nothing_runs() {
    let Some(world) = World::new() else { return };
    let pinned = world.push_tiny(&unique("commit"));
    world.sign(&pinned);
    world.attest_sbom(&pinned);
    let error = world.refused(&world.deploy_args(&pinned, &unique("no-provenance")));
    assert!(error.contains("no provenance attestation") && !error.contains("no SBOM"), "{error}");
}

#[test]
fn a_provenance_of_another_commit_is_refused_and_nothing_runs() {
    let Some(world) = World::new() else { return };
    let (built_from, claimed) = ("1".repeat(40), "2".repeat(40));
    let pinned = world.push_tiny(&built_from);
    world.sign(&pinned);
    world.attest_sbom(&pinned);
    world.attest_provenance(&pinned, &claimed);
    let error = world.refused(&world.deploy_args(&pinned, &unique("other-commit")));
    assert!(error.contains(&format!("names commit {claimed}, but the image says it was built from {built_from}")));

    // Consistent evidence of a commit other than the one the deployer asks for.
    let pinned = world.push_tiny(&claimed);
    world.sign(&pinned);
    world.attest_sbom(&pinned);
    world.attest_provenance(&pinned, &claimed);
    let mut args = world.deploy_args(&pinned, &unique("not-asked-for"));
    args.require.source_revision = Some(built_from.clone());
    let error = world.refused(&args);
    assert!(error.contains(&format!("names commit {claimed}, not {built_from} (--source-revision)")), "{error}");
}

#[test]
fn no_verify_warns_and_a_start_that_fails_leaves_nothing() {
    let Some(world) = World::new() else { return };
    let key = world.public_key.to_str().unwrap();
    let (ok, _, stderr) = world.xtask(&["deploy", "127.0.0.1:1/team/x:1", "--no-verify", "--key", key]);
    assert!(!ok && stderr.contains("cannot be used with"), "--no-verify with --key: {stderr}");

    // An unsigned image that cannot run (its entrypoint is a text file): deployed only because the flag says so.
    let pinned = world.push_tiny(&unique("commit"));
    let name = unique("unverified");
    let _cleanup = Cleanup { ctx: &world.ctx, name: name.clone(), pulled: Some(pinned.clone()) };
    let (ok, stdout, stderr) = world.xtask(&["deploy", &pinned, "--no-verify", "--name", &name]);
    assert!(!ok, "{stdout}");
    assert!(stderr.contains(&format!("WARNING: --no-verify: deploying {pinned} WITHOUT checking")), "{stderr}");
    assert!(stderr.contains("nothing of it is left running"), "{stderr}");
    world.assert_nothing_of(&name);
}

/// `up` as a child process: its printed URLs, and the label of what it started (`stack::owner` of the child).
struct Up {
    child: Child,
    label: String,
    urls: Vec<(String, String)>,
    stderr: PathBuf,
}

impl Up {
    fn start(ctx: &Context, images: &[&str], stderr: &Path) -> Up {
        let sh = &ctx.sh;
        let mut command = std::process::Command::from(cmd!(sh, "{XTASK} up {images...}"));
        // A process group of its own, as a shell gives a foreground job: Ctrl-C reaches all of it.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let log = std::fs::File::create(stderr).unwrap();
        let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log).spawn().unwrap();
        let (lines, received) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            std::io::BufReader::new(stdout).lines().map_while(Result::ok).try_for_each(|l| lines.send(l))
        });
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let label = format!("{}={}/{}", xtask::stack::LABEL, host.trim(), child.id());
        let mut up = Up { child, label, urls: Vec::new(), stderr: stderr.to_owned() };
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let line = received.recv_timeout(deadline.saturating_duration_since(Instant::now()));
            let line = line.unwrap_or_else(|_| panic!("up printed no URLs:\n{}", up.log()));
            eprintln!("up: {line}");
            if line.starts_with("Ctrl-C") {
                return up;
            }
            let mut words = line.split_whitespace();
            up.urls.push((words.next().unwrap().to_owned(), words.next().unwrap().to_owned()));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Sends the signal and waits for the exit status. SIGINT goes to the whole process group, as a terminal sends
    /// Ctrl-C (a docker command `up` is running then gets it too); SIGTERM to `up` alone, as `kill` sends it.
    fn stop(&mut self, ctx: &Context, signal: &str) -> std::process::ExitStatus {
        let pid = self.child.id();
        let target = if signal == "INT" { format!("-{pid}") } else { pid.to_string() };
        let sh = &ctx.sh;
        cmd!(sh, "kill -s {signal} -- {target}").quiet().run().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!("up did not end within 60 s of {signal}:\n{}", self.log());
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `up` on the images, checks every URL answers its health endpoint and what runs, sends the signal, and
/// checks that every container and network is gone.
fn up_then_signal(images: &[&str], signal: &str) {
    let ctx = Context::discover().expect("the xtask workspace");
    if require("a Docker engine", ctx.engine().map(drop)).is_none() {
        return;
    }
    let images: Vec<String> = images.iter().map(|image| image.to_string()).collect();
    let selected = ctx.select(&images).unwrap();
    let names: Vec<String> = selected.iter().map(|image| image.name.clone()).collect();
    let companions: usize = selected.iter().map(|image| image.settings.needs.len()).sum();
    // Without the builds `up` would build first, for minutes: `cargo xtask test` builds before this suite.
    for image in ctx.with_companions(&names).unwrap() {
        let build = format!("a build of {} at this revision (`cargo xtask build`)", image.name);
        if require(&build, Built::current(&ctx, &image.name)).is_none() {
            return;
        }
    }
    let folder = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let arguments: Vec<&str> = images.iter().map(String::as_str).collect();
    let mut up = Up::start(&ctx, &arguments, &folder.path().join("up.log"));
    eprintln!("figure: up of {names:?} to healthy took {:.2?}", started.elapsed());

    assert_eq!(up.urls.iter().map(|(name, _)| name.clone()).collect::<Vec<_>>(), names);
    for (name, url) in &up.urls {
        let health = &ctx.image(name).unwrap().health().unwrap().path;
        assert_eq!(status_of(&format!("{}{health}", url.trim_end_matches('/'))), Some(200), "{name} at {url}");
    }
    let (containers, networks) = running::listed(&ctx, &up.label).unwrap();
    assert_eq!((containers.len(), networks.len()), (names.len() + companions, names.len()), "{containers:?}");

    let status = up.stop(&ctx, signal);
    eprintln!("--- up stderr ---\n{}", up.log());
    assert!(status.success(), "up ended with {status} after {signal}:\n{}", up.log());
    let (containers, networks) = running::listed(&ctx, &up.label).unwrap();
    assert!(containers.is_empty() && networks.is_empty(), "left after {signal}: {containers:?} {networks:?}");
    for (name, url) in &up.urls {
        assert_eq!(status_of(url), None, "{name} still answers at {url}");
    }
}

#[test]
fn up_runs_every_deliverable_and_sigint_removes_every_container_and_network() {
    up_then_signal(&[], "INT");
}

#[test]
fn up_of_one_image_ends_on_sigterm_and_leaves_nothing() {
    up_then_signal(&[APP], "TERM");
}
