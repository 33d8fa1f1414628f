//! The released images on a real Kubernetes cluster (`common::kube`), deployed the way a user deploys them: pushed,
//! signed and attested as `release` does it, then `cargo xtask deploy --kubernetes` with the project's manifests
//! (`deploy/kubernetes/base`) and admission policy (`deploy/kubernetes/admission`), enforced by sigstore
//! policy-controller. The whole base passes a server-side dry run under Pod Security `restricted`; both apps are
//! admitted, Ready and answer real requests (a password generated, an order placed on PostgreSQL running as a pod).
//! An unsigned image, one signed with another key and one without provenance are denied, each with the policy's
//! reason; a pod breaking `restricted` is rejected. Then the cluster stops and nothing of it is left on the machine.
//!
//! Needs the built images, the cluster's programs and root: not root, the test runs itself again through `sudo -n`
//! (GitHub's runners, a machine with passwordless sudo). Under `CI=true` a missing one fails the test, elsewhere
//! the test is skipped with the reason.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use xshell::cmd;
use xtask::built::Built;
use xtask::context::Context;
use xtask::cosign::{self, Secret, Tlog};
use xtask::registry::push_layout;
use xtask::signing::{KeySource, Signer};
use xtask::stages::deploy_kubernetes::{self, KubernetesArgs};
use xtask::stages::release::{publish, Destination, PlatformImage, Signing};
use xtask::stages::scan::ImageSource;
use xtask::stages::verify::{RequireArgs, TrustArgs};

use common::keys::{self, KeyPair};
use common::kube::{self, Programs, TestCluster};
use common::layout;
use common::require;
use common::shop;

/// The registry namespace the images are released under; the manifests run them in the Kubernetes namespace of the
/// same name.
const NAMESPACE: &str = "distroless-python";
/// The ClusterImagePolicies of deploy/kubernetes/admission: a signature on every image; an SBOM and a provenance on
/// a released one.
const SIGNED_POLICY: &str = "distroless-python-signed";
const RELEASED_POLICY: &str = "distroless-python-released";

const TEST: &str = "released_images_run_on_a_real_cluster_and_the_admission_policy_turns_the_rest_away";

#[test]
fn released_images_run_on_a_real_cluster_and_the_admission_policy_turns_the_rest_away() {
    let started = Instant::now();
    let ctx = Context::discover().expect("the xtask workspace");
    let Some(builds) = require(
        "the built images",
        ["giropops-senhas", "fake-shop", "postgres"]
            .map(|image| Built::current(&ctx, image))
            .into_iter()
            .collect::<Result<Vec<_>>>(),
    ) else {
        return;
    };
    let Some(cosign) = require("cosign", cosign::cosign(&ctx)) else { return };
    let Some(_) = require("kubectl", xtask::kubernetes::kubectl()) else { return };
    let Some(programs) = require("the test cluster's programs", Programs::find(&ctx)) else { return };
    if !kube::is_root() {
        // The tools were built above as this user: the run as root only uses them.
        if require("root, or sudo without a password", passwordless_sudo()).is_some() {
            run_as_root();
        }
        return;
    }
    let [giropops, fake_shop, postgres] = <[Built; 3]>::try_from(builds).unwrap();

    let folder = tempfile::Builder::new().prefix("xtask-kubernetes-").tempdir().unwrap();
    let release_key = keys::generate_key_pair(&cosign, &folder.path().join("release"), &random("release"));
    let other_key = keys::generate_key_pair(&cosign, &folder.path().join("other"), &random("other"));
    let cluster = TestCluster::start(&ctx, programs).expect("starting the test cluster");
    let registry = format!("{}/{NAMESPACE}", cluster.registry());
    // `deploy --kubernetes` talks to the cluster through kubectl's current context: this cluster's, for this process
    // (the only test in it).
    std::env::set_var("KUBECONFIG", cluster.kubeconfig());

    // The two deliverables exactly as `release` publishes them: pushed by digest and tagged, signed, their SBOM,
    // provenance (and VEX) attested, all of it verified. PostgreSQL, a companion never released, signed only.
    let destination = Destination::parse(&registry).unwrap();
    let release = key_signing(&cosign, &release_key, &folder.path().join("release-derived.pub"));
    let tag = ctx.revision().unwrap().tag.clone();
    let mut released = std::collections::BTreeMap::new();
    for built in [&giropops, &fake_shop] {
        let image = PlatformImage {
            platform: built.platform,
            layout: built.layout.dir.clone(),
            sbom: sbom(&ctx, built),
            provenance: ctx.out.provenance(&built.image, built.platform),
        };
        let published = publish(&ctx, &built.image, &[image], &destination, &release)
            .unwrap_or_else(|error| panic!("releasing {} to the cluster's registry: {error:#}", built.image));
        released.insert(built.image.clone(), published.pinned);
    }
    let postgres_repository = destination.repository("postgres");
    let digest = push_layout(&postgres.layout.dir, &postgres_repository, std::slice::from_ref(&tag)).unwrap();
    release.signer.sign(&cosign, &format!("{postgres_repository}@{digest}"), Tlog::Offline).unwrap();

    // Three more images in giropops-senhas' repository, which the policies cover, each lacking one thing they want.
    let giropops_repository = destination.repository("giropops-senhas");
    let variant = |name: &str| {
        let layout = layout::built_from(&folder.path().join(name), name, None);
        let digest = push_layout(&layout.dir, &giropops_repository, &[name.to_owned()]).unwrap();
        (format!("{giropops_repository}:{name}"), format!("{giropops_repository}@{digest}"))
    };
    let provenance = ctx.out.provenance(&giropops.image, giropops.platform);
    let (unsigned, _) = variant("unsigned");
    let (foreign, foreign_pinned) = variant("signed-with-another-key");
    let other = key_signing(&cosign, &other_key, &folder.path().join("other-derived.pub")).signer;
    other.sign(&cosign, &foreign_pinned, Tlog::Offline).unwrap();
    other.attest(&cosign, &foreign_pinned, cosign::SBOM_PREDICATE, &sbom(&ctx, &giropops), Tlog::Offline).unwrap();
    other.attest(&cosign, &foreign_pinned, xtask::provenance::COSIGN_TYPE, &provenance, Tlog::Offline).unwrap();
    let (unproven, unproven_pinned) = variant("without-provenance");
    release.signer.sign(&cosign, &unproven_pinned, Tlog::Offline).unwrap();
    release
        .signer
        .attest(&cosign, &unproven_pinned, cosign::SBOM_PREDICATE, &sbom(&ctx, &giropops), Tlog::Offline)
        .unwrap();

    let trust = TrustArgs { key: Some(release_key.public.clone()), ..TrustArgs::default() };
    let deploy = |manifests: Option<PathBuf>, dry_run: bool| {
        let args = KubernetesArgs {
            kubernetes: true,
            registry: Some(registry.clone()),
            tag: Some(tag.clone()),
            dry_run,
            manifests,
            timeout: "180s".to_owned(),
            ..KubernetesArgs::default()
        };
        deploy_kubernetes::run(&ctx, &trust, &RequireArgs::default(), &args)
    };
    let overlays = Overlays::new(&ctx);

    let mut cases = Cases::new(&cluster);
    cases.run(
        "deploy --kubernetes: the namespace, the admission policy, the secret, PostgreSQL, giropops-senhas",
        || {
            // No fake-shop pod yet: it finds PostgreSQL by the pod's address (below), known once PostgreSQL runs.
            deploy(Some(overlays.write("no-fake-shop-pod", &[NO_FAKE_SHOP_POD.to_owned()])?), false)
        },
    );
    cases.run("deploy --kubernetes --dry-run: the whole base passes a server-side dry run under restricted", || {
        deploy(None, true)
    });
    cases.run("deploy --kubernetes: fake-shop too; both apps run exactly the digests verified", || {
        // The test cluster has no DNS and no kube-proxy: fake-shop reaches PostgreSQL by its pod's address.
        let database = cluster.pod_ip(NAMESPACE, "app.kubernetes.io/name=postgres")?;
        deploy(Some(overlays.write("database-by-address", &[database_by_address(&database)])?), false)?;
        for (app, pinned) in &released {
            ensure_runs(&cluster, app, pinned)?;
        }
        Ok(())
    });
    cases.run("giropops-senhas generates a password", || {
        let base = format!("http://{}:5000", cluster.pod_ip(NAMESPACE, "app.kubernetes.io/name=giropops-senhas")?);
        let client = client();
        let response = client
            .post(format!("{base}/api/gerar-senha"))
            .json(&serde_json::json!({"tamanho": 16, "incluir_numeros": true, "incluir_caracteres_especiais": true}))
            .send()?;
        ensure!(response.status() == 200, "POST /api/gerar-senha answered {}", response.status());
        let password = response.json::<serde_json::Value>()?["senha"].as_str().context("no senha")?.to_owned();
        ensure!(password.chars().count() == 16, "a password of 16 characters, not {password:?}");
        let listed: serde_json::Value = client.get(format!("{base}/api/senhas")).send()?.json()?;
        ensure!(listed[0]["senha"] == password.as_str(), "GET /api/senhas lists the new password first: {listed}");
        Ok(())
    });
    cases.run("fake-shop takes an order on PostgreSQL running as a pod", || {
        let base = format!("http://{}:5000", cluster.pod_ip(NAMESPACE, "app.kubernetes.io/name=fake-shop")?);
        shop::place_an_order(&client(), &base).map(drop)
    });
    cases.run("an unsigned image is denied", || {
        expect_denied(&cluster, "unsigned", &unsigned, SIGNED_POLICY, "no signatures found").map(drop)
    });
    cases.run("an image signed with another key is denied", || {
        expect_denied(&cluster, "signed-with-another-key", &foreign, SIGNED_POLICY, "no matching signatures").map(drop)
    });
    cases.run("an image without a provenance attestation is denied", || {
        let reason = "no matching attestations with type https://slsa.dev/provenance/v1";
        let error = expect_denied(&cluster, "without-provenance", &unproven, RELEASED_POLICY, reason)?;
        ensure!(
            !error.contains(&format!("failed policy: {SIGNED_POLICY}")),
            "its signature is the release key's: {error}"
        );
        Ok(())
    });
    cases.run("a pod that breaks Pod Security restricted is rejected", || {
        let reference = &released["giropops-senhas"];
        let pod = format!(
            "apiVersion: v1
kind: Pod
metadata: {{name: unrestricted, namespace: {NAMESPACE}}}
spec:
  containers: [{{name: app, image: \"{reference}\"}}]
"
        );
        match cluster.apply(&pod) {
            Ok(_) => bail!("the pod was admitted"),
            Err(error) => {
                let error = format!("{error:#}");
                ensure!(
                    error.contains("violates PodSecurity \"restricted:latest\""),
                    "rejected, but not by Pod Security: {error}"
                );
                eprintln!("rejected as expected: {error}");
                Ok(())
            }
        }
    });
    let failed = cases.failed;
    let stopping = Instant::now();
    cluster.stop().expect("stopping the test cluster and leaving nothing behind");
    eprintln!("figure: the test cluster stopped in {:.1?}", stopping.elapsed());
    eprintln!("figure: the Kubernetes test took {:.1?}", started.elapsed());
    assert!(failed.is_empty(), "failed cases:\n  - {}", failed.join("\n  - "));
}

/// A strategic-merge patch scaling fake-shop to no pod (its Secret is made all the same).
const NO_FAKE_SHOP_POD: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: fake-shop, namespace: distroless-python}
spec: {replicas: 0}
";

/// A strategic-merge patch giving fake-shop's pods the name `postgres` for the address `database`.
fn database_by_address(database: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: fake-shop, namespace: distroless-python}}
spec:
  template:
    spec:
      hostAliases: [{{ip: \"{database}\", hostnames: [postgres]}}]
"
    )
}

/// Kustomize overlays of deploy/kubernetes/base for the test cluster, under out/kubernetes-test/ (a kustomization
/// may only reach a base by a relative path).
struct Overlays {
    root: PathBuf,
    base: String,
}

impl Overlays {
    fn new(ctx: &Context) -> Self {
        Overlays { root: ctx.out.dir().join("kubernetes-test"), base: format!("../../../{}", xtask::kubernetes::BASE) }
    }

    /// The overlay `name`: the base with `patches` (strategic merge), in fields kustomize v2 knows as well.
    fn write(&self, name: &str, patches: &[String]) -> Result<PathBuf> {
        let dir = self.root.join(name);
        std::fs::create_dir_all(&dir)?;
        let mut kustomization = format!("bases:\n  - {}\npatchesStrategicMerge:\n", self.base);
        for (number, patch) in patches.iter().enumerate() {
            let file = format!("patch-{number}.yaml");
            std::fs::write(dir.join(&file), patch)?;
            kustomization.push_str(&format!("  - {file}\n"));
        }
        std::fs::write(dir.join("kustomization.yaml"), kustomization)?;
        Ok(dir)
    }
}

/// Whether sudo runs commands as root without asking for a password.
fn passwordless_sudo() -> Result<()> {
    let sh = xshell::Shell::new()?;
    cmd!(sh, "sudo -n true").quiet().ignore_stderr().run().context("sudo -n wants a password")?;
    Ok(())
}

/// This test once more, as root, its output shown line by line (marked, so that its summary line is not counted as
/// a second test), its verdict this test's.
fn run_as_root() {
    let sh = xshell::Shell::new().unwrap();
    let test = std::env::current_exe().unwrap();
    // sudo resets PATH: Go, cargo's tools and the Debian programs are found through this one.
    let path = std::env::var("PATH").unwrap_or_default();
    let output = cmd!(sh, "sudo -n --preserve-env env PATH={path} {test} {TEST} --exact --nocapture --test-threads 1")
        .quiet()
        .ignore_status()
        .output()
        .expect("running the test as root");
    for line in String::from_utf8_lossy(&output.stdout).lines().chain(String::from_utf8_lossy(&output.stderr).lines()) {
        eprintln!("as root: {line}");
    }
    assert!(output.status.success(), "the test failed as root ({}): its output is above", output.status);
}

/// A bare pod of `image` that satisfies `restricted`, so whatever turns it away is an image policy: `policy`, giving
/// `reason`. Returns the whole denial.
fn expect_denied(cluster: &TestCluster, name: &str, image: &str, policy: &str, reason: &str) -> Result<String> {
    let pod = format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {NAMESPACE}}}
spec:
  automountServiceAccountToken: false
  securityContext: {{runAsNonRoot: true, runAsUser: 65532, seccompProfile: {{type: RuntimeDefault}}}}
  containers:
  - name: app
    image: \"{image}\"
    securityContext: {{allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}
"
    );
    let error = match cluster.apply(&pod) {
        Ok(_) => bail!("{image} was admitted"),
        Err(error) => format!("{error:#}"),
    };
    let denied = "admission webhook \"policy.sigstore.dev\" denied the request";
    // The denial lists each failing policy as `failed policy: NAME: ...` with its reasons.
    let by_policy = error.split("failed policy: ").find(|part| part.starts_with(&format!("{policy}:")));
    ensure!(
        error.contains(denied) && by_policy.is_some_and(|part| part.contains(reason)),
        "{image} was turned away, but not by {policy} with \"{reason}\": {error}"
    );
    eprintln!("denied as expected: {error}");
    Ok(error)
}

/// Every pod of the app runs `pinned`, the digest `release` published and the deploy verified, never a tag.
fn ensure_runs(cluster: &TestCluster, app: &str, pinned: &str) -> Result<()> {
    let selector = format!("app.kubernetes.io/name={app}");
    let images = cluster.kubectl(&[
        "-n",
        NAMESPACE,
        "get",
        "pods",
        "-l",
        &selector,
        "-o",
        "jsonpath={range .items[*]}{.spec.containers[0].image}{'\\n'}{end}",
    ])?;
    ensure!(!images.trim().is_empty(), "no pod of {app}");
    for image in images.lines() {
        ensure!(image == pinned, "a pod of {app} runs {image}, not {pinned}");
    }
    Ok(())
}

/// Plain HTTP to a pod's address, never through a proxy.
fn client() -> reqwest::blocking::Client {
    shop::client(Duration::from_secs(30))
}

/// Key-based signing without the transparency log, as `release --key` does.
fn key_signing(cosign: &Path, keys: &KeyPair, derived: &Path) -> Signing {
    let signer =
        Signer::Key { key: KeySource::File(keys.private.clone()), password: Secret::new(keys.password.clone()) };
    let verifier = signer.verifier(cosign, None, derived).unwrap();
    Signing { signer, verifier, tlog: Tlog::Offline, cosign: cosign.to_owned() }
}

/// The image's SBOM as `ci` writes it (written now if `ci` has not run).
fn sbom(ctx: &Context, built: &Built) -> PathBuf {
    let path = ctx.out.sbom(&built.name());
    if !path.is_file() {
        let source =
            ImageSource { path: Some(&built.layout.dir), reference: &built.reference, expect: Default::default() };
        xtask::stages::sbom::sbom_of(ctx, &built.name(), &source).unwrap();
    }
    path
}

/// A password nobody wrote down: 24 random bytes, hex.
fn random(purpose: &str) -> String {
    format!("{purpose}-{}", xtask::stack::random_hex(24).unwrap())
}

/// The cases of the test, each run whatever happened to the ones before, each reported with what went wrong and
/// what the cluster looked like then.
struct Cases<'a> {
    cluster: &'a TestCluster,
    failed: Vec<String>,
}

impl<'a> Cases<'a> {
    fn new(cluster: &'a TestCluster) -> Self {
        Cases { cluster, failed: Vec::new() }
    }

    fn run(&mut self, name: &str, case: impl FnOnce() -> Result<()>) {
        let started = Instant::now();
        match case() {
            Ok(()) => eprintln!("case passed: {name} ({:.1?})", started.elapsed()),
            Err(error) => {
                eprintln!("case FAILED: {name}: {error:#}\n{}", self.cluster.report());
                self.failed.push(format!("{name}: {error:#}"));
            }
        }
    }
}
