//! The manifests of `deploy/kubernetes/` as kubectl's own kustomize builds them, the base and the external-Redis
//! overlay, pinned and checked as `cargo xtask deploy --kubernetes` does before anything reaches a cluster. No cluster:
//! what the API server says of them is the cluster test's (`kubectl apply --dry-run=client` needs one too, for its
//! discovery of the resource types).

mod common;

use std::collections::BTreeMap;

use common::require;
use serde_json::Value;
use xtask::context::Context;
use xtask::kubernetes::{self, Manifests, PLACEHOLDER};
use xtask::stages::deploy_kubernetes;

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
