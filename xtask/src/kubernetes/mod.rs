//! Kubernetes: the manifests of `deploy/kubernetes/` as `kubectl kustomize` builds them, each image placeholder
//! replaced by the digest `verify` checked, and the checks every rendered pod template must pass (the `restricted`
//! Pod Security level and this project's hardening) before anything reaches a cluster. `policy` renders the admission
//! policy; `stages/deploy_kubernetes.rs` runs kubectl with both.

pub mod policy;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::Deserialize as _;
use serde_json::Value;

use crate::context::Context;

/// How the manifests name an image until a deploy pins it: `distroless-python/<folder under images/>`, no tag.
pub const PLACEHOLDER: &str = "distroless-python/";

/// The kustomization a deploy uses unless told otherwise, relative to the workspace root.
pub const BASE: &str = "deploy/kubernetes/base";

/// kubectl from PATH: it is the cluster's client, not a pinned tool (Debian: `apt-get install kubernetes-client`).
pub fn kubectl() -> Result<PathBuf> {
    crate::process::find_program("kubectl").context(
        "kubectl is not on PATH: install it (Debian: `apt-get install kubernetes-client`; any kubectl from 1.20 on)",
    )
}

/// What a kustomization renders to: its one Namespace and the objects that go into it.
#[derive(Debug, Clone)]
pub struct Manifests {
    pub namespace: Value,
    pub objects: Vec<Value>,
}

impl Manifests {
    /// `kubectl kustomize DIR`, read back.
    pub fn build(ctx: &Context, kubectl: &Path, dir: &Path) -> Result<Self> {
        let sh = &ctx.sh;
        let text = xshell::cmd!(sh, "{kubectl} kustomize {dir}")
            .quiet()
            .read()
            .with_context(|| format!("rendering the manifests of {} (`kubectl kustomize`)", dir.display()))?;
        Self::parse(&text).with_context(|| format!("reading what `kubectl kustomize {}` printed", dir.display()))
    }

    /// Rendered YAML: exactly one Namespace, the rest namespaced objects in it.
    pub fn parse(text: &str) -> Result<Self> {
        let mut namespaces = Vec::new();
        let mut objects = Vec::new();
        for document in parse_documents(text)? {
            if kind(&document) == "Namespace" {
                namespaces.push(document);
            } else {
                objects.push(document);
            }
        }
        let namespace = match <[Value; 1]>::try_from(namespaces) {
            Ok([namespace]) => namespace,
            Err(found) => bail!(
                "the manifests hold {} Namespace objects, not one: the deploy labels its namespace for Pod Security \
                 and policy-controller, so the kustomization must have exactly one",
                found.len()
            ),
        };
        Ok(Self { namespace, objects })
    }

    pub fn namespace_name(&self) -> &str {
        self.namespace["metadata"]["name"].as_str().unwrap_or_default()
    }

    /// The images the manifests name by placeholder, by image name (`fake-shop` for `distroless-python/fake-shop`).
    pub fn placeholders(&self) -> BTreeSet<String> {
        self.containers()
            .filter_map(|(_, container)| container["image"].as_str()?.strip_prefix(PLACEHOLDER).map(str::to_owned))
            .collect()
    }

    /// Replaces each placeholder by the reference `pinned` gives for its image (`HOST/NS/NAME@sha256:...`). Any other
    /// image is an error: the manifests name images only by placeholder, so that nothing runs unverified.
    pub fn pin(&mut self, pinned: &BTreeMap<String, String>) -> Result<()> {
        let mut problems = Vec::new();
        for object in &mut self.objects {
            let name = object_name(object);
            for container in containers_mut(object) {
                let image = container["image"].as_str().unwrap_or_default().to_owned();
                let which = format!("{name}, container {}", container["name"].as_str().unwrap_or("?"));
                match image.strip_prefix(PLACEHOLDER).map(|name| (name, pinned.get(name))) {
                    Some((_, Some(reference))) => container["image"] = Value::from(reference.as_str()),
                    Some((image, None)) => {
                        problems.push(format!("{which}: no verified image for {PLACEHOLDER}{image}"))
                    }
                    None => problems.push(format!(
                        "{which}: image `{image}` is not a placeholder {PLACEHOLDER}<image>: the manifests name images \
                         only that way, and the deploy puts the digest it verified in their place"
                    )),
                }
            }
        }
        report("the images of the manifests", problems)
    }

    /// What must hold of every object before it is sent: no Secret (secrets never go through a manifest), every image
    /// pinned by digest, and every pod template at Pod Security `restricted` with this project's hardening.
    pub fn check(&self) -> Result<()> {
        let mut problems = Vec::new();
        for object in &self.objects {
            let name = object_name(object);
            if kind(object) == "Secret" {
                problems.push(format!(
                    "{name}: a Secret in the manifests; the deploy creates the secrets the pods name, from its standard input"
                ));
            }
            if let Some(pod) = pod_spec(object) {
                problems.extend(check_pod(pod).into_iter().map(|problem| format!("{name}: {problem}")));
            }
        }
        report("the manifests", problems)
    }

    /// Each Secret the pod templates read, with the keys they read from it.
    pub fn secret_references(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut secrets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (_, container) in self.containers() {
            for variable in container["env"].as_array().into_iter().flatten() {
                let reference = &variable["valueFrom"]["secretKeyRef"];
                if let (Some(name), Some(key)) = (reference["name"].as_str(), reference["key"].as_str()) {
                    secrets.entry(name.to_owned()).or_default().insert(key.to_owned());
                }
            }
        }
        secrets
    }

    /// The objects of one kind, by name.
    pub fn names_of(&self, wanted: &str) -> Vec<String> {
        self.objects
            .iter()
            .filter(|object| kind(object) == wanted)
            .filter_map(|object| object["metadata"]["name"].as_str().map(str::to_owned))
            .collect()
    }

    /// Each Service with its ports.
    pub fn services(&self) -> Vec<(String, Vec<u64>)> {
        self.objects
            .iter()
            .filter(|object| kind(object) == "Service")
            .map(|service| {
                let ports = service["spec"]["ports"].as_array().into_iter().flatten();
                (object_name_only(service), ports.filter_map(|port| port["port"].as_u64()).collect())
            })
            .collect()
    }

    /// Every container and init container of every pod template, with the name of its object.
    fn containers(&self) -> impl Iterator<Item = (String, &Value)> {
        self.objects.iter().flat_map(|object| {
            let name = object_name(object);
            pod_spec(object).into_iter().flat_map(pod_containers).map(move |container| (name.clone(), container))
        })
    }
}

/// The documents of a YAML stream, empty ones left out.
pub fn parse_documents(text: &str) -> Result<Vec<Value>> {
    let mut documents = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let value = Value::deserialize(document).context("a YAML document that is not an object")?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

/// Documents as one YAML stream, for people and for kubectl.
pub fn to_yaml(documents: &[Value]) -> Result<String> {
    let mut text = String::new();
    for document in documents {
        text.push_str("---\n");
        text.push_str(&serde_yaml_ng::to_string(document)?);
    }
    Ok(text)
}

fn kind(object: &Value) -> &str {
    object["kind"].as_str().unwrap_or_default()
}

/// `Kind/name`, as kubectl names objects.
fn object_name(object: &Value) -> String {
    format!("{}/{}", kind(object), object_name_only(object))
}

fn object_name_only(object: &Value) -> String {
    object["metadata"]["name"].as_str().unwrap_or("?").to_owned()
}

/// Where an object keeps its pod template's spec, for the kinds that make pods.
fn pod_spec_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some("/spec"),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => Some("/spec/template/spec"),
        "CronJob" => Some("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    }
}

fn pod_spec(object: &Value) -> Option<&Value> {
    object.pointer(pod_spec_pointer(kind(object))?)
}

/// The fields of a pod spec that list containers.
const CONTAINER_LISTS: [&str; 2] = ["initContainers", "containers"];

/// Every container and init container of a pod spec.
fn pod_containers(pod: &Value) -> impl Iterator<Item = &Value> {
    CONTAINER_LISTS.into_iter().filter_map(|field| pod[field].as_array()).flatten()
}

fn containers_mut(object: &mut Value) -> Vec<&mut Value> {
    let Some(pointer) = pod_spec_pointer(kind(object)) else { return Vec::new() };
    let Some(Value::Object(pod)) = object.pointer_mut(pointer) else { return Vec::new() };
    pod.iter_mut()
        .filter(|(field, _)| CONTAINER_LISTS.contains(&field.as_str()))
        .filter_map(|(_, containers)| containers.as_array_mut())
        .flatten()
        .collect()
}

/// The volume types Pod Security `restricted` allows.
const RESTRICTED_VOLUMES: [&str; 8] =
    ["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"];

/// The user and group of every image: the distroless non-root user.
const NONROOT: u64 = 65532;

/// What is wrong with a pod spec, against Pod Security `restricted` (each of its checks that a manifest can fail)
/// and this project's hardening (the non-root user 65532, a read-only root with an emptyDir on /tmp, no service
/// account token, probes, requests and a memory limit).
fn check_pod(pod: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let pod_context = &pod["securityContext"];
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod[field] == true {
            problems.push(format!("{field} is set"));
        }
    }
    if pod_context["runAsNonRoot"] != true {
        problems.push("securityContext.runAsNonRoot is not true".to_owned());
    }
    for field in ["runAsUser", "runAsGroup", "fsGroup"] {
        if pod_context[field] != NONROOT {
            problems.push(format!("securityContext.{field} is not {NONROOT}"));
        }
    }
    if pod_context["seccompProfile"]["type"] != "RuntimeDefault" {
        problems.push("securityContext.seccompProfile.type is not RuntimeDefault".to_owned());
    }
    if pod["automountServiceAccountToken"] != false {
        problems.push("automountServiceAccountToken is not false (no pod here talks to the API server)".to_owned());
    }
    let mut empty_dirs = BTreeSet::new();
    for volume in pod["volumes"].as_array().into_iter().flatten() {
        let name = volume["name"].as_str().unwrap_or("?");
        let types: Vec<&String> = volume.as_object().into_iter().flatten().map(|(field, _)| field).collect();
        for kind in types.into_iter().filter(|field| *field != "name") {
            if !RESTRICTED_VOLUMES.contains(&kind.as_str()) {
                problems.push(format!("volume {name} is a {kind} volume, which Pod Security restricted refuses"));
            }
        }
        if volume.get("emptyDir").is_some() {
            empty_dirs.insert(name.to_owned());
        }
    }
    for container in pod_containers(pod) {
        let name = container["name"].as_str().unwrap_or("?");
        problems.extend(
            check_container(container, &empty_dirs).into_iter().map(|problem| format!("container {name}: {problem}")),
        );
    }
    problems
}

fn check_container(container: &Value, empty_dirs: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let context = &container["securityContext"];
    if context["allowPrivilegeEscalation"] != false {
        problems.push("securityContext.allowPrivilegeEscalation is not false".to_owned());
    }
    if context["privileged"] == true {
        problems.push("securityContext.privileged is set".to_owned());
    }
    if context["readOnlyRootFilesystem"] != true {
        problems.push("securityContext.readOnlyRootFilesystem is not true".to_owned());
    }
    let dropped = context["capabilities"]["drop"].as_array().into_iter().flatten();
    if !dropped.clone().any(|capability| capability == "ALL") {
        problems.push("securityContext.capabilities.drop does not name ALL".to_owned());
    }
    if context["capabilities"]["add"].as_array().is_some_and(|added| !added.is_empty()) {
        problems.push("securityContext.capabilities.add is not empty".to_owned());
    }
    // A container may override the pod's user.
    if context["runAsNonRoot"] == false || context.get("runAsUser").is_some_and(|user| *user != NONROOT) {
        problems.push(format!("securityContext overrides the pod's non-root user {NONROOT}"));
    }
    if !context["seccompProfile"].is_null() && context["seccompProfile"]["type"] != "RuntimeDefault" {
        problems.push("securityContext.seccompProfile.type is not RuntimeDefault".to_owned());
    }
    if container["ports"].as_array().into_iter().flatten().any(|port| !port["hostPort"].is_null()) {
        problems.push("a hostPort is set".to_owned());
    }
    for probe in ["readinessProbe", "livenessProbe"] {
        if container[probe].is_null() {
            problems.push(format!("no {probe}"));
        }
    }
    for pointer in ["/resources/requests/cpu", "/resources/requests/memory", "/resources/limits/memory"] {
        if container.pointer(pointer).is_none() {
            problems.push(format!("no {}", pointer.trim_start_matches('/').replace('/', ".")));
        }
    }
    let mounts = container["volumeMounts"].as_array().into_iter().flatten();
    let tmp = mounts.clone().find(|mount| mount["mountPath"] == "/tmp");
    if !tmp.and_then(|mount| mount["name"].as_str()).is_some_and(|volume| empty_dirs.contains(volume)) {
        problems.push("/tmp is not an emptyDir volume (the root filesystem is read-only)".to_owned());
    }
    match container["image"].as_str() {
        Some(image) if !is_pinned(image) => {
            problems.push(format!("image `{image}` is not pinned by digest (REPOSITORY@sha256:<64 hex>, no tag)"))
        }
        None => problems.push("no image".to_owned()),
        Some(_) => {}
    }
    problems
}

/// `REPOSITORY@sha256:<64 hex>`, with no tag beside the digest.
fn is_pinned(image: &str) -> bool {
    let Some((repository, digest)) = image.split_once('@') else { return false };
    let tagged = repository.rsplit('/').next().is_some_and(|last| last.contains(':'));
    let hex = digest.strip_prefix("sha256:").unwrap_or_default();
    !tagged && hex.len() == 64 && hex.bytes().all(|byte| byte.is_ascii_hexdigit() && !byte.is_ascii_uppercase())
}

fn report(what: &str, problems: Vec<String>) -> Result<()> {
    if problems.is_empty() {
        return Ok(());
    }
    bail!("{what}:\n  - {}", problems.join("\n  - "))
}

#[cfg(test)]
mod tests;
