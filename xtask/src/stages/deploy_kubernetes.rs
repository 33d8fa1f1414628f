//! `cargo xtask deploy --kubernetes`: runs in a Kubernetes cluster only what was verified.
//!
//! Every image the manifests name (`deploy/kubernetes/base`, or `--manifests DIR`) is verified first, as `cargo
//! xtask verify` does it (the same function): a released one with its signature, SBOM and provenance, a companion
//! (postgres, never released) with its signature. Then the manifests are rendered with those digests, never a tag,
//! and checked (Pod Security `restricted`, the project's hardening, no Secret); the admission policy is rendered from
//! the same trust; and kubectl applies it all in a planned order: namespace, policy, secrets, a server-side dry run of
//! the workloads, the workloads, each rollout. `--dry-run` stops at the dry runs and changes nothing.
//!
//! The kubectl invocations are planned as data ([`plan`]) from what the cluster holds ([`Facts`]), so the order and
//! the arguments are tested without a cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use super::release::Destination;
use super::verify::{self, RequireArgs, TrustArgs, Verified};
use crate::context::Context;
use crate::cosign;
use crate::kubernetes::{self, policy, Manifests};
use crate::registry::Reference;
use kubectl::Kubectl;

/// Who owns the fields this deploy sets (server-side apply).
const FIELD_MANAGER: &str = "--field-manager=distroless-python-xtask";

/// policy-controller's resource: where it is installed, the deploy applies the admission policy.
const POLICY_CRD: &str = "clusterimagepolicies.policy.sigstore.dev";

/// `cargo xtask deploy --kubernetes`: the flags of the Kubernetes path (the trust and requirement flags are
/// `deploy`'s, which are `verify`'s).
#[derive(clap::Args, Debug, Default, Clone)]
pub struct KubernetesArgs {
    /// Deploy to Kubernetes: every image of deploy/kubernetes/ verified, the verified digests applied with the
    /// admission policy, the rollouts waited for.
    #[arg(long, requires = "registry", conflicts_with_all = ["image", "no_verify", "name", "port", "stop"])]
    pub kubernetes: bool,
    /// Where the images are: HOST[:PORT]/NAMESPACE, as given to `release --registry`. Each image is
    /// HOST[:PORT]/NAMESPACE/<image>:<tag> (resolved to its digest once).
    #[arg(long, value_name = "HOST[:PORT]/NAMESPACE", requires = "kubernetes")]
    pub registry: Option<String>,
    /// The tag to deploy (default: this checkout's revision, as `release` tags it).
    #[arg(long, requires = "kubernetes")]
    pub tag: Option<String>,
    /// Another reference for one image, e.g. postgres=registry.example/db/postgres@sha256:... (repeatable).
    #[arg(long = "image", value_name = "NAME=IMAGE", value_parser = parse_override, requires = "kubernetes")]
    pub images: Vec<(String, String)>,
    /// The kubeconfig context to deploy to (default: kubectl's current context).
    #[arg(long, value_name = "NAME", requires = "kubernetes")]
    pub context: Option<String>,
    /// Only the server-side dry runs: nothing in the cluster changes.
    #[arg(long, requires = "kubernetes")]
    pub dry_run: bool,
    /// The kustomization to deploy (default: deploy/kubernetes/base; deploy/kubernetes/external-redis runs one
    /// Redis for every giropops-senhas pod).
    #[arg(long, value_name = "DIR", requires = "kubernetes")]
    pub manifests: Option<PathBuf>,
    /// How long to wait for each rollout, in kubectl's form (90s, 5m).
    #[arg(long, default_value = "5m", requires = "kubernetes")]
    pub timeout: String,
}

fn parse_override(text: &str) -> Result<(String, String), String> {
    let (name, reference) = text.split_once('=').ok_or_else(|| format!("`{text}`: write NAME=IMAGE"))?;
    Reference::parse(reference).map_err(|error| format!("`{text}`: {error:#}"))?;
    Ok((name.to_owned(), reference.to_owned()))
}

/// One image of the deploy, verified.
#[derive(Debug)]
pub struct Pinned {
    /// The placeholder's name, the folder under images/.
    pub name: String,
    pub released: bool,
    pub verified: Verified,
}

/// What the manifests and the policy render to, for the plan: YAML streams and the names the steps need.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub namespace: String,
    pub namespace_yaml: String,
    pub workloads_yaml: String,
    pub policy_yaml: String,
    pub policies: Vec<String>,
    pub deployments: Vec<String>,
    /// The secrets the pods read, with their keys.
    pub secrets: BTreeMap<String, BTreeSet<String>>,
    /// Each Service with its ports.
    pub services: Vec<(String, Vec<u64>)>,
}

/// What the cluster holds that the plan depends on, asked read-only before anything is planned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    pub namespace: bool,
    /// policy-controller's ClusterImagePolicy resource is installed.
    pub policy_controller: bool,
    /// Which of the ClusterImagePolicies are in the cluster.
    pub policies: BTreeSet<String>,
    /// Which of the secrets exist, with the keys they hold.
    pub secrets: BTreeMap<String, BTreeSet<String>>,
}

/// One kubectl invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// What it does, for the log and the error.
    pub what: String,
    /// kubectl's arguments, `--context NAME` first when one is given.
    pub args: Vec<String>,
    pub input: Input,
    /// What to do when it fails.
    pub fix: String,
}

/// What a step hands kubectl on its standard input.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Nothing,
    /// A YAML stream, without any secret.
    Manifests(String),
    /// Secrets with a random value for each key, made when the step runs: never in the plan, a file, a log or a
    /// command line.
    NewSecrets {
        namespace: String,
        secrets: BTreeMap<String, BTreeSet<String>>,
    },
}

/// What a deploy applies, verified and rendered before any cluster is asked.
#[derive(Debug)]
pub struct Prepared {
    pub images: Vec<Pinned>,
    pub rendered: Rendered,
}

pub fn run(ctx: &Context, trust: &TrustArgs, require: &RequireArgs, args: &KubernetesArgs) -> Result<()> {
    let prepared = prepare(ctx, trust, require, args)?;
    let kubectl = Kubectl { path: kubernetes::kubectl()?, context: args.context.clone() };
    let facts = kubectl.facts(&prepared.rendered)?;
    if !facts.policy_controller {
        eprintln!(
            "WARNING: policy-controller is not installed in this cluster ({POLICY_CRD} is unknown): nothing but this \
             deploy's own verification checks the images. Install it from its release (README: Kubernetes), then \
             deploy again to apply the admission policy."
        );
    }
    let options = Options { context: args.context.clone(), dry_run: args.dry_run, timeout: args.timeout.clone() };
    for step in plan(&prepared.rendered, &facts, &options)? {
        kubectl.run(&step)?;
    }
    print(&kubectl, &prepared, &facts, args.dry_run)
}

/// Everything a deploy does before it asks the cluster anything: verifies every image the manifests name (a released
/// one as `verify` does, a companion by its signature), renders the manifests with those digests and checks them,
/// renders the admission policy from the same trust, and writes both to `out/kubernetes/`.
pub fn prepare(ctx: &Context, trust: &TrustArgs, require: &RequireArgs, args: &KubernetesArgs) -> Result<Prepared> {
    let (verifier, tlog) = trust.verifier()?;
    let kubectl = kubernetes::kubectl()?;
    let dir = args.manifests.clone().unwrap_or_else(|| ctx.root.join(kubernetes::BASE));
    let mut manifests = Manifests::build(ctx, &kubectl, &dir)?;

    // Every image before anything reaches the cluster: one that does not verify stops the deploy here.
    let cosign = cosign::cosign(ctx)?;
    let mut images = Vec::new();
    for (name, reference) in references(ctx, args, &manifests)? {
        let released = ctx.image(&name).is_ok_and(|image| image.settings.release);
        let require = if released { require.clone() } else { companion_requirements(require) };
        let verified =
            verify::image(&cosign, &Reference::parse(&reference)?, &verifier, tlog, &require).with_context(|| {
                format!(
                    "verifying image {name} ({reference}): it did not verify, so nothing was applied to the cluster"
                )
            })?;
        verify::print(&verified, &verifier);
        images.push(Pinned { name, released, verified });
    }
    eprintln!("xtask: {}", tlog.describe());

    manifests.pin(&images.iter().map(|image| (image.name.clone(), image.verified.pinned.clone())).collect())?;
    manifests.check().with_context(|| format!("checking the manifests of {}", dir.display()))?;
    let of = |released: bool| -> Vec<String> {
        images.iter().filter(|image| image.released == released).map(|image| repository(&image.verified)).collect()
    };
    let scope = policy::Scope {
        released: of(true),
        companions: of(false),
        source_repository: require
            .source_repository
            .clone()
            .unwrap_or_else(|| crate::provenance::source_repository(ctx)),
    };
    let policies = policy::render_file(ctx, &verifier, tlog, &scope)?;
    let rendered = render(&manifests, &policies)?;
    write(ctx, &rendered)?;
    Ok(Prepared { images, rendered })
}

/// The reference of each image the manifests name: `--image NAME=IMAGE`, else REGISTRY/NAMESPACE/NAME:TAG.
fn references(ctx: &Context, args: &KubernetesArgs, manifests: &Manifests) -> Result<Vec<(String, String)>> {
    let registry = args.registry.as_deref().context("--kubernetes needs --registry HOST[:PORT]/NAMESPACE")?;
    let destination = Destination::parse(registry)?;
    let tag = match &args.tag {
        Some(tag) => tag.clone(),
        None => {
            let revision = ctx.revision()?;
            if revision.dirty {
                bail!(
                    "this checkout has uncommitted changes, and `release` never publishes its tag {}: pass --tag with \
                     the tag of a release",
                    revision.tag
                );
            }
            revision.tag.clone()
        }
    };
    let overrides: BTreeMap<&String, &String> = args.images.iter().map(|(name, image)| (name, image)).collect();
    let placeholders = manifests.placeholders();
    if let Some(unknown) = overrides.keys().find(|name| !placeholders.contains(name.as_str())) {
        bail!(
            "--image {unknown}=...: the manifests name no such image (they name {})",
            placeholders.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(placeholders
        .into_iter()
        .map(|name| {
            let reference = overrides
                .get(&name)
                .map(|image| image.to_string())
                .unwrap_or_else(|| format!("{}:{tag}", destination.repository(&name)));
            (name, reference)
        })
        .collect())
}

/// A companion is never released: it carries a signature, and neither SBOM nor provenance.
fn companion_requirements(require: &RequireArgs) -> RequireArgs {
    RequireArgs { without_sbom: true, without_provenance: true, ..require.clone() }
}

/// `HOST[:PORT]/NAMESPACE/NAME` of a verified image.
fn repository(verified: &Verified) -> String {
    verified.pinned.split_once('@').map_or(verified.pinned.as_str(), |(repository, _)| repository).to_owned()
}

/// The YAML streams and names the plan works with.
pub fn render(manifests: &Manifests, policies: &[Value]) -> Result<Rendered> {
    let names = |documents: &[Value]| -> Vec<String> {
        documents.iter().filter_map(|document| document["metadata"]["name"].as_str().map(str::to_owned)).collect()
    };
    Ok(Rendered {
        namespace: manifests.namespace_name().to_owned(),
        namespace_yaml: kubernetes::to_yaml(std::slice::from_ref(&manifests.namespace))?,
        workloads_yaml: kubernetes::to_yaml(&manifests.objects)?,
        policy_yaml: kubernetes::to_yaml(policies)?,
        policies: names(policies),
        deployments: manifests.names_of("Deployment"),
        secrets: manifests.secret_references(),
        services: manifests.services(),
    })
}

/// What was rendered, for people and for `kubectl apply -f` by hand: `out/kubernetes/`. No secret is in it.
fn write(ctx: &Context, rendered: &Rendered) -> Result<()> {
    let files = [
        (ctx.out.kubernetes_namespace(), &rendered.namespace_yaml),
        (ctx.out.kubernetes_manifests(), &rendered.workloads_yaml),
        (ctx.out.kubernetes_policy(), &rendered.policy_yaml),
    ];
    for (path, text) in &files {
        crate::files::write(path, text)?;
    }
    let paths: Vec<String> = files.iter().map(|(path, _)| path.display().to_string()).collect();
    eprintln!("xtask: rendered {}", paths.join(", "));
    Ok(())
}

/// How the plan runs kubectl.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub context: Option<String>,
    pub dry_run: bool,
    pub timeout: String,
}

/// The kubectl invocations of a deploy, in order. Cluster-wide things first (the namespace with its Pod Security
/// labels, the admission policy), then the secrets the pods read, then a server-side dry run of the workloads that
/// fails on any warning (a pod template that Pod Security or policy-controller would refuse), then the workloads and
/// their rollouts. A dry run plans only dry runs; it needs the namespace and the policy in place, since the server
/// checks objects against what it holds.
pub fn plan(rendered: &Rendered, facts: &Facts, options: &Options) -> Result<Vec<Step>> {
    let namespace = &rendered.namespace;
    let prefix = kubectl::context_args(options.context.as_deref());
    let step = |what: String, args: &[&str], input: Input, fix: String| Step {
        what,
        args: prefix.iter().cloned().chain(args.iter().map(|arg| arg.to_string())).collect(),
        input,
        fix,
    };
    let server_dry_run: &[&str] =
        &["apply", "--server-side", FIELD_MANAGER, "--dry-run=server", "--warnings-as-errors", "-f", "-"];
    let apply =
        if options.dry_run { server_dry_run } else { &["apply", "--server-side", FIELD_MANAGER, "-f", "-"][..] };
    let missing_policies: Vec<&String> =
        rendered.policies.iter().filter(|name| !facts.policies.contains(*name)).collect();
    if options.dry_run && !facts.namespace {
        bail!(
            "the namespace {namespace} does not exist yet, and the API server refuses objects in a missing namespace \
             even in a dry run: create it first (`kubectl apply --server-side -f out/kubernetes/namespace.yaml`), or \
             deploy without --dry-run"
        );
    }
    if options.dry_run && facts.policy_controller && !missing_policies.is_empty() {
        bail!(
            "the ClusterImagePolicies {} are not in the cluster yet, so policy-controller would deny every image of the \
             dry run: apply them first (`kubectl apply --server-side -f out/kubernetes/cluster-image-policy.yaml`), or \
             deploy without --dry-run",
            missing_policies.iter().map(|name| name.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    let verb = if options.dry_run { "dry-run" } else { "apply" };
    let mut steps = vec![step(
        format!("{verb} the namespace {namespace} (Pod Security restricted, policy-controller's label)"),
        apply,
        Input::Manifests(rendered.namespace_yaml.clone()),
        "check that the account of this context may manage namespaces (`kubectl auth can-i create namespaces`)".into(),
    )];
    if facts.policy_controller {
        steps.push(step(
            format!("{verb} the ClusterImagePolicies {}", rendered.policies.join(", ")),
            apply,
            Input::Manifests(rendered.policy_yaml.clone()),
            "a cluster administrator may have to apply out/kubernetes/cluster-image-policy.yaml; policy-controller's \
             own errors name the field it refuses"
                .into(),
        ));
    }
    let mut missing = BTreeMap::new();
    for (secret, keys) in &rendered.secrets {
        match facts.secrets.get(secret) {
            None => {
                missing.insert(secret.clone(), keys.clone());
            }
            Some(held) if !keys.is_subset(held) => bail!(
                "the Secret {secret} in {namespace} lacks the keys {} the pods read: add them (`kubectl -n {namespace} \
                 edit secret {secret}`), or delete the Secret to have the deploy generate all of them again (the \
                 database keeps the password it was initialised with)",
                keys.difference(held).cloned().collect::<Vec<_>>().join(", ")
            ),
            Some(_) => {}
        }
    }
    if !missing.is_empty() {
        let create: &[&str] =
            if options.dry_run { &["create", "--dry-run=server", "-f", "-"] } else { &["create", "-f", "-"] };
        steps.push(step(
            format!(
                "{} the Secrets {} (random values, made once; later deploys keep them)",
                if options.dry_run { "dry-run" } else { "create" },
                missing.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
            create,
            Input::NewSecrets { namespace: namespace.clone(), secrets: missing },
            format!("check that the account may create secrets in {namespace} (`kubectl auth can-i create secrets -n {namespace}`)"),
        ));
    }
    steps.push(step(
        format!("dry-run the workloads in {namespace} (Pod Security, admission webhooks; a warning fails)"),
        server_dry_run,
        Input::Manifests(rendered.workloads_yaml.clone()),
        "the messages above name the object and the field; a `violates PodSecurity` or policy-controller's `failed \
         policy` names the image"
            .into(),
    ));
    if options.dry_run {
        return Ok(steps);
    }
    steps.push(step(
        format!("apply the workloads in {namespace}"),
        apply,
        Input::Manifests(rendered.workloads_yaml.clone()),
        "the dry run passed, so this is the cluster's state (quota, a conflict with another field manager)".into(),
    ));
    for deployment in &rendered.deployments {
        let timeout = format!("--timeout={}", options.timeout);
        let target = format!("deployment/{deployment}");
        steps.push(step(
            format!("wait for the rollout of {target}"),
            &["rollout", "status", &target, "--namespace", namespace, &timeout],
            Input::Nothing,
            format!(
                "see why: `kubectl -n {namespace} describe {target}` and `kubectl -n {namespace} logs {target}` (an \
                 image policy-controller denied shows in `kubectl -n {namespace} get events`)"
            ),
        ));
    }
    Ok(steps)
}

/// Where everything answers, for people. Secret values are never printed: where they are kept is.
fn print(kubectl: &Kubectl, prepared: &Prepared, facts: &Facts, dry_run: bool) -> Result<()> {
    let rendered = &prepared.rendered;
    let context = match &kubectl.context {
        Some(context) => context.clone(),
        None => kubectl.read(&["config", "current-context"]).unwrap_or_else(|_| "(kubectl's default)".to_owned()),
    };
    let namespace = &rendered.namespace;
    println!(
        "{} to Kubernetes: context {context}, namespace {namespace}",
        if dry_run { "dry run passed" } else { "deployed" }
    );
    for image in &prepared.images {
        let evidence = if image.released { "signature, SBOM, provenance" } else { "signature (a companion)" };
        println!("  {:<16}{} (verified: {evidence})", image.name, image.verified.pinned);
    }
    let policy = if facts.policy_controller {
        format!("{} (out/kubernetes/cluster-image-policy.yaml)", rendered.policies.join(", "))
    } else {
        "none: policy-controller is not installed (rendered to out/kubernetes/cluster-image-policy.yaml)".to_owned()
    };
    println!("  {:<16}{policy}", "admission");
    for (secret, keys) in &rendered.secrets {
        let keys = keys.iter().cloned().collect::<Vec<_>>().join(", ");
        println!("  {:<16}{secret} ({keys}): generated once, kept in the cluster only", "secret");
    }
    if dry_run {
        return Ok(());
    }
    let prefix = kubectl.context.as_deref().map_or(String::new(), |context| format!("--context {context} "));
    for (service, ports) in &rendered.services {
        for port in ports {
            println!("  {service:<16}in the cluster: {service}.{namespace}.svc:{port}");
            println!(
                "  {:<16}from here: kubectl {prefix}-n {namespace} port-forward service/{service} {port}:{port}",
                ""
            );
        }
    }
    Ok(())
}

mod kubectl;
#[cfg(test)]
mod tests;
