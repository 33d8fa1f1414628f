//! `release` and `verify` against a real registry on 127.0.0.1 and the real cosign, with tiny OCI image layouts
//! written by the tests (`common::layout`) and a throwaway key pair. No container engine is involved: the layout is
//! pushed as it is, so the digest computed here is the one the registry must report.

mod common;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use base64::Engine as _;
use xshell::cmd;
use xtask::context::Context;

use common::evidence;
use common::keys::{generate_key_pair, KeyPair};
use common::layout::{self, Layout};
use common::registry::{LocalRegistry, LOGIN_PASSWORD, LOGIN_USER};
use common::require;
use xtask::cosign::{self, Secret, Tlog};
use xtask::platform::Platform;
use xtask::registry::{push_layout, resolve_digest, Reference};
use xtask::signing::{KeySource, Signer, SigningArgs, Verifier};
use xtask::stages::release::{self, publish, Destination, PlatformImage, Published, ReleaseArgs, Signing};
use xtask::stages::verify::RequireArgs;

/// A unique, unguessable-enough string: secrets the tests later look for must not occur anywhere by chance.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

/// One test's world: a committed git checkout with an SBOM, a registry, cosign and a key pair.
struct Bench {
    ctx: Context,
    workspace: Context,
    registry: LocalRegistry,
    cosign: PathBuf,
    keys: KeyPair,
    name: String,
    folder: tempfile::TempDir,
}

impl Bench {
    fn new(name: &str) -> Option<Self> {
        let workspace = Context::discover().expect("the xtask workspace");
        let cosign = require("cosign", cosign::cosign(&workspace))?;
        let registry = require("a registry binary", LocalRegistry::start(&workspace))?;
        let folder = tempfile::Builder::new().prefix("xtask-release-").tempdir().unwrap();
        let root = folder.path().join("checkout");
        std::fs::create_dir_all(&root).unwrap();
        let ctx = Context::at(root).unwrap();
        let keys = generate_key_pair(&cosign, &folder.path().join("keys"), &unique("password"));
        let bench = Self { ctx, workspace, registry, cosign, keys, name: unique(name), folder };
        let commit = evidence::commit_all(&bench.ctx);
        let sbom = bench.ctx.out.sbom(&bench.name);
        std::fs::create_dir_all(sbom.parent().unwrap()).unwrap();
        std::fs::write(&sbom, evidence::EMPTY_SBOM).unwrap();
        bench.write_provenance(&bench.ctx.out.provenance(&bench.name, Platform::Amd64), &commit);
        Some(bench)
    }

    fn commit_id(&self) -> String {
        self.ctx.read("git", &["rev-parse", "HEAD"]).unwrap()
    }

    /// A provenance of this pipeline for the test's image, naming `commit`, as `build` writes one.
    fn write_provenance(&self, path: &Path, commit: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, evidence::provenance(&self.name, "linux/amd64", commit).to_string()).unwrap();
    }

    fn destination(&self) -> Destination {
        Destination::parse(&format!("{}/team", self.registry.address)).unwrap()
    }

    /// `HOST:PORT/team/<name>`: where this test's image goes.
    fn repository(&self) -> String {
        self.destination().repository(&self.name)
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

    /// Writes an OCI layout of one image holding `content`, made unique to this test, labelled with the commit.
    fn layout(&self, content: &str) -> Layout {
        let dir = self.folder.path().join(unique("layout"));
        layout::built_from(&dir, &format!("{content}\n{}\n", self.name), Some(&self.commit_id()))
    }

    fn publish(&self, layout: &Layout, signing: &Signing) -> Result<Published> {
        publish(&self.ctx, &self.name, &[self.platform_image(layout, Platform::Amd64)], &self.destination(), signing)
    }

    /// A layout with this test's SBOM and the provenance of `platform` (written for amd64 by `new`).
    fn platform_image(&self, layout: &Layout, platform: Platform) -> PlatformImage {
        PlatformImage {
            platform,
            layout: layout.dir.clone(),
            sbom: self.ctx.out.sbom(&self.name),
            provenance: self.ctx.out.provenance(&self.name, platform),
        }
    }

    /// Pushes a layout under the revision tag, as `release` would but without signing.
    fn push(&self, layout: &Layout) -> Result<String> {
        push_layout(&layout.dir, &self.repository(), &[self.ctx.revision()?.tag.clone()])
    }

    fn verify(&self, reference: &str, public_key: &Path) -> Result<xtask::stages::verify::Verified> {
        xtask::stages::verify::image(
            &self.cosign,
            &Reference::parse(reference)?,
            &Verifier::Key(public_key.to_owned()),
            Tlog::Offline,
            &RequireArgs::default(),
        )
    }

    fn tag(&self) -> String {
        format!("{}:{}", self.repository(), self.ctx.revision().unwrap().tag)
    }

    /// `team/<name>`: the repository's path in the registry.
    fn path(&self) -> String {
        format!("team/{}", self.name)
    }
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn resolve(reference: &str) -> String {
    resolve_digest(&Reference::parse(reference).unwrap()).unwrap()
}

#[test]
fn publish_then_verify_by_tag_and_by_digest() {
    let Some(bench) = Bench::new("signed") else { return };
    bench.ctx.read("git", &["tag", "v1.2.3"]).unwrap();
    let layout = bench.layout("signed content");
    let signing = bench.key_signing();

    let started = Instant::now();
    let published = bench.publish(&layout, &signing).unwrap();
    eprintln!("figure: push + sign + attest + verify took {:.2?}", started.elapsed());

    // The digest is the one computed when the layout was written, before any push.
    assert_eq!(published.digest, layout.digest);
    let revision = bench.ctx.revision().unwrap().tag.clone();
    assert_eq!(published.tags, [revision.clone(), "v1.2.3".to_owned()]);
    let repository = bench.repository();
    assert_eq!(published.pinned, format!("{repository}@{}", layout.digest));
    // In cosign's tag format, the one policy-controller reads: `sha256-<hex>.sig` and `.att` beside the image.
    let tag_of = |suffix: &str| format!("{repository}:{}.{suffix}", layout.digest.replace(':', "-"));
    assert_eq!(published.signature, format!("{repository}@{}", resolve(&tag_of("sig"))));
    resolve(&tag_of("att"));
    for tag in &published.tags {
        let (reported, bytes) = bench.registry.manifest(&bench.path(), tag).unwrap();
        assert_eq!(reported, layout.digest, "the Docker-Content-Digest of tag {tag}");
        assert!(bytes == layout.bytes, "tag {tag}: the registry serves other bytes than the layout's manifest");
        assert_eq!(resolve(&format!("{repository}:{tag}")), layout.digest, "resolve_digest of tag {tag}");
    }

    let (cosign, public, pinned) = (&bench.cosign, &bench.keys.public, &published.pinned);
    let started = Instant::now();
    for reference in [bench.tag(), format!("{repository}:v1.2.3"), published.pinned.clone()] {
        let verified = bench.verify(&reference, &bench.keys.public).unwrap();
        assert_eq!(verified.pinned, published.pinned, "{reference}");
        assert!(verified.sbom, "{reference}: the SBOM attestation was not found");
        let provenance = verified.provenance.expect("the provenance");
        assert_eq!(provenance.revision, bench.commit_id(), "{reference}");
        assert_eq!(provenance.builder, "urn:distroless-python:host:test");
    }
    eprintln!("figure: three verifications (signature, SBOM, provenance) took {:.2?}", started.elapsed());

    // Plain cosign accepts the provenance too, and its statement names the commit.
    let output = cmd!(
        bench.ctx.sh,
        "{cosign} verify-attestation --type slsaprovenance1 --key {public} --insecure-ignore-tlog {pinned}"
    )
    .quiet()
    .read()
    .unwrap();
    let statements = xtask::cosign::statements(&output).unwrap();
    assert_eq!(
        statements[0]["predicate"]["buildDefinition"]["externalParameters"]["source"]["revision"],
        bench.commit_id()
    );
}

#[test]
fn pushing_the_same_layout_twice_changes_nothing() {
    let Some(bench) = Bench::new("twice") else { return };
    let layout = bench.layout("pushed twice");
    let tags = ["first".to_owned(), "second".to_owned()];

    let first = push_layout(&layout.dir, &bench.repository(), &tags).unwrap();
    let stored = bench.registry.stored_files();
    let blobs = |files: &[PathBuf]| files.iter().filter(|file| file.starts_with("docker/registry/v2/blobs")).count();
    let started = Instant::now();
    let second = push_layout(&layout.dir, &bench.repository(), &tags).unwrap();
    eprintln!("figure: pushing a layout the registry already has took {:.2?}", started.elapsed());

    assert_eq!((first.as_str(), second.as_str()), (layout.digest.as_str(), layout.digest.as_str()));
    assert_eq!(bench.registry.stored_files(), stored, "the second push changed what the registry stores");
    // Layer, config and manifest: the blobs of one image, each stored once.
    assert_eq!(blobs(&stored), 3, "{stored:#?}");
    for tag in &tags {
        assert_eq!(resolve(&format!("{}:{tag}", bench.repository())), layout.digest, "tag {tag}");
    }
}

#[test]
fn an_index_of_two_platforms_resolves_to_the_index_digest() {
    let Some(bench) = Bench::new("index") else { return };
    let platforms = [("amd64", format!("amd64 {}", bench.name)), ("arm64", format!("arm64 {}", bench.name))];
    let platforms: Vec<(&str, &str)> = platforms.iter().map(|(arch, content)| (*arch, content.as_str())).collect();
    let layout = layout::index(&bench.folder.path().join("index"), &platforms);
    assert_eq!(layout.children.len(), 2);

    // The registry refuses an index whose manifests it does not have: success means the children went first.
    let pushed = bench.push(&layout).unwrap();
    assert_eq!(pushed, layout.digest);
    assert_eq!(resolve(&bench.tag()), layout.digest);
    let (reported, bytes) = bench.registry.manifest(&bench.path(), &bench.ctx.revision().unwrap().tag).unwrap();
    assert_eq!(reported, layout.digest);
    assert!(bytes == layout.bytes, "the registry serves other bytes than the layout's index");
    for (digest, child) in &layout.children {
        let (reported, bytes) = bench.registry.manifest(&bench.path(), digest).unwrap();
        assert_eq!(&reported, digest);
        assert!(bytes == *child, "child manifest {digest} is stored with other bytes");
    }
    // Pushing it again is as idempotent as a single image.
    assert_eq!(bench.push(&layout).unwrap(), layout.digest);
}

#[test]
fn an_incomplete_layout_is_named_before_anything_is_pushed() {
    let Some(bench) = Bench::new("incomplete") else { return };
    let layout = bench.layout("missing its layer");
    let layer = &layout.layers[0];
    std::fs::remove_file(layout.blob(layer)).unwrap();

    let error = format!("{:#}", bench.push(&layout).unwrap_err());
    assert!(error.contains("is incomplete") && error.contains(layer) && error.contains("layer 1"), "{error}");
    assert_eq!(error.lines().count(), 1, "{error}");
    assert!(bench.registry.stored_files().is_empty(), "something was pushed: {:#?}", bench.registry.stored_files());

    std::fs::remove_file(layout.dir.join("index.json")).unwrap();
    let error = format!("{:#}", bench.push(&layout).unwrap_err());
    assert!(error.contains("is incomplete: it has no index.json"), "{error}");
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
    let args = ReleaseArgs {
        registry: "127.0.0.1:1/team".into(),
        signing: SigningArgs::default(),
        images: Vec::new(),
        platforms: Vec::new(),
    };
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
    bench.push(&bench.layout("never signed")).unwrap();
    let error = format!("{:#}", bench.verify(&bench.tag(), &bench.keys.public).unwrap_err());
    assert!(error.contains("has no signature that verifies"), "{error}");
}

#[test]
fn verify_refuses_another_public_key() {
    let Some(bench) = Bench::new("otherkey") else { return };
    bench.publish(&bench.layout("signed with the first key"), &bench.key_signing()).unwrap();
    let other = generate_key_pair(&bench.cosign, &bench.folder.path().join("other"), "other password");
    let error = format!("{:#}", bench.verify(&bench.tag(), &other.public).unwrap_err());
    assert!(error.contains(&format!("public key {}", other.public.display())), "{error}");
}

#[test]
fn verify_refuses_other_content_pushed_under_the_signed_tag() {
    let Some(bench) = Bench::new("retagged") else { return };
    let published = bench.publish(&bench.layout("the released content"), &bench.key_signing()).unwrap();
    let impostor = bench.layout("someone else's content");
    let moved_to = bench.push(&impostor).unwrap();
    assert_eq!(moved_to, impostor.digest);
    assert_ne!(moved_to, published.digest);
    assert_eq!(resolve(&bench.tag()), moved_to);

    let error = format!("{:#}", bench.verify(&bench.tag(), &bench.keys.public).unwrap_err());
    assert!(error.contains(&moved_to) && error.contains("has no signature that verifies"), "{error}");
    // The released digest itself still verifies: deploy by digest and a moved tag cannot touch you.
    bench.verify(&published.pinned, &bench.keys.public).unwrap();
}

#[test]
fn a_wrong_key_password_is_named() {
    let Some(bench) = Bench::new("password") else { return };
    let signer = bench.signer("not the password");
    let pushed = bench.push(&bench.layout("content")).unwrap();
    let pinned = format!("{}@{pushed}", bench.repository());
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
    let layout = bench.layout("content");
    let address = format!("127.0.0.1:{}", closed_port());
    let nowhere = Destination::parse(&format!("{address}/team")).unwrap();
    let error = format!(
        "{:#}",
        publish(
            &bench.ctx,
            &bench.name,
            &[bench.platform_image(&layout, Platform::Amd64)],
            &nowhere,
            &bench.key_signing()
        )
        .unwrap_err()
    );
    assert!(
        error.contains(&format!("registry {address} is unreachable")) && error.contains("check that it is running"),
        "{error}"
    );
    assert_eq!(error.lines().count(), 1, "{error}");

    let error = format!("{:#}", bench.verify(&format!("{address}/team/app:1"), &bench.keys.public).unwrap_err());
    assert!(error.contains(&format!("registry {address} is unreachable")), "{error}");
}

/// Run by `a_registry_that_wants_a_login_is_logged_into_from_the_docker_config` as a child process, with the
/// DOCKER_CONFIG (and PATH, for a credential helper) of one case: pushes and prints the outcome.
#[test]
#[ignore = "a child process of a_registry_that_wants_a_login_is_logged_into_from_the_docker_config"]
fn login_probe() {
    let setting = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by the parent test"));
    match push_layout(Path::new(&setting("PROBE_LAYOUT")), &setting("PROBE_REPOSITORY"), &["login".to_owned()]) {
        Ok(digest) => println!("PROBE-PUSHED {digest}"),
        Err(error) => println!("PROBE-ERROR {error:#}"),
    }
}

#[test]
fn a_registry_that_wants_a_login_is_logged_into_from_the_docker_config() {
    let Some(bench) = Bench::new("login") else { return };
    let Some(guarded) = require("a registry binary", LocalRegistry::start_with_login(&bench.workspace)) else { return };
    let layout = bench.layout("behind a login");
    let address = &guarded.address;
    let repository = format!("{address}/team/{}", bench.name);
    let auth = |password: &str| {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{LOGIN_USER}:{password}"));
        format!(r#"{{"auths":{{"{address}":{{"auth":"{encoded}"}}}}}}"#)
    };
    // A credential helper as `docker login` with credsStore leaves it: `get` reads the server, prints the secret.
    let helpers = bench.folder.path().join("helpers");
    std::fs::create_dir_all(&helpers).unwrap();
    let helper = helpers.join("docker-credential-xtasktest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nserver=$(cat)\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{LOGIN_USER}\",\"Secret\":\"{LOGIN_PASSWORD}\"}}' \"$server\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", helpers.display(), std::env::var("PATH").unwrap_or_default());

    let probe = |case: &str, config: Option<String>| {
        let folder = bench.folder.path().join("docker-config").join(case);
        std::fs::create_dir_all(&folder).unwrap();
        if let Some(config) = config {
            std::fs::write(folder.join("config.json"), config).unwrap();
        }
        let exe = std::env::current_exe().unwrap();
        let sh = &bench.ctx.sh;
        let output = cmd!(sh, "{exe} --exact login_probe --ignored --nocapture")
            .env("PROBE_LAYOUT", &layout.dir)
            .env("PROBE_REPOSITORY", &repository)
            .env("DOCKER_CONFIG", &folder)
            .env("PATH", &path)
            .quiet()
            .ignore_status()
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&output.stdout).into_owned();
        let outcome = log.lines().find_map(|line| line.strip_prefix("PROBE-")).map(str::to_owned);
        outcome.unwrap_or_else(|| {
            panic!("{case}: the probe printed no outcome:\n{log}{}", String::from_utf8_lossy(&output.stderr))
        })
    };

    for (case, config) in [("anonymous", None), ("wrong-password", Some(auth("not the password")))] {
        let outcome = probe(case, config);
        assert!(
            outcome.starts_with("ERROR")
                && outcome.contains(&format!("registry {address} refused"))
                && outcome.contains(&format!("`docker login {address}`")),
            "{case}: {outcome}"
        );
        assert!(!outcome.contains("not the password"), "{case}: the password leaked: {outcome}");
    }
    for (case, config) in [
        ("config-file", auth(LOGIN_PASSWORD)),
        ("credential-helper", r#"{"auths":{},"credsStore":"xtasktest"}"#.to_owned()),
    ] {
        assert_eq!(probe(case, Some(config)), format!("PUSHED {}", layout.digest), "{case}");
    }
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
    let image = setting("PROBE_IMAGE");
    let platform = PlatformImage {
        platform: Platform::Amd64,
        layout: PathBuf::from(setting("PROBE_LAYOUT")),
        sbom: ctx.out.sbom(&image),
        provenance: ctx.out.provenance(&image, Platform::Amd64),
    };
    let published = publish(&ctx, &image, &[platform], &destination, &signing).unwrap();
    let verified = xtask::stages::verify::image(
        &signing.cosign,
        &Reference::parse(&published.pinned).unwrap(),
        &signing.verifier,
        Tlog::Offline,
        &RequireArgs::default(),
    )
    .unwrap();
    println!("PROBE-OK {published:?} {verified:?}");
}

#[test]
fn secrets_stay_out_of_logs_files_and_images() {
    let Some(bench) = Bench::new("secrets") else { return };
    let layout = bench.layout("content");
    let private_key = std::fs::read_to_string(&bench.keys.private).unwrap();
    let probe = std::env::current_exe().unwrap();
    let sh = &bench.ctx.sh;
    let output = cmd!(sh, "{probe} --exact leak_probe --ignored --nocapture")
        .env("PROBE_ROOT", &bench.ctx.root)
        .env("PROBE_PUBLIC_KEY", &bench.keys.public)
        .env("PROBE_COSIGN", &bench.cosign)
        .env("PROBE_DESTINATION", bench.destination().registry + "/team")
        .env("PROBE_IMAGE", &bench.name)
        .env("PROBE_LAYOUT", &layout.dir)
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
    // The checkout, everything the registry stores (the image, its signature and attestation) and the layout that
    // was pushed; compressed layers are looked into as well.
    let mut files = vec![bench.ctx.root.clone(), bench.registry.storage(), layout.dir.clone()];
    let mut layers = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|entry| entry.unwrap().path()));
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        leaks(&path.display().to_string(), &bytes);
        if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut uncompressed = Vec::new();
            flate2::read::GzDecoder::new(bytes.as_slice()).read_to_end(&mut uncompressed).unwrap();
            leaks(&format!("{} (uncompressed)", path.display()), &uncompressed);
            layers += 1;
        }
    }
    // The layer in the layout and its copy in the registry.
    assert!(layers >= 2, "no compressed layer was looked into");
    assert_eq!(resolve(&bench.tag()), layout.digest);
}

#[test]
fn verify_names_every_missing_piece_of_a_signature_only_image() {
    let Some(bench) = Bench::new("signatureonly") else { return };
    let pushed = bench.push(&bench.layout("only signed")).unwrap();
    let pinned = format!("{}@{pushed}", bench.repository());
    bench.signer(&bench.keys.password).sign(&bench.cosign, &pinned, Tlog::Offline).unwrap();
    let error = format!("{:#}", bench.verify(&bench.tag(), &bench.keys.public).unwrap_err());
    assert!(error.contains("no SBOM attestation") && error.contains("no provenance attestation"), "{error}");
    // Leaving the pieces out takes saying so.
    let lenient = RequireArgs { without_sbom: true, without_provenance: true, ..RequireArgs::default() };
    let verifier = Verifier::Key(bench.keys.public.clone());
    xtask::stages::verify::image(
        &bench.cosign,
        &Reference::parse(&pinned).unwrap(),
        &verifier,
        Tlog::Offline,
        &lenient,
    )
    .unwrap();
}

#[test]
fn verify_refuses_a_provenance_that_names_another_commit() {
    let Some(bench) = Bench::new("othercommit") else { return };
    let elsewhere = bench.folder.path().join("other-provenance.json");
    bench.write_provenance(&elsewhere, &"0".repeat(40));
    std::fs::copy(&elsewhere, bench.ctx.out.provenance(&bench.name, Platform::Amd64)).unwrap();
    let error = format!("{:#}", bench.publish(&bench.layout("mislabelled"), &bench.key_signing()).unwrap_err());
    assert!(error.contains(&format!("names commit {}", "0".repeat(40))), "{error}");
    assert!(error.contains(&format!("built from {}", bench.commit_id())), "{error}");
    let error = format!("{:#}", bench.verify(&bench.tag(), &bench.keys.public).unwrap_err());
    assert!(error.contains("names commit"), "{error}");
}

#[test]
fn verify_refuses_a_provenance_signed_with_another_key_and_a_vex_for_another_image() {
    let Some(bench) = Bench::new("tampered") else { return };
    // Signed and with its SBOM by the release key, but the provenance signed by someone else.
    let pinned = format!("{}@{}", bench.repository(), bench.push(&bench.layout("released")).unwrap());
    let signer = bench.signer(&bench.keys.password);
    signer.sign(&bench.cosign, &pinned, Tlog::Offline).unwrap();
    signer.attest(&bench.cosign, &pinned, "cyclonedx", &bench.ctx.out.sbom(&bench.name), Tlog::Offline).unwrap();
    let other = generate_key_pair(&bench.cosign, &bench.folder.path().join("other"), "other password");
    let intruder = Signer::Key { key: KeySource::File(other.private.clone()), password: Secret::new(&other.password) };
    let provenance = bench.ctx.out.provenance(&bench.name, Platform::Amd64);
    intruder.attest(&bench.cosign, &pinned, "slsaprovenance1", &provenance, Tlog::Offline).unwrap();
    let error = format!("{:#}", bench.verify(&pinned, &bench.keys.public).unwrap_err());
    assert!(error.contains("provenance attestation does not verify"), "{error}");

    let Some(fresh) = Bench::new("vexforother") else { return };
    let published = fresh.publish(&fresh.layout("released"), &fresh.key_signing()).unwrap();
    let vex = fresh.folder.path().join("vex.json");
    let product = xtask::vex::product("127.0.0.1:1/team/another-image", &published.digest);
    std::fs::write(
        &vex,
        serde_json::json!({
            "@context": "https://openvex.dev/ns/v0.2.0", "@id": "urn:test", "author": "test", "version": 1,
            "timestamp": "2026-01-01T00:00:00Z",
            "statements": [{"vulnerability": {"name": "CVE-1"}, "products": [{"@id": product}], "status": "not_affected",
                            "impact_statement": "test"}],
        })
        .to_string(),
    )
    .unwrap();
    fresh
        .signer(&fresh.keys.password)
        .attest(&fresh.cosign, &published.pinned, "openvex", &vex, Tlog::Offline)
        .unwrap();
    let error = format!("{:#}", fresh.verify(&published.pinned, &fresh.keys.public).unwrap_err());
    assert!(error.contains("VEX") && error.contains("not for this image"), "{error}");
}

#[test]
fn two_platforms_are_released_as_a_signed_index_and_verify_checks_the_platform_it_resolves() {
    let Some(bench) = Bench::new("twoplatforms") else { return };
    let commit = bench.commit_id();
    bench.write_provenance(&bench.ctx.out.provenance(&bench.name, Platform::Arm64), &commit);
    let dir = |arch: &str| bench.folder.path().join(unique(arch));
    let amd64 = layout::built_for(&dir("amd64"), &format!("amd64 {}", bench.name), Some(&commit), "amd64");
    let arm64 = layout::built_for(&dir("arm64"), &format!("arm64 {}", bench.name), Some(&commit), "arm64");
    let platforms = [bench.platform_image(&amd64, Platform::Amd64), bench.platform_image(&arm64, Platform::Arm64)];
    let published = publish(&bench.ctx, &bench.name, &platforms, &bench.destination(), &bench.key_signing()).unwrap();

    // The tag names the index; each platform is the very manifest written here, signed and attested on its own.
    assert_eq!(resolve(&bench.tag()), published.digest);
    assert_eq!(published.platforms, [(Platform::Amd64, amd64.digest.clone()), (Platform::Arm64, arm64.digest.clone())]);
    let verifier = Verifier::Key(bench.keys.public.clone());
    let check = |require: &RequireArgs| {
        xtask::stages::verify::image(
            &bench.cosign,
            &Reference::parse(&bench.tag()).unwrap(),
            &verifier,
            Tlog::Offline,
            require,
        )
    };
    let default = check(&RequireArgs::default()).unwrap();
    assert_eq!(default.digest, published.digest);
    assert_eq!(default.provenance.as_ref().unwrap().platform_manifests.len(), 2);
    let checked: Vec<&str> = default.platforms.iter().map(|(platform, _)| platform.as_str()).collect();
    assert_eq!(checked, ["linux/amd64"]);
    let arm = check(&RequireArgs { platform: Some(Platform::Arm64), ..RequireArgs::default() }).unwrap();
    assert_eq!(arm.platforms[0].1.digest, arm64.digest);
    assert!(arm.platforms[0].1.sbom && arm.platforms[0].1.provenance.is_some());
    let all = check(&RequireArgs { all_platforms: true, ..RequireArgs::default() }).unwrap();
    assert_eq!(all.platforms.len(), 2);
    // cosign itself, on each platform's digest.
    for (_, digest) in &published.platforms {
        let pinned = format!("{}@{digest}", bench.repository());
        assert_eq!(&verifier.verify_signature(&bench.cosign, &pinned, Tlog::Offline).unwrap(), digest);
    }

    // An index, signed with its provenance, whose arm64 image was never signed: the default platform passes,
    // the arm64 one and --all-platforms do not.
    let unsigned = layout::built_for(&dir("unsigned"), &format!("unsigned {}", bench.name), Some(&commit), "arm64");
    let repository = bench.repository();
    push_layout(&unsigned.dir, &repository, &[]).unwrap();
    let index_dir = dir("index");
    let parts = [(Platform::Amd64, amd64.dir.as_path()), (Platform::Arm64, unsigned.dir.as_path())];
    xtask::assemble::write_index(&bench.ctx, &index_dir, &parts).unwrap();
    let index = push_layout(&index_dir, &repository, &["unsigned".to_owned()]).unwrap();
    let pinned = format!("{repository}@{index}");
    let unsigned_platforms = [(Platform::Amd64, amd64.digest.clone()), (Platform::Arm64, unsigned.digest.clone())];
    let provenance = xtask::provenance::write_index(&bench.ctx, &bench.name, &unsigned_platforms).unwrap();
    let signer = bench.signer(&bench.keys.password);
    signer.sign(&bench.cosign, &pinned, Tlog::Offline).unwrap();
    signer.attest(&bench.cosign, &pinned, "slsaprovenance1", &provenance, Tlog::Offline).unwrap();
    let check_unsigned = |require: RequireArgs| {
        let reference = Reference::parse(&format!("{repository}:unsigned")).unwrap();
        xtask::stages::verify::image(&bench.cosign, &reference, &verifier, Tlog::Offline, &require)
    };
    // The index needs its own SBOM (an admission controller looks at no other digest), naming its platform images.
    let error = format!("{:#}", check_unsigned(RequireArgs::default()).unwrap_err());
    assert!(error.contains("the image index") && error.contains("no SBOM attestation"), "{error}");
    let sbom = xtask::index_sbom::write(&bench.ctx, &bench.name, &repository, &unsigned_platforms).unwrap();
    signer.attest(&bench.cosign, &pinned, "cyclonedx", &sbom, Tlog::Offline).unwrap();
    check_unsigned(RequireArgs::default()).unwrap();
    for require in [
        RequireArgs { platform: Some(Platform::Arm64), ..RequireArgs::default() },
        RequireArgs { all_platforms: true, ..RequireArgs::default() },
    ] {
        let error = format!("{:#}", check_unsigned(require).unwrap_err());
        assert!(error.contains("the linux/arm64 image of") && error.contains(&unsigned.digest), "{error}");
    }
}
