//! `cargo xtask verify`: the check a deploy step runs before it starts an image.
//!
//! The reference is resolved to a digest once, and everything is checked on that digest: the signature, the SBOM
//! attestation, the SLSA provenance (its subject, its build type, its commit against the image's own revision label
//! and against `--source-revision`, its repository against `--source-repository`), and a VEX attestation when there
//! is one (its statements must be about this image). Every missing or failing piece is named; leaving the SBOM or the
//! provenance out takes a flag.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use crate::context::Context;
use crate::cosign::{self, Tlog, TlogArgs};
use crate::platform::Platform;
use crate::provenance::{self, Summary};
use crate::registry::{self, Reference};
use crate::signing::{Identity, Verifier};

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// HOST[:PORT]/NAMESPACE/NAME:TAG (resolved to its digest now) or HOST[:PORT]/NAMESPACE/NAME@sha256:DIGEST.
    pub image: String,
    #[command(flatten)]
    pub trust: TrustArgs,
    #[command(flatten)]
    pub require: RequireArgs,
}

/// Who an image must be signed by.
#[derive(clap::Args, Debug, Default)]
pub struct TrustArgs {
    /// Public key the image must be signed with (cosign.pub).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Keyless: the signer's certificate identity, e.g.
    /// https://github.com/OWNER/REPO/.github/workflows/ci.yml@refs/heads/main
    #[arg(long, conflicts_with = "key")]
    pub certificate_identity: Option<String>,
    /// Keyless: a regular expression the signer's certificate identity must match, e.g.
    /// '^https://github.com/OWNER/REPO/.github/workflows/ci.yml@refs/tags/v[0-9.]+$'
    #[arg(long, conflicts_with_all = ["key", "certificate_identity"])]
    pub certificate_identity_regexp: Option<String>,
    /// Keyless: the OIDC issuer, e.g. https://token.actions.githubusercontent.com
    #[arg(long)]
    pub certificate_oidc_issuer: Option<String>,
    #[command(flatten)]
    pub tlog: TlogArgs,
}

/// What an image must carry besides its signature.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct RequireArgs {
    /// The commit the provenance must name (full SHA).
    #[arg(long, value_name = "SHA")]
    pub source_revision: Option<String>,
    /// The repository the provenance must name.
    #[arg(long, value_name = "URL")]
    pub source_repository: Option<String>,
    /// Accept an image without an SBOM attestation.
    #[arg(long)]
    pub without_sbom: bool,
    /// Accept an image without a provenance attestation.
    #[arg(long)]
    pub without_provenance: bool,
    /// For an image index: the platform to check (default: linux/amd64); the index's own signature and provenance
    /// are checked too.
    #[arg(long, value_name = "PLATFORM", conflicts_with = "all_platforms")]
    pub platform: Option<Platform>,
    /// For an image index: check every platform it holds.
    #[arg(long)]
    pub all_platforms: bool,
}

/// What `verify` established about an image.
#[derive(Debug)]
pub struct Verified {
    pub pinned: String,
    pub digest: String,
    /// What the provenance says, when there is one.
    pub provenance: Option<Summary>,
    pub sbom: bool,
    /// How many VEX statements about this image are attached.
    pub vex_statements: usize,
    /// For an image index: what was verified of each platform checked.
    pub platforms: Vec<(String, Verified)>,
}

impl TrustArgs {
    /// The verifier and transparency-log mode these flags ask for.
    pub fn verifier(&self) -> Result<(Verifier, Tlog)> {
        let issuer =
            || self.certificate_oidc_issuer.clone().context("keyless verification needs --certificate-oidc-issuer");
        let verifier = match (&self.key, &self.certificate_identity, &self.certificate_identity_regexp) {
            (Some(key), _, _) if !key.is_file() => {
                bail!("the public key {} does not exist: pass the cosign.pub the images were signed for", key.display())
            }
            (Some(key), _, _) => Verifier::Key(key.clone()),
            (None, Some(identity), _) => {
                Verifier::Keyless { identity: Identity::Exact(identity.clone()), issuer: issuer()? }
            }
            (None, None, Some(pattern)) => {
                Verifier::Keyless { identity: Identity::Pattern(pattern.clone()), issuer: issuer()? }
            }
            (None, None, None) => bail!(
                "pass --key cosign.pub, or --certificate-identity (or --certificate-identity-regexp) with \
                 --certificate-oidc-issuer"
            ),
        };
        // Keyless signatures are only trustworthy with the log; key-based ones default to the offline convention.
        let tlog = match (self.tlog.choice()?, &verifier) {
            (Some(true), _) | (None, Verifier::Keyless { .. }) => Tlog::Upload,
            _ => Tlog::Offline,
        };
        Ok((verifier, tlog))
    }
}

pub fn run(ctx: &Context, args: &VerifyArgs) -> Result<()> {
    let (verifier, tlog) = args.trust.verifier()?;
    let reference = Reference::parse(&args.image)?;
    let verified = image(&cosign::cosign(ctx)?, &reference, &verifier, tlog, &args.require)?;
    eprintln!("xtask: {}", tlog.describe());
    print(&verified, &verifier);
    Ok(())
}

/// What was verified, for people.
pub fn print(verified: &Verified, verifier: &Verifier) {
    println!("verified {}", verified.pinned);
    println!("  digest     {}", verified.digest);
    println!("  signed by  {}", verifier.describe());
    if let Some(provenance) = &verified.provenance {
        println!("  source     {} at {}", provenance.repository, provenance.revision);
        println!("  builder    {}", provenance.builder);
    }
    let mut pieces = vec!["signature"];
    pieces.extend(verified.sbom.then_some("SBOM (CycloneDX)"));
    pieces.extend(verified.provenance.as_ref().map(|_| "provenance (SLSA v1)"));
    let vex = format!("VEX ({} statements)", verified.vex_statements);
    pieces.extend((verified.vex_statements > 0).then_some(vex.as_str()));
    println!("  verified   {}", pieces.join(", "));
    for (platform, of_platform) in &verified.platforms {
        let mut pieces = vec!["signature"];
        pieces.extend(of_platform.sbom.then_some("SBOM"));
        pieces.extend(of_platform.provenance.as_ref().map(|_| "provenance"));
        let vex = format!("VEX ({})", of_platform.vex_statements);
        pieces.extend((of_platform.vex_statements > 0).then_some(vex.as_str()));
        println!("  {platform:<10} {}: {}", of_platform.digest, pieces.join(", "));
    }
}

/// Resolves the reference to a digest once, then checks everything on that digest, so that a tag moved meanwhile
/// cannot slip another image in between the checks. An image index is checked as a whole (its signature, its
/// provenance naming each platform's manifest), then the platform asked for, or every one.
pub fn image(
    cosign: &Path,
    reference: &Reference,
    verifier: &Verifier,
    tlog: Tlog,
    require: &RequireArgs,
) -> Result<Verified> {
    let digest = registry::resolve_digest(reference)?;
    if reference.digest.is_none() {
        eprintln!("xtask: {reference} resolves to {digest}");
    }
    let Some(manifests) = registry::platform_manifests(reference, &digest)? else {
        return manifest(cosign, reference, &digest, verifier, tlog, require, Evidence::Image);
    };
    let pinned = reference.pinned(&digest);
    let wanted: Vec<&(String, String)> = if require.all_platforms {
        manifests.iter().collect()
    } else {
        let platform = require.platform.unwrap_or(Platform::Amd64).docker();
        let found = manifests.iter().find(|(of, _)| *of == platform).with_context(|| {
            let held: Vec<&str> = manifests.iter().map(|(platform, _)| platform.as_str()).collect();
            format!("the image index {pinned} holds no {platform} image (it holds {})", held.join(", "))
        })?;
        vec![found]
    };
    let mut verified = manifest(cosign, reference, &digest, verifier, tlog, require, Evidence::Index(&manifests))
        .with_context(|| format!("the image index {pinned}"))?;
    for (platform, digest) in wanted {
        let of_platform = manifest(cosign, reference, digest, verifier, tlog, require, Evidence::Image)
            .with_context(|| format!("the {platform} image of {pinned}"))?;
        verified.sbom |= of_platform.sbom;
        verified.vex_statements += of_platform.vex_statements;
        verified.platforms.push((platform.clone(), of_platform));
    }
    Ok(verified)
}

/// What an image or an index must carry besides its signature.
#[derive(Clone, Copy)]
enum Evidence<'a> {
    /// An image: an SBOM, a provenance about it, maybe VEX.
    Image,
    /// An image index of these platform manifests: an SBOM and a provenance that name exactly them.
    Index(&'a [(String, String)]),
}

/// Checks one digest: its signature, then its attestations.
fn manifest(
    cosign: &Path,
    reference: &Reference,
    digest: &str,
    verifier: &Verifier,
    tlog: Tlog,
    require: &RequireArgs,
    evidence: Evidence,
) -> Result<Verified> {
    let digest = digest.to_owned();
    let pinned = reference.pinned(&digest);
    let signed = verifier.verify_signature(cosign, &pinned, tlog)?;
    if signed != digest {
        bail!("the signature of {pinned} names digest {signed}, not {digest}");
    }
    let mut problems = Vec::new();
    let mut verified = Verified {
        pinned: pinned.clone(),
        digest: digest.clone(),
        provenance: None,
        sbom: false,
        vex_statements: 0,
        platforms: Vec::new(),
    };

    // Present: it must verify. Absent: a problem unless the caller said it may be.
    let attested = |predicate: &str| -> Result<Option<Vec<serde_json::Value>>> {
        if !cosign::has_attestation(cosign, &pinned, predicate)? {
            return Ok(None);
        }
        verifier.verify_attestation(cosign, &pinned, predicate, tlog).map(Some)
    };
    match attested(cosign::SBOM_PREDICATE) {
        Ok(Some(statements)) => match check_sbom(&statements, evidence) {
            Ok(()) => verified.sbom = true,
            Err(error) => problems.push(format!("{error:#}")),
        },
        Ok(None) if require.without_sbom => {}
        Ok(None) => {
            problems.push("no SBOM attestation (CycloneDX) is attached (--without-sbom accepts that)".to_owned())
        }
        Err(error) => problems.push(format!("its SBOM attestation does not verify: {error:#}")),
    }
    match attested(provenance::COSIGN_TYPE) {
        Ok(Some(statements)) => match check_provenance(reference, &digest, &statements, require, evidence) {
            Ok(summary) => verified.provenance = Some(summary),
            Err(error) => problems.push(format!("{error:#}")),
        },
        Ok(None) if require.without_provenance => {}
        Ok(None) => problems
            .push("no provenance attestation (SLSA v1) is attached (--without-provenance accepts that)".to_owned()),
        Err(error) => problems.push(format!("its provenance attestation does not verify: {error:#}")),
    }
    match attested(crate::vex::COSIGN_TYPE) {
        Ok(Some(statements)) => {
            let repository = format!("{}/{}", reference.registry, reference.repository);
            for statement in &statements {
                match crate::vex::check_products(&statement["predicate"], &repository, &digest) {
                    Ok(count) => verified.vex_statements += count,
                    Err(error) => problems.push(format!("its VEX attestation: {error:#}")),
                }
            }
        }
        Ok(None) => {}
        Err(error) => problems.push(format!("its VEX attestation does not verify: {error:#}")),
    }
    if !problems.is_empty() {
        bail!("{pinned} is signed, but:\n  - {}", problems.join("\n  - "));
    }
    Ok(verified)
}

/// An image's SBOM is syft's account of its contents; an index's must name exactly the platform images it holds (what
/// `release` attests to an index, for admission controllers that check only the digest a pod names).
fn check_sbom(statements: &[serde_json::Value], evidence: Evidence) -> Result<()> {
    let Evidence::Index(manifests) = evidence else { return Ok(()) };
    let mut held = manifests.to_vec();
    held.sort();
    for statement in statements {
        let named = crate::index_sbom::platform_images(&statement["predicate"]);
        if named != held {
            bail!("its SBOM names the platform images {named:?}, but the index holds {held:?}");
        }
    }
    Ok(())
}

/// The provenance must be this pipeline's, about this digest, naming the commit the image's own label names (and
/// the one and the repository the caller asks for).
fn check_provenance(
    reference: &Reference,
    digest: &str,
    statements: &[serde_json::Value],
    require: &RequireArgs,
    evidence: Evidence,
) -> Result<Summary> {
    let [statement] = statements else {
        bail!("{} provenance attestations are attached, not one", statements.len());
    };
    let summary = Summary::of_statement(statement).context("its provenance is not this pipeline's")?;
    if !summary.subject_digests.iter().any(|subject| subject == digest) {
        bail!("its provenance is about {}, not about {digest}", summary.subject_digests.join(", "));
    }
    if summary.build_type != provenance::BUILD_TYPE {
        bail!("its provenance has the build type {}, not {}", summary.build_type, provenance::BUILD_TYPE);
    }
    let name = reference.repository.rsplit('/').next().unwrap_or_default();
    if summary.image != name {
        bail!("its provenance describes the image {}, not {name}", summary.image);
    }
    match evidence {
        Evidence::Image => {
            let config = registry::fetch_config(&Reference::parse(&reference.pinned(digest))?)?;
            let label =
                config.pointer("/config/Labels/org.opencontainers.image.revision").and_then(|value| value.as_str());
            if label != Some(summary.revision.as_str()) {
                bail!(
                    "its provenance names commit {}, but the image says it was built from {}",
                    summary.revision,
                    label.unwrap_or("no commit (no org.opencontainers.image.revision label)")
                );
            }
        }
        Evidence::Index(manifests) => {
            let mut named = summary.platform_manifests.clone();
            let mut held = manifests.to_vec();
            named.sort();
            held.sort();
            if named != held {
                bail!("its provenance names the platform images {named:?}, but the index holds {held:?}");
            }
        }
    }
    if let Some(wanted) = &require.source_revision {
        if &summary.revision != wanted {
            bail!("its provenance names commit {}, not {wanted} (--source-revision)", summary.revision);
        }
    }
    if let Some(wanted) = &require.source_repository {
        if &summary.repository != wanted {
            bail!("its provenance names the repository {}, not {wanted} (--source-repository)", summary.repository);
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_sbom_must_name_exactly_the_platform_images_of_the_index() {
        let (amd64, arm64) = (format!("sha256:{}", "a".repeat(64)), format!("sha256:{}", "b".repeat(64)));
        let held = [("linux/arm64".to_owned(), arm64.clone()), ("linux/amd64".to_owned(), amd64.clone())];
        let statement = |platforms: &[(String, String)]| serde_json::json!({ "predicate": crate::index_sbom::document("r/app", "app", platforms, "t") });
        check_sbom(&[statement(&held)], Evidence::Index(&held)).unwrap();
        let other = [("linux/amd64".to_owned(), amd64), ("linux/arm64".to_owned(), "sha256:0".into())];
        let error = check_sbom(&[statement(&held), statement(&other)], Evidence::Index(&held)).unwrap_err();
        assert!(error.to_string().contains("its SBOM names the platform images"), "{error}");
        // An image's own SBOM (syft's) is about its contents, not about platforms.
        check_sbom(&[serde_json::json!({ "predicate": { "bomFormat": "CycloneDX" } })], Evidence::Image).unwrap();
    }
}
