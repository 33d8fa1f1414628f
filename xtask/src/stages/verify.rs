//! `cargo xtask verify`: the check a deploy step runs before it starts an image.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use crate::context::Context;
use crate::cosign::{self, Tlog, TlogArgs};
use crate::registry::{self, Reference};
use crate::signing::Verifier;

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// HOST[:PORT]/NAMESPACE/NAME:TAG (resolved to its digest now) or HOST[:PORT]/NAMESPACE/NAME@sha256:DIGEST.
    image: String,
    /// Public key the image must be signed with (cosign.pub).
    #[arg(long, value_name = "FILE", required_unless_present = "certificate_identity")]
    key: Option<PathBuf>,
    /// Keyless: the signer's certificate identity, e.g.
    /// https://github.com/OWNER/REPO/.github/workflows/release.yml@refs/heads/main
    #[arg(long, requires = "certificate_oidc_issuer", conflicts_with = "key")]
    certificate_identity: Option<String>,
    /// Keyless: the OIDC issuer, e.g. https://token.actions.githubusercontent.com
    #[arg(long, requires = "certificate_identity")]
    certificate_oidc_issuer: Option<String>,
    #[command(flatten)]
    tlog: TlogArgs,
}

/// What `verify` established about an image.
#[derive(Debug)]
pub struct Verified {
    pub pinned: String,
    pub sbom_attestation: bool,
}

pub fn run(ctx: &Context, args: &VerifyArgs) -> Result<()> {
    let verifier = match (&args.key, &args.certificate_identity, &args.certificate_oidc_issuer) {
        (Some(key), _, _) => {
            if !key.is_file() {
                bail!(
                    "the public key {} does not exist: pass the cosign.pub the images were signed for",
                    key.display()
                );
            }
            Verifier::Key(key.clone())
        }
        (None, Some(identity), Some(issuer)) => {
            Verifier::Keyless { identity: identity.clone(), issuer: issuer.clone() }
        }
        _ => bail!("pass --key cosign.pub, or --certificate-identity with --certificate-oidc-issuer"),
    };
    // Keyless signatures are only trustworthy with the log; key-based ones default to the offline convention.
    let tlog = match (args.tlog.choice()?, &verifier) {
        (Some(true), _) | (None, Verifier::Keyless { .. }) => Tlog::Upload,
        _ => Tlog::Offline,
    };
    let reference = Reference::parse(&args.image)?;
    let verified = image(&cosign::cosign(ctx)?, &reference, &verifier, tlog)?;
    eprintln!("xtask: {}", tlog.describe());
    let sbom =
        if verified.sbom_attestation { "signed SBOM attestation verified" } else { "no SBOM attestation attached" };
    println!("verified {} ({sbom})", verified.pinned);
    Ok(())
}

/// Resolves the reference to a digest once, then checks everything on that digest, so that a tag moved meanwhile
/// cannot slip another image in between the checks.
pub fn image(cosign: &Path, reference: &Reference, verifier: &Verifier, tlog: Tlog) -> Result<Verified> {
    let digest = registry::resolve_digest(reference)?;
    let pinned = reference.pinned(&digest);
    if reference.digest.is_none() {
        eprintln!("xtask: {reference} resolves to {digest}");
    }
    let signed = verifier.verify_signature(cosign, &pinned, tlog)?;
    if signed != digest {
        bail!("the signature of {pinned} names digest {signed}, not {digest}");
    }
    let sbom_attestation = cosign::has_attestation(cosign, &pinned, cosign::SBOM_PREDICATE)?;
    if sbom_attestation {
        verifier
            .verify_attestation(cosign, &pinned, cosign::SBOM_PREDICATE, tlog)
            .with_context(|| format!("{pinned} carries an SBOM attestation that does not verify"))?;
    }
    Ok(Verified { pinned, sbom_attestation })
}
