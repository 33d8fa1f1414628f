//! Integration tests against the built images, through testcontainers and the real Docker engine.
//!
//! `cargo xtask test` (and `cargo xtask ci`) build the images first. Run alone, a test whose image is
//! not built for the current revision is skipped with a message, except under `CI=true`, where it fails.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use testcontainers::core::{ContainerPort, WaitFor};
use testcontainers::runners::SyncRunner;
use testcontainers::{GenericImage, ImageExt};
use xshell::cmd;
use xtask::built::Built;
use xtask::context::Context;
use xtask::images::Image;
use xtask::stack::{self, Network, Options, Stack, LABEL};

use common::shop;

/// The workspace and the image's current build, or `None` (skip) when it is not built outside CI.
fn built(name: &str) -> Option<(Context, Built)> {
    let ctx = Context::discover().expect("workspace");
    match Built::current(&ctx, name) {
        Ok(built) => Some((ctx, built)),
        Err(error) if !Context::in_ci() => {
            eprintln!("skipped: {error:#}");
            None
        }
        Err(error) => panic!("CI=true and the image is not available: {error:#}"),
    }
}

fn start(ctx: &Context, image: &Image, built: &Built, options: &Options) -> Stack {
    let stack = stack::start(ctx, image, &built.reference, options).expect("start the image");
    let health = image.health().expect("health settings");
    let elapsed = stack.wait_healthy(health).expect("healthy");
    eprintln!("{} healthy after {:.2}s", built.reference, elapsed.as_secs_f64());
    stack
}

fn client() -> reqwest::blocking::Client {
    shop::client(Duration::from_secs(10))
}

fn generate(client: &reqwest::blocking::Client, base: &str, length: u32) -> String {
    let response = client
        .post(format!("{base}/api/gerar-senha"))
        .json(&serde_json::json!({"tamanho": length, "incluir_numeros": true, "incluir_caracteres_especiais": true}))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().unwrap();
    body["senha"].as_str().expect("senha").to_owned()
}

fn latest(client: &reqwest::blocking::Client, base: &str) -> Vec<serde_json::Value> {
    client.get(format!("{base}/api/senhas")).send().unwrap().json().unwrap()
}

#[test]
fn giropops_generates_passwords_through_api_and_form_with_embedded_redis() {
    let Some((ctx, built)) = built("giropops-senhas") else { return };
    let image = ctx.image("giropops-senhas").unwrap();
    let stack = start(&ctx, image, &built, &Options::default());
    let base = stack.base_url().unwrap();
    let client = client();

    let password = generate(&client, &base, 20);
    assert_eq!(password.chars().count(), 20);
    let listed = latest(&client, &base);
    assert_eq!(listed[0]["id"], 1);
    assert_eq!(listed[0]["senha"], password.as_str());

    let form = [("tamanho", "12"), ("incluir_numeros", "on")];
    let page = client.post(format!("{base}/")).form(&form).send().unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().unwrap();
    let listed = latest(&client, &base);
    let from_form = listed[0]["senha"].as_str().unwrap();
    assert_eq!(from_form.chars().count(), 12);
    assert!(page.contains(&html_escape(from_form)), "the form page shows the new password");

    let bad = client.post(format!("{base}/api/gerar-senha")).json(&serde_json::json!({"tamanho": "x"})).send().unwrap();
    assert_eq!(bad.status(), 400);
    let metrics = client.get(format!("{base}/metrics")).send().unwrap().text().unwrap();
    assert!(metrics.contains("senha_gerada_total"));
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&#34;").replace('\'', "&#39;")
}

#[test]
fn giropops_uses_an_external_redis_when_the_embedded_one_is_off() {
    let Some((ctx, built)) = built("giropops-senhas") else { return };
    let image = ctx.image("giropops-senhas").unwrap();
    let network = Network::create(&ctx, "external-redis").unwrap();
    // The image's own redis-server, run alone through the launcher's config-less mode.
    let (name, tag) = built.reference.rsplit_once(':').unwrap();
    let redis = GenericImage::new(name, tag)
        .with_exposed_port(ContainerPort::Tcp(6379))
        .with_wait_for(WaitFor::message_on_stdout("Ready to accept connections"))
        .with_network(network.name())
        .with_label(LABEL, stack::owner())
        .with_cmd(["--", "redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--dir", "/tmp"])
        .start()
        .expect("external redis");
    let address = stack::network_address(&ctx, redis.id(), network.name()).unwrap();
    let options = Options {
        env: BTreeMap::from([("EMBEDDED_REDIS".into(), "false".into()), ("REDIS_HOST".into(), "redis".into())]),
        hosts: vec![("redis".into(), address)],
        network: Some(network.name().to_owned()),
        ..Options::default()
    };
    let first = start(&ctx, image, &built, &options);
    let password = generate(&client(), &first.base_url().unwrap(), 16);
    // A second app container on the same Redis sees it: the data lives in the external Redis.
    let second = start(&ctx, image, &built, &options);
    let listed = latest(&client(), &second.base_url().unwrap());
    assert_eq!(listed[0]["senha"], password.as_str());
    drop((first, second, redis));
}

#[test]
fn fake_shop_takes_an_order_on_postgres_and_keeps_it_across_a_restart() {
    let Some((ctx, built)) = built("fake-shop") else { return };
    let image = ctx.image("fake-shop").unwrap();
    let mut stack = start(&ctx, image, &built, &Options::default());
    let base = stack.base_url().unwrap();
    let client = client();

    let path = shop::place_an_order(&client, &base).expect("an order placed");
    let order_number = path.rsplit('/').next().unwrap().to_owned();

    stack.restart().unwrap();
    let health = image.health().unwrap();
    stack.wait_healthy(health).expect("healthy after a restart");
    let base = stack.base_url().unwrap();
    let page = client.get(format!("{base}{path}")).send().unwrap();
    assert_eq!(page.status(), 200, "the order survives a restart of the app container");
    assert!(page.text().unwrap().contains(&order_number));
}

/// The CA bundle a build hands to pip as a BuildKit secret must not land in any layer: no file of
/// the image may have its content.
fn assert_build_secret_not_in_image(ctx: &Context, name: &str, reference: &str) {
    use sha2::{Digest, Sha256};
    let bundle = ["SSL_CERT_FILE", "PIP_CERT"]
        .iter()
        .filter_map(std::env::var_os)
        .map(std::path::PathBuf::from)
        .chain([std::path::PathBuf::from("/etc/ssl/certs/ca-certificates.crt")])
        .find(|path| path.is_file())
        .expect("a CA bundle on the host");
    let secret = std::fs::read(&bundle).unwrap();
    let secret_digest = Sha256::digest(&secret);
    let sh = &ctx.sh;
    let label = format!("{LABEL}={}", stack::owner());
    let container = cmd!(sh, "docker create --label {label} {reference}").quiet().read().unwrap();
    let exported = cmd!(sh, "docker export {container}").quiet().output().unwrap().stdout;
    let mut archive = tar::Archive::new(exported.as_slice());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().size().unwrap_or(0) != secret.len() as u64 {
            continue;
        }
        let mut content = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut content).unwrap();
        let path = entry.path().unwrap().display().to_string();
        // The image's own bundle comes from Debian's ca-certificates; on a host without extra CAs it can
        // equal the host's bundle byte for byte without anything having leaked.
        if path == "etc/ssl/certs/ca-certificates.crt" {
            continue;
        }
        assert_ne!(Sha256::digest(&content), secret_digest, "{name}: {path} is the build's CA bundle secret");
    }
    cmd!(sh, "docker rm --force {container}").quiet().ignore_stdout().run().unwrap();
}

/// Every path in the image's filesystem, with its mode string from `tar -tv`.
fn filesystem(ctx: &Context, reference: &str) -> Vec<(String, String)> {
    let sh = &ctx.sh;
    let label = format!("{LABEL}={}", stack::owner());
    let container = cmd!(sh, "docker create --label {label} {reference}").quiet().read().unwrap();
    let exported = cmd!(sh, "docker export {container}").quiet().output().unwrap().stdout;
    let listing = cmd!(sh, "tar -tv").stdin(exported).quiet().read();
    cmd!(sh, "docker rm --force {container}").quiet().ignore_stdout().run().unwrap();
    listing
        .unwrap()
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields[5..].join(" "), fields[0].to_owned())
        })
        .collect()
}

fn inspect(ctx: &Context, target: &str, format: &str) -> String {
    let sh = &ctx.sh;
    cmd!(sh, "docker inspect --format {format} {target}").quiet().read().unwrap()
}

fn assert_image_properties(name: &str) {
    let Some((ctx, built)) = built(name) else { return };
    let image = ctx.image(name).unwrap();

    let files = filesystem(&ctx, &built.reference);
    let forbidden = ["sh", "bash", "dash", "busybox", "apt", "apt-get", "dpkg", "pip", "pip3"];
    for (path, mode) in &files {
        let base = path.trim_end_matches('/').rsplit('/').next().unwrap_or_default();
        let base = base.split(" -> ").next().unwrap_or_default();
        // Directories such as /etc/dpkg (origins) and /var/lib/dpkg (package records) are data.
        let is_program = !mode.starts_with('d');
        assert!(!(is_program && forbidden.contains(&base)), "{name}: {path} must not be in a shell-less image");
        assert!(!base.starts_with("pip3."), "{name}: {path} (pip) must not be in the image");
        let special = mode.chars().nth(3) == Some('s') || mode.chars().nth(6) == Some('s');
        assert!(!special, "{name}: {path} is setuid/setgid ({mode})");
    }
    assert!(files.iter().any(|(path, _)| path.contains("var/lib/dpkg/status.d/libc6")), "{name}: package records");
    assert_build_secret_not_in_image(&ctx, name, &built.reference);

    assert_eq!(inspect(&ctx, &built.reference, "{{.Config.User}}"), "65532:65532");
    assert_eq!(inspect(&ctx, &built.reference, "{{json .Config.Entrypoint}}"), r#"["/usr/local/bin/launcher"]"#);
    let labels: BTreeMap<String, String> =
        serde_json::from_str(&inspect(&ctx, &built.reference, "{{json .Config.Labels}}")).unwrap();
    for key in ["title", "description", "revision", "created", "licenses"] {
        assert!(labels.contains_key(&format!("org.opencontainers.image.{key}")), "{name}: OCI label {key}");
    }
    // Nothing that varies by checkout or by when a tag was set: the same commit gives the same digest.
    for key in ["source", "version"] {
        assert!(!labels.contains_key(&format!("org.opencontainers.image.{key}")), "{name}: OCI label {key}");
    }
    // The engine holds exactly the reproducible image: its id is the layout's config digest (Engine 20.10) or
    // manifest digest (the containerd image store).
    assert!(
        [&built.layout.config_digest, &built.layout.digest].contains(&&built.id),
        "{name}: the engine's image {} is not the layout's",
        built.id
    );
    // Python's TLS finds the CA bundle where OpenSSL looks by default.
    let sh = &ctx.sh;
    let reference = &built.reference;
    let trusted = cmd!(
        sh,
        "docker run --rm --entrypoint /opt/venv/bin/python {reference} -c 'import ssl; print(ssl.create_default_context().cert_store_stats()[\"x509_ca\"])'"
    )
    .quiet()
    .read()
    .unwrap();
    assert!(trusted.trim().parse::<u32>().unwrap() > 100, "{name}: only {trusted} CA certificates trusted");

    let head = ctx.read("git", &["rev-parse", "HEAD"]).unwrap();
    assert_eq!(labels["org.opencontainers.image.revision"], head);

    // Started hardened (read-only root, no capabilities, no-new-privileges): Docker's own health
    // check, the launcher's probe, must turn healthy.
    let stack = start(&ctx, image, &built, &Options::default());
    let id = stack.app.id().to_owned();
    assert_eq!(inspect(&ctx, &id, "{{.HostConfig.ReadonlyRootfs}}"), "true");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let status = inspect(&ctx, &id, "{{.State.Health.Status}}");
        if status == "healthy" {
            break;
        }
        assert!(Instant::now() < deadline, "{name}: docker health status still {status}\n{}", stack.failure_report());
        std::thread::sleep(Duration::from_millis(500));
    }
    let uids = cmd!(sh, "docker top {id} -o pid,uid").quiet().read().unwrap();
    for line in uids.lines().skip(1) {
        let uid = line.split_whitespace().nth(1).unwrap_or_default();
        assert_eq!(uid, "65532", "{name}: every process runs as 65532 ({line})");
    }

    let stopping = Instant::now();
    cmd!(sh, "docker stop {id}").quiet().ignore_stdout().run().unwrap();
    eprintln!("{name}: docker stop took {:.2}s", stopping.elapsed().as_secs_f64());
    assert_eq!(inspect(&ctx, &id, "{{.State.ExitCode}}"), "0", "{name}: exit code after docker stop");
}

#[test]
fn giropops_image_is_shell_less_non_root_read_only_healthy_and_stops_cleanly() {
    assert_image_properties("giropops-senhas");
}

#[test]
fn fake_shop_image_is_shell_less_non_root_read_only_healthy_and_stops_cleanly() {
    assert_image_properties("fake-shop");
}

/// The gate passes on the real images, and Trivy sees all three kinds of packages in them: the Debian
/// packages of the distroless root filesystem, the Python packages of the venv, and the launcher's crates.
fn assert_scan_sees_every_package_kind(name: &str, python_package: &str) {
    let Some((ctx, built)) = built(name) else { return };
    let image = ctx.image(name).unwrap();
    let outcome = match xtask::stages::scan::scan_image(&ctx, image, &built) {
        Ok(outcome) => outcome,
        Err(error) if !Context::in_ci() => return eprintln!("skipped: {error:#}"),
        Err(error) => panic!("CI=true and the scan could not run: {error:#}"),
    };
    assert!(outcome.passed, "{name}: the gate failed: {}", outcome.message);
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&outcome.report).unwrap()).unwrap();
    let packages_of = |kind: &str| -> Vec<String> {
        report["Results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|result| result["Type"] == kind)
            .flat_map(|result| result["Packages"].as_array().cloned().unwrap_or_default())
            .map(|package| package["Name"].as_str().unwrap_or_default().to_lowercase())
            .collect()
    };
    let debian = packages_of("debian");
    assert!(
        debian.iter().any(|p| p == "libc6") && debian.iter().any(|p| p == "python3.13-minimal"),
        "{name}: {debian:?}"
    );
    let python = packages_of("python-pkg");
    assert!(python.iter().any(|p| p == python_package), "{name}: {python:?}");
    let crates = packages_of("rustbinary");
    assert!(crates.iter().any(|p| p == "launcher"), "{name}: the launcher's crates (cargo-auditable): {crates:?}");
}

#[test]
fn giropops_image_passes_the_gate_and_trivy_sees_debian_python_and_rust_packages() {
    assert_scan_sees_every_package_kind("giropops-senhas", "flask");
}

#[test]
fn fake_shop_image_passes_the_gate_and_trivy_sees_debian_python_and_rust_packages() {
    assert_scan_sees_every_package_kind("fake-shop", "sqlalchemy");
}

/// PostgreSQL as deploy/kubernetes/base/postgres.yaml runs it under Pod Security `restricted`: the image's numeric
/// user 65532, a read-only root, no capability, no new privileges, and writable only the three emptyDirs (here
/// directories of mode 0777, as an emptyDir is), with the data directory created by initdb inside one of them.
#[test]
fn postgres_runs_as_kubernetes_runs_it() {
    use std::os::unix::fs::PermissionsExt as _;
    use testcontainers::core::Mount;
    let Some((ctx, built)) = built("postgres") else { return };
    let volumes = tempfile::Builder::new().prefix("xtask-postgres-volumes-").tempdir().unwrap();
    let (name, tag) = built.reference.rsplit_once(':').unwrap();
    let mut request = GenericImage::new(name, tag)
        .with_wait_for(WaitFor::message_on_stderr("database system is ready to accept connections"))
        .with_label(LABEL, stack::owner())
        .with_env_var("POSTGRES_USER", "ecommerce")
        .with_env_var("POSTGRES_DB", "ecommerce")
        .with_env_var("POSTGRES_PASSWORD", stack::random_hex(16).unwrap())
        .with_readonly_rootfs(true)
        .with_cap_drop("ALL")
        .with_security_opt("no-new-privileges")
        .with_startup_timeout(Duration::from_secs(120));
    for path in ["/var/lib/postgresql", "/run/postgresql", "/tmp"] {
        let host = volumes.path().join(path.trim_start_matches('/').replace('/', "-"));
        std::fs::create_dir(&host).unwrap();
        std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o777)).unwrap();
        request = request.with_mount(Mount::bind_mount(host.display().to_string(), path));
    }
    let postgres = request.start().expect("postgres as Kubernetes runs it");
    let id = postgres.id();
    let sh = &ctx.sh;
    assert_eq!(cmd!(sh, "docker exec {id} id -u").quiet().read().unwrap(), "65532");
    cmd!(sh, "docker exec {id} pg_isready --host=127.0.0.1 --port=5432 --quiet").quiet().run().expect("pg_isready");
    let mode = cmd!(sh, "docker exec {id} stat -c %a:%u /var/lib/postgresql/data").quiet().read().unwrap();
    assert_eq!(mode, "700:65532");
}
