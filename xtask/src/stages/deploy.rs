//! `cargo xtask deploy`: runs only what was verified.
//!
//! The image is verified exactly as `cargo xtask verify` does it (the same function: signature, SBOM, SLSA provenance
//! and VEX on one digest), then that digest, never a tag, is pulled and run hardened, with the companions its settings
//! name (the project's local builds) beside it on a private network, a password generated for this deploy, until it
//! answers its health endpoint on 127.0.0.1. Nothing is pulled, built or started for an image that does not verify.
//! The containers outlive the xtask; `cargo xtask deploy --stop NAME` removes them.

use anyhow::{bail, Context as _, Result};
use xshell::cmd;

use super::verify::{self, RequireArgs, TrustArgs, Verified};
use crate::context::Context;
use crate::cosign;
use crate::registry::{self, Reference};
use crate::running::{self, Group, Launch, Running};

/// Label on every container and network of a deployment: `distroless-python.deploy=<name>`. Not the label
/// `stack::sweep` removes: a deployment is meant to outlive the process that made it.
pub const LABEL: &str = "distroless-python.deploy";

#[derive(clap::Args, Debug, Default)]
pub struct DeployArgs {
    /// HOST[:PORT]/NAMESPACE/NAME:TAG (resolved to its digest once) or HOST[:PORT]/NAMESPACE/NAME@sha256:DIGEST.
    /// NAME picks the settings: images/NAME/image.toml (port, health, environment, companions).
    #[arg(required_unless_present_any = ["stop", "kubernetes"])]
    pub image: Option<String>,
    #[command(flatten)]
    pub trust: TrustArgs,
    #[command(flatten)]
    pub require: RequireArgs,
    /// Deploy WITHOUT checking signature, SBOM or provenance (a warning says so): whoever can push to the registry
    /// decides what runs.
    #[arg(long, conflicts_with_all = ["key", "certificate_identity", "certificate_identity_regexp"])]
    pub no_verify: bool,
    /// The deployment's name: its app container's, its network's and its label's (default: the image's NAME).
    #[arg(long)]
    pub name: Option<String>,
    /// The port on 127.0.0.1 the app is published on (default: a free one).
    #[arg(long)]
    pub port: Option<u16>,
    /// Stop and remove the deployment NAME (its containers and its network) instead of deploying.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["image", "no_verify", "name", "port"])]
    pub stop: Option<String>,
    #[command(flatten)]
    pub kubernetes: super::deploy_kubernetes::KubernetesArgs,
}

/// What a deploy started.
#[derive(Debug)]
pub struct Deployment {
    /// `HOST[:PORT]/NAMESPACE/NAME@sha256:...`: what runs.
    pub pinned: String,
    /// `None` with `--no-verify`.
    pub verified: Option<Verified>,
    pub running: Running,
}

pub fn run(ctx: &Context, args: &DeployArgs) -> Result<()> {
    if args.kubernetes.kubernetes {
        return super::deploy_kubernetes::run(ctx, &args.trust, &args.require, &args.kubernetes);
    }
    if let Some(name) = &args.stop {
        let (containers, networks) = stop(ctx, name)?;
        println!("stopped {name}: removed containers {} and network {}", containers.join(", "), networks.join(", "));
        return Ok(());
    }
    print(&deploy(ctx, args)?);
    Ok(())
}

/// Verifies the image (unless told not to), then pulls and starts exactly the verified digest; returns once it is
/// healthy.
pub fn deploy(ctx: &Context, args: &DeployArgs) -> Result<Deployment> {
    let text = args.image.as_deref().context("name the image to deploy (HOST[:PORT]/NAMESPACE/NAME@sha256:...)")?;
    let reference = Reference::parse(text)?;
    // The settings first: a reference to no image of this project fails before anything reaches the network.
    let settings_name = settings_name(&reference);
    let image = ctx.image(settings_name).with_context(|| {
        format!(
            "deploying {text}: its port, health endpoint and companions come from images/{settings_name}/image.toml"
        )
    })?;
    image.health().with_context(|| format!("deploying {text}: a deploy waits until the app is healthy"))?;
    let name = args.name.clone().unwrap_or_else(|| image.name.clone());
    check_name(&name)?;
    ctx.engine()?;
    let label = format!("{LABEL}={name}");
    let (containers, _) = running::listed(ctx, &label)?;
    if !containers.is_empty() {
        bail!(
            "a deployment named {name} exists already (containers {}): stop it first with `cargo xtask deploy \
             --stop {name}`, or give this one another --name",
            containers.join(", ")
        );
    }

    let (pinned, verified) = verify_or_warn(ctx, args, &reference)?;
    let companions: Vec<String> = image.settings.needs.iter().map(|need| need.image.clone()).collect();
    super::up::ensure_built(ctx, &companions)?;
    pull(ctx, &pinned, &reference.registry)?;
    // Said before anything starts: a deploy interrupted half-way is removed the same way.
    eprintln!("xtask: starting {pinned} as {name} (`cargo xtask deploy --stop {name}` removes it)");
    let group = Group { label, name, restart: Some("unless-stopped") };
    let running = running::start(ctx, &group, &Launch { image, reference: &pinned, host_port: args.port })
        .with_context(|| format!("deploying {pinned} as {}: nothing of it is left running", group.name))?;
    Ok(Deployment { pinned, verified, running })
}

/// The digest to run: the one `verify` checked (the same function, so a deploy requires what `verify` requires), or
/// with `--no-verify` the one the reference names now, after a warning.
fn verify_or_warn(ctx: &Context, args: &DeployArgs, reference: &Reference) -> Result<(String, Option<Verified>)> {
    if args.no_verify {
        let pinned = reference.pinned(&registry::resolve_digest(reference)?);
        eprintln!("WARNING: --no-verify: deploying {pinned} WITHOUT checking its signature, SBOM or provenance.");
        eprintln!("WARNING: whoever can push to {} decides what runs here.", reference.registry);
        return Ok((pinned, None));
    }
    let (verifier, tlog) = args.trust.verifier()?;
    let verified = verify::image(&cosign::cosign(ctx)?, reference, &verifier, tlog, &args.require)
        .with_context(|| format!("deploying {reference}: it did not verify, so nothing was pulled or started"))?;
    eprintln!("xtask: {}", tlog.describe());
    verify::print(&verified, &verifier);
    // Of an image index, the platform image that was verified: the engine would otherwise pick its own platform.
    let pinned = match verified.platforms.first() {
        Some((_, platform)) => platform.pinned.clone(),
        None => verified.pinned.clone(),
    };
    Ok((pinned, Some(verified)))
}

/// Pulls by digest: the engine checks every blob against it, so what runs is byte for byte what was verified.
fn pull(ctx: &Context, pinned: &str, registry: &str) -> Result<()> {
    eprintln!("xtask: pulling {pinned}");
    let sh = &ctx.sh;
    cmd!(sh, "docker pull --quiet {pinned}").quiet().ignore_stdout().run().with_context(|| {
        format!(
            "pulling {pinned}: can the engine reach {registry}? (an engine pulls over plain HTTP only from \
             127.0.0.0/8 and its `insecure-registries`; a registry that wants a login needs `docker login {registry}`)"
        )
    })?;
    Ok(())
}

/// Removes every container and the network of the deployment; returns their names.
pub fn stop(ctx: &Context, name: &str) -> Result<(Vec<String>, Vec<String>)> {
    check_name(name)?;
    ctx.engine()?;
    let removed = running::remove(ctx, &format!("{LABEL}={name}"))?;
    if removed.0.is_empty() && removed.1.is_empty() {
        bail!(
            "no deployment is named {name}: `docker ps --filter label={LABEL} --format '{{{{.Label \"{LABEL}\"}}}}'` \
             lists the deployments"
        );
    }
    Ok(removed)
}

/// The image folder whose settings apply: the reference's last path segment (`fake-shop` of
/// `ghcr.io/owner/fake-shop@sha256:...`).
fn settings_name(reference: &Reference) -> &str {
    reference.repository.rsplit('/').next().unwrap_or(&reference.repository)
}

/// A name docker accepts for a container and a network.
fn check_name(name: &str) -> Result<()> {
    let valid = name.chars().next().is_some_and(|first| first.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !valid {
        bail!(
            "`{name}` cannot name a deployment: use letters, digits, `_`, `.` and `-`, starting with a letter or digit"
        );
    }
    Ok(())
}

/// Where it answers and how to stop it, for people. The password is never printed: where it is kept is.
pub fn print(deployment: &Deployment) {
    let running = &deployment.running;
    let name = &running.name;
    println!("deployed {name}");
    println!("  image       {}", deployment.pinned);
    if deployment.verified.is_none() {
        println!("  verified    NOTHING (--no-verify)");
    }
    println!("  url         {}/", running.url);
    println!("  health      {} (healthy after {:.2}s)", running.health_url, running.healthy_after.as_secs_f64());
    println!("  containers  {} (network {name}, label {LABEL}={name})", running.containers.join(", "));
    if let Some((_, container)) = running.secrets.first() {
        let variables: Vec<String> =
            running.secrets.iter().map(|(variable, container)| format!("{variable} ({container})")).collect();
        println!("  secrets     generated for this deploy, kept in the containers only: {}", variables.join(", "));
        println!("              to read them: docker inspect --format '{{{{json .Config.Env}}}}' {container}");
    }
    println!("  stop        cargo xtask deploy --stop {name}");
    println!("              (or: docker rm --force {} && docker network rm {name})", running.containers.join(" "));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_come_from_the_last_path_segment_and_names_are_checked() {
        let reference = Reference::parse(&format!("127.0.0.1:5000/team/sub/fake-shop@sha256:{}", "a".repeat(64)));
        assert_eq!(settings_name(&reference.unwrap()), "fake-shop");
        assert!(check_name("fake-shop.v2_a").is_ok());
        for bad in ["", "-x", "a b", "a/b", "ä"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
