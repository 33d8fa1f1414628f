//! `cargo xtask release`: from a clean, tested checkout to signed images with signed SBOMs in a registry.

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};

use crate::context::Context;
use crate::registry::{self, Reference};
use crate::sign::{self, Signer, SigningArgs, Tlog, Verifier};

#[derive(clap::Args, Debug)]
pub struct ReleaseArgs {
    /// Where to push: HOST[:PORT]/NAMESPACE, e.g. ghcr.io/OWNER or 127.0.0.1:5000/team.
    #[arg(long, value_name = "HOST[:PORT]/NAMESPACE")]
    registry: String,
    #[command(flatten)]
    signing: SigningArgs,
    /// Images to release (default: every deliverable image under images/).
    images: Vec<String>,
}

/// A registry and the namespace the images go under.
#[derive(Debug, Clone)]
pub struct Destination {
    pub registry: String,
    pub namespace: String,
}

impl Destination {
    pub fn parse(text: &str) -> Result<Self> {
        let (registry, namespace) = text.trim_end_matches('/').split_once('/').with_context(|| {
            format!("--registry {text}: write HOST[:PORT]/NAMESPACE (e.g. ghcr.io/OWNER or 127.0.0.1:5000/team)")
        })?;
        // Parsing a sample reference applies the same rules to host and namespace as to any image.
        Reference::parse(&format!("{registry}/{namespace}/image:tag")).with_context(|| format!("--registry {text}"))?;
        Ok(Self { registry: registry.to_owned(), namespace: namespace.to_owned() })
    }

    /// `HOST[:PORT]/NAMESPACE/<image>`, without tag or digest.
    pub fn repository(&self, image: &str) -> String {
        format!("{}/{}/{image}", self.registry, self.namespace)
    }
}

/// What a release put into the registry for one image.
#[derive(Debug)]
pub struct Published {
    pub image: String,
    /// `HOST[:PORT]/NAMESPACE/<image>@sha256:...`
    pub pinned: String,
    pub digest: String,
    pub tags: Vec<String>,
    /// The newest cosign signature referring to the digest, `HOST[:PORT]/NAMESPACE/<image>@sha256:...`.
    pub signature: String,
}

/// How an image is signed, and how its signatures are then checked.
pub struct Signing {
    pub signer: Signer,
    pub verifier: Verifier,
    pub tlog: Tlog,
    pub cosign: PathBuf,
}

pub fn run(ctx: &Context, args: &ReleaseArgs) -> Result<()> {
    // Preconditions first: nothing is built or pushed for a release that cannot finish.
    let revision = crate::images::revision_tag(ctx)?;
    if revision.ends_with("-dirty") {
        bail!(
            "the working tree has uncommitted changes (revision {revision}): a release must be exactly a commit; \
             commit or stash them first (`git status` lists them)"
        );
    }
    let destination = Destination::parse(&args.registry)?;
    let images = crate::images::select(ctx, &args.images)?;
    let (signer, tlog) = Signer::from_args(&args.signing)?;
    let cosign = sign::cosign(ctx)?;
    let verifier =
        signer.verifier(&cosign, args.signing.public_key.as_deref(), &ctx.root.join("out/release/cosign.pub"))?;
    let signing = Signing { signer, verifier, tlog, cosign };

    // The whole ci, as CI runs it (every deliverable, whichever images are released): build, scan gate, SBOMs, tests.
    crate::ci::main(ctx, &crate::ci::CiArgs::default()).context("ci failed: nothing was released")?;

    eprintln!("xtask: {}", tlog.describe());
    let mut published = Vec::new();
    for image in &images {
        let local = crate::images::reference(&image.name, &revision);
        published.push(
            publish(ctx, &image.name, &local, &destination, &signing)
                .with_context(|| format!("releasing image {}", image.name))?,
        );
    }
    for release in &published {
        println!("released {}", release.image);
        println!("  digest     {}", release.digest);
        println!("  image      {}", release.pinned);
        println!("  tags       {}", release.tags.join(", "));
        println!("  signature  {}", release.signature);
    }
    Ok(())
}

/// Pushes one built image, tags it, signs its digest, attaches its SBOM as a signed attestation, and verifies both
/// before it reports success.
pub fn publish(
    ctx: &Context,
    image: &str,
    local_reference: &str,
    destination: &Destination,
    signing: &Signing,
) -> Result<Published> {
    let sbom = sbom_path(ctx, image);
    if !sbom.is_file() {
        bail!("image {image}: no SBOM at {}; `cargo xtask ci` writes it (its sbom step)", sbom.display());
    }
    let repository = destination.repository(image);
    let mut tags = vec![crate::images::revision_tag(ctx)?];
    tags.extend(version_tags(ctx)?);
    let mut digest: Option<String> = None;
    for tag in &tags {
        let pushed = push(ctx, local_reference, &format!("{repository}:{tag}"), &destination.registry)?;
        match &digest {
            Some(first) if *first != pushed => {
                bail!("{repository}:{tag} got digest {pushed} but the same image pushed as {first} before: something else pushed meanwhile")
            }
            _ => digest = Some(pushed),
        }
    }
    let digest = digest.expect("there is always the revision tag");
    let pinned = format!("{repository}@{digest}");

    signing.signer.sign(&signing.cosign, &pinned, signing.tlog)?;
    signing.signer.attest(&signing.cosign, &pinned, sign::SBOM_PREDICATE, &sbom, signing.tlog)?;

    let verified = signing.verifier.verify_signature(&signing.cosign, &pinned, signing.tlog)?;
    if verified != digest {
        bail!("cosign verified a signature for {verified}, not for the pushed digest {digest}");
    }
    signing.verifier.verify_attestation(&signing.cosign, &pinned, sign::SBOM_PREDICATE, signing.tlog)?;
    eprintln!("xtask: {pinned}: signature and SBOM attestation verified with {}", signing.verifier.describe());
    let signature = signature_reference(&repository, &digest);
    Ok(Published { image: image.to_owned(), signature, pinned, digest, tags })
}

/// The CycloneDX SBOM the sbom step writes for an image.
pub fn sbom_path(ctx: &Context, image: &str) -> PathBuf {
    ctx.root.join("out").join("scan").join(image).join(crate::sbom::SBOM_FILE)
}

/// `vX.Y.Z` tags on HEAD: a commit tagged so is a versioned release.
fn version_tags(ctx: &Context) -> Result<Vec<String>> {
    let tags = ctx.read("git", &["tag", "--points-at", "HEAD"])?;
    Ok(tags.lines().map(str::trim).filter(|tag| is_version(tag)).map(str::to_owned).collect())
}

fn is_version(tag: &str) -> bool {
    let Some(numbers) = tag.strip_prefix('v') else { return false };
    let parts: Vec<&str> = numbers.split('.').collect();
    parts.len() == 3 && parts.iter().all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()))
}

/// Tags the local image as `remote` and pushes it, returning the digest the registry stored it under.
fn push(ctx: &Context, local: &str, remote: &str, registry: &str) -> Result<String> {
    ctx.read("docker", &["tag", local, remote])
        .with_context(|| format!("tagging {local} as {remote}: was it built?"))?;
    eprintln!("xtask: docker push {remote}");
    let output = duct::cmd!("docker", "push", remote)
        .dir(&ctx.root)
        .stdin_null()
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .run()
        .context("running docker push: is the docker CLI installed?")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(push_failure(registry, remote, &text));
    }
    digest_from_push_output(&text).with_context(|| format!("docker push {remote} printed no digest:\n{text}"))
}

fn push_failure(registry: &str, remote: &str, output: &str) -> anyhow::Error {
    let last = output.lines().rev().find(|line| !line.trim().is_empty()).unwrap_or_default().trim();
    let unreachable = [
        "connection refused",
        "no such host",
        "i/o timeout",
        "network is unreachable",
        "server gave HTTP response to HTTPS client",
    ];
    if unreachable.iter().any(|needle| output.contains(needle)) {
        return registry::unreachable(registry, last);
    }
    if ["denied", "unauthorized", "authentication required"].iter().any(|needle| output.contains(needle)) {
        return anyhow::anyhow!(
            "registry {registry} refused the push of {remote} ({last}): log in with `docker login {registry}`"
        );
    }
    anyhow::anyhow!("docker push {remote} failed: {last}")
}

/// `<tag>: digest: sha256:<hex> size: <n>`, the last line docker push prints.
fn digest_from_push_output(output: &str) -> Option<String> {
    output.lines().find_map(|line| {
        let digest = line.split("digest: ").nth(1)?.split_whitespace().next()?;
        digest.starts_with("sha256:").then(|| digest.to_owned())
    })
}

/// The newest cosign signature referring to the digest, as `repository@sha256:...`; a description of where cosign
/// keeps it when the registry does not show it.
fn signature_reference(repository: &str, digest: &str) -> String {
    let subject = format!("{repository}@{digest}");
    let newest =
        Reference::parse(&subject).and_then(|reference| registry::referrers(&reference, digest)).map(|referrers| {
            referrers
                .into_iter()
                .filter(|referrer| referrer.predicate_type.as_deref() == Some(sign::SIGNATURE_PREDICATE))
                .max_by(|a, b| a.created.cmp(&b.created))
        });
    match newest {
        Ok(Some(signature)) => format!("{repository}@{}", signature.digest),
        Ok(None) => format!("a referrer of {subject} (not listed by the registry)"),
        Err(error) => format!("a referrer of {subject} (listing referrers failed: {error:#})"),
    }
}

#[cfg(test)]
mod tests {
    //! Against a real registry on 127.0.0.1, the real cosign and the real Docker engine, with a tiny image built
    //! `FROM scratch` and a throwaway key pair.

    use std::path::Path;
    use std::time::Instant;

    use super::*;
    use crate::registry::LocalRegistry;
    use crate::sign::{KeySource, Secret};

    /// A unique, unguessable-enough string: secrets the tests later look for must not occur anywhere by chance.
    fn unique(prefix: &str) -> String {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        format!("{prefix}-{}-{nanos:x}", std::process::id())
    }

    /// The tests need docker, cosign and a registry binary; outside CI their absence skips a test with the reason.
    fn require<T>(what: &str, result: Result<T>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) if Context::in_ci() => panic!("{what} is required under CI=true: {error:#}"),
            Err(error) => {
                eprintln!("skipping: {what} is unavailable: {error:#}");
                None
            }
        }
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
            require("the Docker engine", workspace.read("docker", &["version", "--format", "{{.Server.Version}}"]))?;
            let cosign = require("cosign", sign::cosign(&workspace))?;
            let registry = require("a registry binary", LocalRegistry::start(&workspace))?;
            let folder = tempfile::Builder::new().prefix("xtask-release-").tempdir().unwrap();
            let root = folder.path().join("checkout");
            std::fs::create_dir_all(&root).unwrap();
            let sh = xshell::Shell::new().unwrap();
            sh.change_dir(&root);
            let ctx = Context { root, sh };
            let keys = generate_key_pair(&cosign, &folder.path().join("keys"), &unique("password"));
            let bench = Self { ctx, registry, cosign, keys, name: unique(name), folder };
            bench.commit();
            let sbom = sbom_path(&bench.ctx, &bench.name);
            std::fs::create_dir_all(sbom.parent().unwrap()).unwrap();
            std::fs::write(&sbom, r#"{"bomFormat":"CycloneDX","specVersion":"1.5","version":1,"components":[]}"#)
                .unwrap();
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
            duct::cmd!("docker", "build", "--quiet", "--tag", &reference, &context)
                .env("DOCKER_BUILDKIT", "0")
                .stdout_null()
                .stderr_capture()
                .run()
                .expect("building the test image");
            reference
        }

        fn publish(&self, local: &str, signing: &Signing) -> Result<Published> {
            publish(&self.ctx, &self.name, local, &self.destination(), signing)
        }

        fn verify(&self, reference: &str, public_key: &Path) -> Result<crate::verify::Verified> {
            crate::verify::image(
                &self.cosign,
                &Reference::parse(reference)?,
                &Verifier::Key(public_key.to_owned()),
                Tlog::Offline,
            )
        }

        fn tag(&self) -> String {
            format!("{}:{}", self.destination().repository(&self.name), crate::images::revision_tag(&self.ctx).unwrap())
        }
    }

    impl Drop for Bench {
        /// Removes this test's images (built, pushed, and those whose tag a later push took) from the engine.
        fn drop(&mut self) {
            let listing =
                self.ctx.read("docker", &["images", "--format", "{{.Repository}} {{.ID}}"]).unwrap_or_default();
            let mut ours: Vec<&str> = listing
                .lines()
                .filter_map(|line| line.split_once(' '))
                .filter(|(repository, _)| repository.contains(&self.name))
                .map(|(_, id)| id)
                .collect();
            ours.sort_unstable();
            ours.dedup();
            if !ours.is_empty() {
                let _ = duct::cmd("docker", ["rmi", "--force"].iter().copied().chain(ours))
                    .stdout_null()
                    .stderr_null()
                    .run();
            }
        }
    }

    fn generate_key_pair(cosign: &Path, folder: &Path, password: &str) -> KeyPair {
        std::fs::create_dir_all(folder).unwrap();
        duct::cmd!(cosign, "generate-key-pair", "--output-key-prefix", folder.join("cosign"))
            .env("COSIGN_PASSWORD", password)
            .stdin_null()
            .stdout_null()
            .stderr_capture()
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

        let revision = crate::images::revision_tag(&bench.ctx).unwrap();
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
        let sh = xshell::Shell::new().unwrap();
        sh.change_dir(folder.path());
        let ctx = Context { root: folder.path().to_owned(), sh };
        for args in [
            &["init", "--quiet"][..],
            &["-c", "user.name=x", "-c", "user.email=x@localhost", "commit", "--quiet", "--allow-empty", "-m", "x"],
        ] {
            ctx.read("git", args).unwrap();
        }
        std::fs::write(folder.path().join("uncommitted.txt"), "work in progress").unwrap();
        let args =
            ReleaseArgs { registry: "127.0.0.1:1/team".into(), signing: SigningArgs::default(), images: Vec::new() };
        let error = run(&ctx, &args).unwrap_err().to_string();
        assert!(error.contains("uncommitted changes") && error.contains("-dirty"), "{error}");
    }

    #[test]
    fn version_tags_are_exactly_vx_y_z() {
        assert!(is_version("v1.2.3") && is_version("v10.0.12"));
        for tag in ["1.2.3", "v1.2", "v1.2.3-rc1", "v1..3", "vx.y.z"] {
            assert!(!is_version(tag), "{tag}");
        }
    }

    #[test]
    fn reads_the_digest_docker_push_prints() {
        let output = "The push refers to repository [127.0.0.1:5000/team/app]\n4823cc387811: Pushed\n\
                      0123456789ab: digest: sha256:3d42aeb8dfb70254c585fbdaf5bc9ba3f3020e3e36788f57cb9677d9ec10ff3e size: 524\n";
        assert_eq!(
            digest_from_push_output(output).as_deref(),
            Some("sha256:3d42aeb8dfb70254c585fbdaf5bc9ba3f3020e3e36788f57cb9677d9ec10ff3e")
        );
        assert_eq!(digest_from_push_output("denied: requested access to the resource is denied"), None);
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
        let error =
            format!("{:#}", publish(&bench.ctx, &bench.name, &local, &nowhere, &bench.key_signing()).unwrap_err());
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
        let sh = xshell::Shell::new().unwrap();
        sh.change_dir(&root);
        let ctx = Context { root, sh };
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
        let published =
            publish(&ctx, &setting("PROBE_IMAGE"), &setting("PROBE_LOCAL"), &destination, &signing).unwrap();
        let verified = crate::verify::image(
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
        let output = duct::cmd!(
            std::env::current_exe().unwrap(),
            "--exact",
            "release::tests::leak_probe",
            "--ignored",
            "--nocapture"
        )
        .env("PROBE_ROOT", &bench.ctx.root)
        .env("PROBE_PUBLIC_KEY", &bench.keys.public)
        .env("PROBE_COSIGN", &bench.cosign)
        .env("PROBE_DESTINATION", bench.destination().registry + "/team")
        .env("PROBE_IMAGE", &bench.name)
        .env("PROBE_LOCAL", &local)
        .env("COSIGN_PRIVATE_KEY", &private_key)
        .env("COSIGN_PASSWORD", &bench.keys.password)
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .run()
        .unwrap();
        let log = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success() && log.contains("PROBE-OK"), "the probe failed:\n{log}");

        // The password, and every line of the encrypted key's body (long enough not to occur by chance).
        let mut secrets = vec![bench.keys.password.clone()];
        secrets.extend(
            private_key.lines().filter(|line| line.len() >= 16 && !line.starts_with("-----")).map(str::to_owned),
        );
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
        let image = duct::cmd!("docker", "save", bench.tag()).stdout_capture().run().unwrap().stdout;
        leaks("the pushed image", &image);
    }
}
