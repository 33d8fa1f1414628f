//! `release` and `verify` against a real registry on 127.0.0.1, the real cosign and the real Docker engine, with a
//! tiny image built `FROM scratch` and a throwaway key pair.

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use xshell::cmd;
use xtask::context::Context;

use common::require;
use xtask::cosign::{self, Secret, Tlog};
use xtask::registry::Reference;
use xtask::signing::{KeySource, Signer, SigningArgs, Verifier};
use xtask::stages::release::{self, publish, push, Destination, Published, ReleaseArgs, Signing};

use common::registry::LocalRegistry;

/// A unique, unguessable-enough string: secrets the tests later look for must not occur anywhere by chance.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

struct KeyPair {
    private: PathBuf,
    public: PathBuf,
    password: String,
}

/// One test's world: a committed git checkout with an SBOM, a registry, cosign and a key pair.
struct Bench {
    ctx: Context,
    registry: LocalRegistry,
    cosign: PathBuf,
    keys: KeyPair,
    name: String,
    folder: tempfile::TempDir,
}

impl Bench {
    fn new(name: &str) -> Option<Self> {
        let workspace = Context::discover().expect("the xtask workspace");
        require("the Docker engine", workspace.engine().map(drop))?;
        let cosign = require("cosign", cosign::cosign(&workspace))?;
        let registry = require("a registry binary", LocalRegistry::start(&workspace))?;
        let folder = tempfile::Builder::new().prefix("xtask-release-").tempdir().unwrap();
        let root = folder.path().join("checkout");
        std::fs::create_dir_all(&root).unwrap();
        let ctx = Context::at(root).unwrap();
        let keys = generate_key_pair(&cosign, &folder.path().join("keys"), &unique("password"));
        let bench = Self { ctx, registry, cosign, keys, name: unique(name), folder };
        bench.commit();
        let sbom = bench.ctx.out.sbom(&bench.name);
        std::fs::create_dir_all(sbom.parent().unwrap()).unwrap();
        std::fs::write(&sbom, r#"{"bomFormat":"CycloneDX","specVersion":"1.5","version":1,"components":[]}"#).unwrap();
        Some(bench)
    }

    fn commit(&self) {
        std::fs::write(self.ctx.root.join(".gitignore"), "/out/\n").unwrap();
        for args in [
            &["init", "--quiet"][..],
            &["add", "."],
            &["-c", "user.name=xtask", "-c", "user.email=xtask@localhost", "commit", "--quiet", "-m", "release me"],
        ] {
            self.ctx.read("git", args).unwrap();
        }
    }

    fn destination(&self) -> Destination {
        Destination::parse(&format!("{}/team", self.registry.address)).unwrap()
    }

    /// Key-based, offline signing, verified with the public key `release` derives from the private one.
    fn key_signing(&self) -> Signing {
        let signer = self.signer(&self.keys.password);
        let derived = self.folder.path().join(unique("derived")).join("cosign.pub");
        let verifier = signer.verifier(&self.cosign, None, &derived).unwrap();
        Signing { signer, verifier, tlog: Tlog::Offline, cosign: self.cosign.clone() }
    }

    fn signer(&self, password: &str) -> Signer {
        Signer::Key { key: KeySource::File(self.keys.private.clone()), password: Secret::new(password) }
    }

    /// Builds a `FROM scratch` image holding `content` and returns its local reference. The content is made
    /// unique to this test, so that no other test shares the image and its cleanup.
    fn build(&self, content: &str) -> String {
        let context = self.folder.path().join(unique("image"));
        std::fs::create_dir_all(&context).unwrap();
        std::fs::write(context.join("Dockerfile"), "FROM scratch\nCOPY payload.txt /payload.txt\n").unwrap();
        std::fs::write(context.join("payload.txt"), format!("{content}\n{}\n", self.name)).unwrap();
        let reference = format!("xtask-release-test/{}:{}", self.name, unique("build"));
        let sh = &self.ctx.sh;
        cmd!(sh, "docker build --quiet --tag {reference} {context}")
            .env("DOCKER_BUILDKIT", "0")
            .quiet()
            .ignore_stdout()
            .run()
            .expect("building the test image");
        reference
    }

    fn publish(&self, local: &str, signing: &Signing) -> Result<Published> {
        publish(&self.ctx, &self.name, local, &self.destination(), signing)
    }

    fn verify(&self, reference: &str, public_key: &Path) -> Result<xtask::stages::verify::Verified> {
        xtask::stages::verify::image(
            &self.cosign,
            &Reference::parse(reference)?,
            &Verifier::Key(public_key.to_owned()),
            Tlog::Offline,
        )
    }

    fn tag(&self) -> String {
        format!("{}:{}", self.destination().repository(&self.name), self.ctx.revision().unwrap().tag)
    }
}

impl Drop for Bench {
    /// Removes this test's images (built, pushed, and those whose tag a later push took) from the engine.
    fn drop(&mut self) {
        let listing = self.ctx.read("docker", &["images", "--format", "{{.Repository}} {{.ID}}"]).unwrap_or_default();
        let mut ours: Vec<&str> = listing
            .lines()
            .filter_map(|line| line.split_once(' '))
            .filter(|(repository, _)| repository.contains(&self.name))
            .map(|(_, id)| id)
            .collect();
        ours.sort_unstable();
        ours.dedup();
        if !ours.is_empty() {
            let sh = &self.ctx.sh;
            let _ = cmd!(sh, "docker rmi --force {ours...}").quiet().ignore_stdout().ignore_stderr().run();
        }
    }
}

fn generate_key_pair(cosign: &Path, folder: &Path, password: &str) -> KeyPair {
    std::fs::create_dir_all(folder).unwrap();
    let sh = xshell::Shell::new().unwrap();
    let prefix = folder.join("cosign");
    cmd!(sh, "{cosign} generate-key-pair --output-key-prefix {prefix}")
        .env("COSIGN_PASSWORD", password)
        .stdin("")
        .quiet()
        .ignore_stdout()
        .run()
        .expect("cosign generate-key-pair");
    KeyPair { private: folder.join("cosign.key"), public: folder.join("cosign.pub"), password: password.to_owned() }
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn publish_then_verify_by_tag_and_by_digest() {
    let Some(bench) = Bench::new("signed") else { return };
    bench.ctx.read("git", &["tag", "v1.2.3"]).unwrap();
    let local = bench.build("signed content");
    let signing = bench.key_signing();

    let started = Instant::now();
    let published = bench.publish(&local, &signing).unwrap();
    eprintln!("figure: push + sign + attest + verify took {:.2?}", started.elapsed());

    let revision = bench.ctx.revision().unwrap().tag.clone();
    assert_eq!(published.tags, [revision.clone(), "v1.2.3".to_owned()]);
    let repository = bench.destination().repository(&bench.name);
    assert_eq!(published.pinned, format!("{repository}@{}", published.digest));
    assert!(published.signature.starts_with(&format!("{repository}@sha256:")), "{}", published.signature);

    let started = Instant::now();
    for reference in [bench.tag(), format!("{repository}:v1.2.3"), published.pinned.clone()] {
        let verified = bench.verify(&reference, &bench.keys.public).unwrap();
        assert_eq!(verified.pinned, published.pinned, "{reference}");
        assert!(verified.sbom_attestation, "{reference}: the SBOM attestation was not found");
    }
    eprintln!("figure: three verifications (signature + SBOM attestation) took {:.2?}", started.elapsed());
}

#[test]
fn release_refuses_a_dirty_tree_before_anything_else() {
    let folder = tempfile::tempdir().unwrap();
    let ctx = Context::at(folder.path().to_owned()).unwrap();
    for args in [
        &["init", "--quiet"][..],
        &["-c", "user.name=x", "-c", "user.email=x@localhost", "commit", "--quiet", "--allow-empty", "-m", "x"],
    ] {
        ctx.read("git", args).unwrap();
    }
    std::fs::write(folder.path().join("uncommitted.txt"), "work in progress").unwrap();
    let args = ReleaseArgs { registry: "127.0.0.1:1/team".into(), signing: SigningArgs::default(), images: Vec::new() };
    let error = release::run(&ctx, &args).unwrap_err().to_string();
    assert!(error.contains("uncommitted changes") && error.contains("-dirty"), "{error}");
}

#[test]
fn a_public_key_of_another_pair_is_refused_before_signing() {
    let Some(bench) = Bench::new("mismatch") else { return };
    let other = generate_key_pair(&bench.cosign, &bench.folder.path().join("other"), "other password");
    let derived = bench.folder.path().join("derived.pub");
    let signer = bench.signer(&bench.keys.password);
    let error = format!("{:#}", signer.verifier(&bench.cosign, Some(&other.public), &derived).unwrap_err());
    assert!(error.contains("does not belong to the signing key"), "{error}");
    assert!(
        matches!(signer.verifier(&bench.cosign, Some(&bench.keys.public), &derived), Ok(Verifier::Key(key)) if key == bench.keys.public)
    );
}

#[test]
fn verify_refuses_an_unsigned_image() {
    let Some(bench) = Bench::new("unsigned") else { return };
    let local = bench.build("never signed");
    push(&bench.ctx, &local, &bench.tag(), &bench.registry.address).unwrap();
    let error = format!("{:#}", bench.verify(&bench.tag(), &bench.keys.public).unwrap_err());
    assert!(error.contains("has no signature that verifies"), "{error}");
}

#[test]
fn verify_refuses_another_public_key() {
    let Some(bench) = Bench::new("otherkey") else { return };
    let local = bench.build("signed with the first key");
    bench.publish(&local, &bench.key_signing()).unwrap();
    let other = generate_key_pair(&bench.cosign, &bench.folder.path().join("other"), "other password");
    let error = format!("{:#}", bench.verify(&bench.tag(), &other.public).unwrap_err());
    assert!(error.contains(&format!("public key {}", other.public.display())), "{error}");
}

#[test]
fn verify_refuses_other_content_pushed_under_the_signed_tag() {
    let Some(bench) = Bench::new("retagged") else { return };
    let published = bench.publish(&bench.build("the released content"), &bench.key_signing()).unwrap();
    let impostor = bench.build("someone else's content");
    let moved_to = push(&bench.ctx, &impostor, &bench.tag(), &bench.registry.address).unwrap();
    assert_ne!(moved_to, published.digest);

    let error = format!("{:#}", bench.verify(&bench.tag(), &bench.keys.public).unwrap_err());
    assert!(error.contains(&moved_to) && error.contains("has no signature that verifies"), "{error}");
    // The released digest itself still verifies: deploy by digest and a moved tag cannot touch you.
    bench.verify(&published.pinned, &bench.keys.public).unwrap();
}

#[test]
fn a_wrong_key_password_is_named() {
    let Some(bench) = Bench::new("password") else { return };
    let signer = bench.signer("not the password");
    let pushed = push(&bench.ctx, &bench.build("content"), &bench.tag(), &bench.registry.address).unwrap();
    let pinned = format!("{}@{pushed}", bench.destination().repository(&bench.name));
    // `release` derives the public key before ci, so a wrong password stops it there; signing says the same.
    let deriving = signer.verifier(&bench.cosign, None, &bench.folder.path().join("derived.pub")).unwrap_err();
    let signing = signer.sign(&bench.cosign, &pinned, Tlog::Offline).unwrap_err();
    for error in [format!("{deriving:#}"), format!("{signing:#}")] {
        assert!(error.contains("COSIGN_PASSWORD does not decrypt the signing key"), "{error}");
        assert!(!error.contains("not the password"), "the password leaked into the error: {error}");
    }
}

#[test]
fn an_unreachable_registry_is_named() {
    let Some(bench) = Bench::new("unreachable") else { return };
    let local = bench.build("content");
    let address = format!("127.0.0.1:{}", closed_port());
    let nowhere = Destination::parse(&format!("{address}/team")).unwrap();
    let error = format!("{:#}", publish(&bench.ctx, &bench.name, &local, &nowhere, &bench.key_signing()).unwrap_err());
    assert!(
        error.contains(&format!("registry {address} is unreachable")) && error.contains("check that it is running"),
        "{error}"
    );

    let error = format!("{:#}", bench.verify(&format!("{address}/team/app:1"), &bench.keys.public).unwrap_err());
    assert!(error.contains(&format!("registry {address} is unreachable")), "{error}");
}

/// Run by `secrets_stay_out_of_logs_files_and_images` as a child process, whose whole output it then searches.
#[test]
#[ignore = "a child process of secrets_stay_out_of_logs_files_and_images"]
fn leak_probe() {
    let setting = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by the parent test"));
    let root = PathBuf::from(setting("PROBE_ROOT"));
    let ctx = Context::at(root).unwrap();
    let signing = Signing {
        signer: Signer::Key {
            key: KeySource::Env {
                variable: "COSIGN_PRIVATE_KEY".into(),
                pem: Secret::new(setting("COSIGN_PRIVATE_KEY")),
            },
            password: Secret::new(setting("COSIGN_PASSWORD")),
        },
        verifier: Verifier::Key(setting("PROBE_PUBLIC_KEY").into()),
        tlog: Tlog::Offline,
        cosign: setting("PROBE_COSIGN").into(),
    };
    let destination = Destination::parse(&setting("PROBE_DESTINATION")).unwrap();
    let published = publish(&ctx, &setting("PROBE_IMAGE"), &setting("PROBE_LOCAL"), &destination, &signing).unwrap();
    let verified = xtask::stages::verify::image(
        &signing.cosign,
        &Reference::parse(&published.pinned).unwrap(),
        &signing.verifier,
        Tlog::Offline,
    )
    .unwrap();
    println!("PROBE-OK {published:?} {verified:?}");
}

#[test]
fn secrets_stay_out_of_logs_files_and_images() {
    let Some(bench) = Bench::new("secrets") else { return };
    let local = bench.build("content");
    let private_key = std::fs::read_to_string(&bench.keys.private).unwrap();
    let probe = std::env::current_exe().unwrap();
    let sh = &bench.ctx.sh;
    let output = cmd!(sh, "{probe} --exact leak_probe --ignored --nocapture")
        .env("PROBE_ROOT", &bench.ctx.root)
        .env("PROBE_PUBLIC_KEY", &bench.keys.public)
        .env("PROBE_COSIGN", &bench.cosign)
        .env("PROBE_DESTINATION", bench.destination().registry + "/team")
        .env("PROBE_IMAGE", &bench.name)
        .env("PROBE_LOCAL", &local)
        .env("COSIGN_PRIVATE_KEY", &private_key)
        .env("COSIGN_PASSWORD", &bench.keys.password)
        .quiet()
        .ignore_status()
        .output()
        .unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && log.contains("PROBE-OK"), "the probe failed:\n{log}");

    // The password, and every line of the encrypted key's body (long enough not to occur by chance).
    let mut secrets = vec![bench.keys.password.clone()];
    secrets
        .extend(private_key.lines().filter(|line| line.len() >= 16 && !line.starts_with("-----")).map(str::to_owned));
    let leaks = |what: &str, bytes: &[u8]| {
        for secret in &secrets {
            assert!(
                !bytes.windows(secret.len()).any(|window| window == secret.as_bytes()),
                "a secret appears in {what}"
            );
        }
    };
    leaks("the output of publish and verify", log.as_bytes());
    let mut files = vec![bench.ctx.root.clone(), bench.registry.storage()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|entry| entry.unwrap().path()));
        } else {
            leaks(&path.display().to_string(), &std::fs::read(&path).unwrap());
        }
    }
    // Registry blobs are compressed layers: look into the uncompressed image as well.
    let tag = bench.tag();
    let image = cmd!(sh, "docker save {tag}").quiet().output().unwrap().stdout;
    leaks("the pushed image", &image);
}
