//! The admission policy: `deploy/kubernetes/admission/cluster-image-policy.yaml`, a template of ClusterImagePolicies
//! for sigstore's policy-controller, rendered from the same trust `verify` takes (`--key cosign.pub`, or the keyless
//! `--certificate-identity(-regexp)` with `--certificate-oidc-issuer`, and `--tlog`), so that the cluster admits what
//! `verify` passes: a signature on every image, and on a released one an SBOM and a provenance of this repository.

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};

use crate::context::Context;
use crate::cosign::Tlog;
use crate::signing::{Identity, Verifier};

/// The template, relative to the workspace root.
pub const TEMPLATE: &str = "deploy/kubernetes/admission/cluster-image-policy.yaml";

/// The public Sigstore instance a keyless signature comes from (cosign's defaults), and its transparency log.
const FULCIO_URL: &str = "https://fulcio.sigstore.dev";
const REKOR_URL: &str = "https://rekor.sigstore.dev";

/// Which images the policies are about, and what the provenance of a released one must name.
#[derive(Debug, Clone)]
pub struct Scope {
    /// Released images, `HOST[:PORT]/NAMESPACE/NAME`: a signature, an SBOM and a provenance.
    pub released: Vec<String>,
    /// Companions (`images/postgres`), `HOST[:PORT]/NAMESPACE/NAME`: a signature only.
    pub companions: Vec<String>,
    /// The repository the provenance must name: verify's `--source-repository`, else this checkout's.
    pub source_repository: String,
}

/// Renders the template of this workspace ([`TEMPLATE`]): see [`render`].
pub fn render_file(ctx: &Context, verifier: &Verifier, tlog: Tlog, scope: &Scope) -> Result<Vec<Value>> {
    let path = ctx.root.join(TEMPLATE);
    let template = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    render(&template, verifier, tlog, scope).with_context(|| format!("rendering the admission policy {TEMPLATE}"))
}

/// The ClusterImagePolicies of `template` with its placeholders filled: `@SIGNED_IMAGES@` and `@RELEASED_IMAGES@`
/// (a glob list each), the `key: {data: "@TRUST@"}` of every authority (by the trust of `verifier` and `tlog`),
/// `@BUILD_TYPE@` and `@SOURCE_REPOSITORY@` (as string literals, in the Rego of an attestation). Fails on a
/// placeholder left over.
pub fn render(template: &str, verifier: &Verifier, tlog: Tlog, scope: &Scope) -> Result<Vec<Value>> {
    let trust = trust(verifier, tlog)?;
    let signed: Vec<&String> = scope.released.iter().chain(&scope.companions).collect();
    let literal = |text: &str| Value::from(text).to_string();
    let replacements = [
        ("@BUILD_TYPE@", literal(crate::provenance::BUILD_TYPE)),
        ("@SOURCE_REPOSITORY@", literal(&scope.source_repository)),
    ];
    let mut policies = super::parse_documents(template)?;
    for policy in &mut policies {
        let spec = &mut policy["spec"];
        match spec["images"][0]["glob"].as_str() {
            Some("@SIGNED_IMAGES@") => spec["images"] = globs(&signed),
            Some("@RELEASED_IMAGES@") => spec["images"] = globs(&scope.released.iter().collect::<Vec<_>>()),
            _ => {}
        }
        for authority in spec["authorities"].as_array_mut().into_iter().flatten() {
            let Some(fields) = authority.as_object_mut() else { continue };
            if fields.get("key").and_then(|key| key["data"].as_str()) == Some("@TRUST@") {
                fields.remove("key");
                fields.extend(trust.clone());
            }
            for attestation in fields.get_mut("attestations").and_then(Value::as_array_mut).into_iter().flatten() {
                if let Some(Value::String(data)) = attestation.pointer_mut("/policy/data") {
                    for (placeholder, value) in &replacements {
                        *data = data.replace(placeholder, value);
                    }
                }
            }
        }
    }
    let rendered = serde_json::to_string(&policies)?;
    let leftovers: Vec<&str> =
        ["@SIGNED_IMAGES@", "@RELEASED_IMAGES@", "@TRUST@", "@BUILD_TYPE@", "@SOURCE_REPOSITORY@"]
            .into_iter()
            .filter(|placeholder| rendered.contains(placeholder))
            .collect();
    if !leftovers.is_empty() {
        bail!(
            "placeholders are left after rendering: {} (where the renderer does not expect them)",
            leftovers.join(", ")
        );
    }
    if scope.released.is_empty() {
        bail!("no released image to write a policy for");
    }
    Ok(policies)
}

/// Both forms a pod may name an image in: by digest (`REPOSITORY@sha256:...`) and by tag (`REPOSITORY:TAG`, which
/// policy-controller resolves to its digest). Nothing else matches: a sibling repository falls to the no-match policy.
fn globs(repositories: &[&String]) -> Value {
    repositories
        .iter()
        .flat_map(|repository| ["@", ":"].map(|mark| json!({ "glob": format!("{repository}{mark}**") })))
        .collect()
}

/// The fields of an authority that say who must have signed: `key` (the public key's PEM) or `keyless` (the identity
/// and its issuer), and `ctlog` when signatures must be in the transparency log (without it policy-controller checks
/// no log, as `verify` does with `--insecure-ignore-tlog`).
fn trust(verifier: &Verifier, tlog: Tlog) -> Result<serde_json::Map<String, Value>> {
    let mut fields = serde_json::Map::new();
    match verifier {
        Verifier::Key(path) => {
            fields.insert("key".to_owned(), json!({ "data": public_key(path)?, "hashAlgorithm": "sha256" }));
        }
        Verifier::Keyless { identity, issuer } => {
            let identity = match identity {
                Identity::Exact(subject) => json!({ "issuer": issuer, "subject": subject }),
                Identity::Pattern(pattern) => json!({ "issuer": issuer, "subjectRegExp": pattern }),
            };
            fields.insert("keyless".to_owned(), json!({ "url": FULCIO_URL, "identities": [identity] }));
        }
    }
    if tlog == Tlog::Upload {
        fields.insert("ctlog".to_owned(), json!({ "url": REKOR_URL }));
    }
    Ok(fields)
}

/// The PEM of a cosign public key, checked to be one: a private key here would be published in the cluster.
fn public_key(path: &Path) -> Result<String> {
    let pem = std::fs::read_to_string(path).with_context(|| format!("reading the public key {}", path.display()))?;
    let pem = pem.trim();
    if !pem.starts_with("-----BEGIN PUBLIC KEY-----") || !pem.ends_with("-----END PUBLIC KEY-----") {
        bail!(
            "{} is not a PEM public key (-----BEGIN PUBLIC KEY-----): pass the cosign.pub the images were signed for",
            path.display()
        );
    }
    Ok(format!("{pem}\n"))
}
