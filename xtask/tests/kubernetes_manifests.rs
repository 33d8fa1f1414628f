//! The manifests of `deploy/kubernetes/` as kubectl's own kustomize builds them, the base and the external-Redis
//! overlay, pinned and checked as `cargo xtask deploy --kubernetes` does before anything reaches a cluster; and that
//! preparation itself against images released to a registry on 127.0.0.1. No cluster: what the API server and
//! policy-controller say is the cluster test's (`kubectl apply --dry-run=client` needs a server too, for its discovery
//! of the resource types). With XTASK_POLICY_TESTER naming policy-controller's `tester` (cmd/tester of its module),
//! the rendered admission policy is evaluated against those images as well.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::evidence::{self, EMPTY_SBOM, REPOSITORY};
use common::keys::generate_key_pair;
use common::layout;
use common::registry::LocalRegistry;
use common::require;
use serde_json::Value;
use xshell::cmd;
use xtask::context::Context;
use xtask::cosign::{self, Secret, Tlog};
use xtask::kubernetes::policy::{self, Scope};
use xtask::kubernetes::{self, Manifests, PLACEHOLDER};
use xtask::platform::Platform;
use xtask::registry::push_layout;
use xtask::signing::{KeySource, Signer, Verifier};
use xtask::stages::deploy_kubernetes::{self, KubernetesArgs};
use xtask::stages::release::{publish, Destination, PlatformImage, Signing};
use xtask::stages::verify::{RequireArgs, TrustArgs};

const DIGEST: &str = "sha256:5c0ffee5c0ffee5c0ffee5c0ffee5c0ffee5c0ffee5c0ffee5c0ffee5c0ffee0";

/// The kustomization rendered by kubectl and pinned to a digest per image, as a deploy would.
fn rendered(dir: &str) -> Option<Manifests> {
    let ctx = Context::discover().unwrap();
    let kubectl = require("kubectl", kubernetes::kubectl())?;
    let mut manifests = Manifests::build(&ctx, &kubectl, &ctx.root.join(dir)).unwrap();
    let pins: BTreeMap<String, String> = manifests
        .placeholders()
        .into_iter()
        .map(|name| (name.clone(), format!("127.0.0.1:5000/team/{name}@{DIGEST}")))
        .collect();
    manifests.pin(&pins).unwrap();
    Some(manifests)
}

fn deployment<'a>(manifests: &'a Manifests, name: &str) -> &'a Value {
    manifests
        .objects
        .iter()
        .find(|object| object["kind"] == "Deployment" && object["metadata"]["name"] == name)
        .unwrap()
}

fn env(container: &Value, name: &str) -> Option<String> {
    let variables = container["env"].as_array()?;
    variables.iter().find(|variable| variable["name"] == name)?["value"].as_str().map(str::to_owned)
}

#[test]
fn the_base_renders_restricted_pinned_and_without_secrets() {
    let Some(manifests) = rendered(kubernetes::BASE) else { return };
    manifests.check().unwrap();

    let labels = &manifests.namespace["metadata"]["labels"];
    for mode in ["enforce", "warn", "audit"] {
        assert_eq!(labels[format!("pod-security.kubernetes.io/{mode}")], "restricted", "{mode}");
    }
    assert_eq!(labels["policy.sigstore.dev/include"], "true");
    for object in &manifests.objects {
        assert_eq!(object["metadata"]["namespace"], manifests.namespace_name(), "{}", object["metadata"]["name"]);
    }

    let rendered = deploy_kubernetes::render(&manifests, &[]).unwrap();
    let text = format!("{}{}", rendered.namespace_yaml, rendered.workloads_yaml);
    assert!(!text.contains(PLACEHOLDER), "a placeholder is left");
    let images: Vec<&str> = text.lines().filter_map(|line| line.trim().strip_prefix("image: ")).collect();
    assert_eq!(images.len(), 3, "{images:?}");
    for image in images {
        assert!(image.ends_with(&format!("@{DIGEST}")) && !image.contains(":team"), "{image}");
        let repository = image.split('@').next().unwrap();
        assert!(!repository.rsplit('/').next().unwrap().contains(':'), "a tag beside the digest: {image}");
    }
    // The secret is read by name only: no Secret object, no value.
    assert!(!text.contains("kind: Secret") && !text.contains("stringData"), "{text}");
    assert_eq!(rendered.secrets["fake-shop"].len(), 2);
    assert_eq!(rendered.deployments, ["fake-shop", "giropops-senhas", "postgres"], "kustomize sorts by kind and name");

    let giropops = &deployment(&manifests, "giropops-senhas")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(env(giropops, "EMBEDDED_REDIS").as_deref(), Some("true"));
}

#[test]
fn the_external_redis_overlay_switches_the_embedded_redis_off() {
    let Some(manifests) = rendered("deploy/kubernetes/external-redis") else { return };
    manifests.check().unwrap();
    let giropops = deployment(&manifests, "giropops-senhas");
    assert_eq!(giropops["spec"]["replicas"], 2);
    let app = &giropops["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(env(app, "EMBEDDED_REDIS").as_deref(), Some("false"));
    assert_eq!(env(app, "REDIS_HOST").as_deref(), Some("redis"));
    // The patch keeps the base's hardening of the container it merges into.
    assert_eq!(app["securityContext"]["readOnlyRootFilesystem"], true);
    let redis = &deployment(&manifests, "redis")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(redis["image"], app["image"], "Redis runs from the signed giropops-senhas image");
    assert_eq!(redis["args"][1], "redis-server");
    assert!(manifests.names_of("Service").contains(&"redis".to_owned()));
}

/// A committed checkout whose `out/` holds the SBOM and the provenance of each platform of `images`, as `ci` leaves
/// them for `release`.
fn released_checkout(root: &Path, images: &[&str]) -> (Context, String) {
    std::fs::create_dir_all(root).unwrap();
    let ctx = Context::at(root.to_owned()).unwrap();
    // The repository the index's provenance names, as `release` writes it.
    std::fs::write(root.join("Cargo.toml"), format!("[workspace.package]\nrepository = \"{REPOSITORY}\"\n")).unwrap();
    let commit = evidence::commit_all(&ctx);
    for image in images {
        for platform in Platform::ALL {
            let sbom = ctx.out.sbom(&format!("{image}/{}", platform.arch()));
            std::fs::create_dir_all(sbom.parent().unwrap()).unwrap();
            std::fs::write(&sbom, EMPTY_SBOM).unwrap();
            let path = ctx.out.provenance(image, platform);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, evidence::provenance(image, &platform.docker(), &commit).to_string()).unwrap();
        }
    }
    (ctx, commit)
}

#[test]
fn a_deploy_verifies_every_image_and_renders_what_it_verified() {
    let workspace = Context::discover().unwrap();
    let Some(_) = require("kubectl", kubernetes::kubectl()) else { return };
    let Some(cosign) = require("cosign", cosign::cosign(&workspace)) else { return };
    let Some(registry) = require("a registry binary", LocalRegistry::start(&workspace)) else { return };
    let folder = tempfile::Builder::new().prefix("xtask-kubernetes-").tempdir().unwrap();
    let keys = generate_key_pair(&cosign, &folder.path().join("keys"), "kubernetes test password");
    let released = ["fake-shop", "giropops-senhas"];
    let (ctx, commit) = released_checkout(&folder.path().join("checkout"), &released);
    let signer = Signer::Key { key: KeySource::File(keys.private.clone()), password: Secret::new(&keys.password) };
    let signing =
        Signing { signer: signer.clone(), verifier: Verifier::Key(keys.public.clone()), tlog: Tlog::Offline, cosign };
    let destination = Destination::parse(&format!("{}/team", registry.address)).unwrap();
    let tag = ctx.revision().unwrap().tag.clone();

    // Both apps released as `release` does (an index of two platforms each); postgres pushed and signed by hand.
    let mut indexes = BTreeMap::new();
    for image in released {
        let platforms: Vec<PlatformImage> = Platform::ALL
            .iter()
            .map(|&platform| {
                let dir = folder.path().join(format!("{image}-{}", platform.arch()));
                let layout =
                    layout::built_for(&dir, &format!("{image} {}", platform.arch()), Some(&commit), platform.arch());
                PlatformImage {
                    platform,
                    layout: layout.dir,
                    sbom: ctx.out.sbom(&format!("{image}/{}", platform.arch())),
                    provenance: ctx.out.provenance(image, platform),
                }
            })
            .collect();
        let published = publish(&ctx, image, &platforms, &destination, &signing).unwrap();
        indexes.insert(image.to_owned(), published.pinned);
    }
    let postgres = layout::built_from(&folder.path().join("postgres"), "postgres", None);
    let repository = destination.repository("postgres");
    let digest = push_layout(&postgres.dir, &repository, std::slice::from_ref(&tag)).unwrap();
    signer.sign(&signing.cosign, &format!("{repository}@{digest}"), Tlog::Offline).unwrap();
    indexes.insert("postgres".to_owned(), format!("{repository}@{digest}"));

    let trust = TrustArgs { key: Some(keys.public.clone()), ..TrustArgs::default() };
    let args = KubernetesArgs {
        kubernetes: true,
        registry: Some(format!("{}/team", registry.address)),
        tag: Some(tag.clone()),
        ..KubernetesArgs::default()
    };
    let require = RequireArgs { source_repository: Some(REPOSITORY.to_owned()), ..RequireArgs::default() };
    let prepared = deploy_kubernetes::prepare(&workspace, &trust, &require, &args).unwrap();

    // Each image is the digest that was verified (the index, for a released one), and the manifests name nothing else.
    let verified: BTreeMap<String, (bool, String)> = prepared
        .images
        .iter()
        .map(|image| (image.name.clone(), (image.released, image.verified.pinned.clone())))
        .collect();
    for (name, pinned) in &indexes {
        assert_eq!(verified[name], (name != "postgres", pinned.clone()), "{name}");
        assert!(prepared.rendered.workloads_yaml.contains(&format!("image: {pinned}\n")), "{name}");
    }
    let policy = &prepared.rendered.policy_yaml;
    let public_key = std::fs::read_to_string(&keys.public).unwrap();
    assert!(policy.contains(public_key.lines().nth(1).unwrap()), "the policy holds the key verify took:\n{policy}");
    assert!(policy.contains(&format!("{}/team/postgres@**", registry.address)), "{policy}");
    assert_eq!(std::fs::read_to_string(workspace.out.kubernetes_policy()).unwrap(), *policy);

    // What does not verify is named, and nothing is rendered for it.
    let unsigned = layout::built_from(&folder.path().join("unsigned"), "unsigned", Some(&commit));
    push_layout(&unsigned.dir, &destination.repository("fake-shop"), &["unsigned".to_owned()]).unwrap();
    let other = KubernetesArgs {
        images: vec![("fake-shop".into(), format!("{}:unsigned", destination.repository("fake-shop")))],
        ..args.clone()
    };
    let error = format!("{:#}", deploy_kubernetes::prepare(&workspace, &trust, &require, &other).unwrap_err());
    assert!(error.contains("verifying image fake-shop") && error.contains("nothing was applied"), "{error}");

    // policy-controller's own evaluation of the rendered policy, where its tester is at hand.
    let Some(tester) = std::env::var_os("XTASK_POLICY_TESTER").map(PathBuf::from) else { return };
    let policy_file = folder.path().join("policy.yaml");
    std::fs::write(&policy_file, policy).unwrap();
    let sh = xshell::Shell::new().unwrap();
    // The tester's verdict on `image` under the policy in `policy_file` as it is then.
    let test = |image: &str| {
        cmd!(sh, "{tester} --policy {policy_file} --image {image}").quiet().ignore_status().output().unwrap()
    };
    for pinned in indexes.values() {
        let output = test(pinned);
        let said = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "policy-controller refuses {pinned}:\n{said}");
    }
    let unsigned = format!("{}@{}", destination.repository("fake-shop"), unsigned.digest);
    assert!(!test(&unsigned).status.success(), "policy-controller admits the unsigned {unsigned}");
    // Signed in cosign 3's default format (a Sigstore bundle as an OCI referrer) instead: policy-controller does not
    // read it, which is why `release` signs in the tag format (cosign::SIGNING_FORMAT).
    let bundled = layout::built_from(&folder.path().join("bundled"), "bundled", None);
    let repository = destination.repository("postgres");
    let digest = push_layout(&bundled.dir, &repository, &["bundled".to_owned()]).unwrap();
    let pinned = format!("{repository}@{digest}");
    let (cosign, private) = (&signing.cosign, &keys.private);
    cmd!(sh, "{cosign} sign --yes --key {private} --use-signing-config=false --tlog-upload=false {pinned}")
        .env("COSIGN_PASSWORD", &keys.password)
        .stdin("")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .unwrap();
    assert!(
        !test(&pinned).status.success(),
        "policy-controller reads a bundle signature after all: tag format unneeded?"
    );
    // The same images under a policy rendered for another repository: the provenance's Rego refuses them.
    let scope = Scope {
        released: released.iter().map(|image| destination.repository(image)).collect(),
        companions: vec![destination.repository("postgres")],
        source_repository: "https://example.test/elsewhere".to_owned(),
    };
    let elsewhere =
        policy::render_file(&workspace, &Verifier::Key(keys.public.clone()), Tlog::Offline, &scope).unwrap();
    std::fs::write(&policy_file, kubernetes::to_yaml(&elsewhere).unwrap()).unwrap();
    let output = test(&indexes["fake-shop"]);
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success() && said.contains("rego"), "a provenance of another repository passes: {said}");
}
