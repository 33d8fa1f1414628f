//! Who signs and who is trusted: a key (file or environment) or the keyless identity of a GitHub workflow, turned
//! into cosign's arguments, and cosign's failures turned into errors that say what to fix.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use crate::cosign::{self, Failure, Secret, Tlog, TlogArgs};

/// The issuer of the OIDC tokens GitHub Actions hands to workflows with `id-token: write`.
const GITHUB_OIDC_ISSUER: &str = "https://token.actions.githubusercontent.com";
/// Where cosign reads the private key from.
#[derive(Debug, Clone)]
pub enum KeySource {
    File(PathBuf),
    /// cosign's `env://NAME` convention: the PEM text is in the environment variable NAME.
    Env {
        variable: String,
        pem: Secret,
    },
}

impl KeySource {
    /// What `--key` says: a path, or `env://NAME`.
    fn argument(&self) -> String {
        match self {
            KeySource::File(path) => path.display().to_string(),
            KeySource::Env { variable, .. } => format!("env://{variable}"),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Signer {
    Key {
        key: KeySource,
        password: Secret,
    },
    /// A short-lived Fulcio certificate for the OIDC identity of the running workflow.
    Keyless {
        identity: String,
        issuer: String,
    },
}

#[derive(Debug, Clone)]
pub enum Verifier {
    Key(PathBuf),
    Keyless { identity: Identity, issuer: String },
}

/// The certificate identity a keyless signature must carry: exactly, or matching a regular expression (every version
/// tag of a release workflow, say).
#[derive(Debug, Clone)]
pub enum Identity {
    Exact(String),
    Pattern(String),
}

#[derive(clap::Args, Debug, Default)]
pub struct SigningArgs {
    /// Private key: a file made by `cosign generate-key-pair`, or env://COSIGN_PRIVATE_KEY; its password comes from
    /// COSIGN_PASSWORD. Without --key: COSIGN_PRIVATE_KEY when set, else keyless signing on GitHub Actions.
    #[arg(long, value_name = "FILE|env://VAR")]
    pub key: Option<String>,
    /// Public key to verify the signatures with (default: derived from the private key).
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
    #[command(flatten)]
    pub tlog: TlogArgs,
}

impl Signer {
    /// The signer the arguments and the environment call for, checked before any work starts.
    pub fn from_args(args: &SigningArgs) -> Result<(Self, Tlog)> {
        let env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let key = match (&args.key, env("COSIGN_PRIVATE_KEY")) {
            (Some(key), _) => Some(key_source(key)?),
            (None, Some(pem)) => Some(KeySource::Env { variable: "COSIGN_PRIVATE_KEY".into(), pem: Secret::new(pem) }),
            (None, None) => None,
        };
        let signer = match key {
            Some(key) => {
                let password = std::env::var("COSIGN_PASSWORD").map_err(|_| {
                    anyhow::anyhow!(
                        "COSIGN_PASSWORD is not set: export the password of the signing key {} in it \
                         (an empty value for a key without a password)",
                        key.argument()
                    )
                })?;
                Signer::Key { key, password: Secret::new(password) }
            }
            None if env("ACTIONS_ID_TOKEN_REQUEST_URL").is_some() => {
                Signer::Keyless { identity: github_workflow_identity()?, issuer: GITHUB_OIDC_ISSUER.to_owned() }
            }
            None => bail!(
                "no signing identity: pass --key cosign.key (password in COSIGN_PASSWORD; create a pair with \
                 `cosign generate-key-pair`), set COSIGN_PRIVATE_KEY, or run on GitHub Actions with \
                 `permissions: id-token: write` for keyless signing"
            ),
        };
        let tlog = match (&signer, args.tlog.choice()?) {
            (Signer::Keyless { .. }, Some(false)) => bail!(
                "keyless signing needs the transparency log: its certificate expires after minutes and only the \
                 log proves it signed in time; drop --tlog=false / XTASK_TLOG=0 or sign with a key"
            ),
            (Signer::Keyless { .. }, _) | (Signer::Key { .. }, Some(true)) => Tlog::Upload,
            (Signer::Key { .. }, _) => Tlog::Offline,
        };
        Ok((signer, tlog))
    }

    /// Signs `pinned` (a reference by digest), storing the signature in its registry.
    pub fn sign(&self, cosign: &Path, pinned: &str, tlog: Tlog) -> Result<()> {
        let mut args = vec!["sign".to_owned(), "--yes".to_owned()];
        args.extend(self.identity_args());
        args.extend(cosign::SIGNING_FORMAT.iter().chain(tlog.sign_flags()).map(|flag| flag.to_string()));
        args.push(pinned.to_owned());
        self.cosign(cosign, &args, Some(pinned)).with_context(|| format!("signing {pinned}"))?;
        Ok(())
    }

    /// Attaches `predicate` (a file) to `pinned` as a signed in-toto attestation of the given type.
    pub fn attest(
        &self,
        cosign: &Path,
        pinned: &str,
        predicate_type: &str,
        predicate: &Path,
        tlog: Tlog,
    ) -> Result<()> {
        let mut args = vec!["attest".to_owned(), "--yes".to_owned()];
        args.extend(self.identity_args());
        args.extend(["--type".to_owned(), predicate_type.to_owned(), "--predicate".to_owned()]);
        args.push(predicate.display().to_string());
        args.extend(cosign::SIGNING_FORMAT.iter().chain(tlog.sign_flags()).map(|flag| flag.to_string()));
        args.push(pinned.to_owned());
        self.cosign(cosign, &args, Some(pinned))
            .with_context(|| format!("attaching the {predicate_type} attestation to {pinned}"))?;
        Ok(())
    }

    /// How to verify what this signer signs: with the workflow identity when keyless; else with the public key
    /// derived from the private key (written to `derived`), or the given one once it is known to match. Deriving
    /// decrypts the key, so a wrong password or a mismatched public key shows here, before any work is done.
    pub fn verifier(&self, cosign: &Path, public_key: Option<&Path>, derived: &Path) -> Result<Verifier> {
        let key = match self {
            Signer::Keyless { identity, issuer } => {
                return Ok(Verifier::Keyless { identity: Identity::Exact(identity.clone()), issuer: issuer.clone() })
            }
            Signer::Key { key, .. } => key,
        };
        if let Some(folder) = derived.parent() {
            std::fs::create_dir_all(folder).with_context(|| format!("creating {}", folder.display()))?;
        }
        let args =
            ["public-key", "--key", &key.argument(), "--outfile", &derived.display().to_string()].map(str::to_owned);
        self.cosign(cosign, &args, None).context("deriving the public key from the signing key")?;
        let Some(public_key) = public_key else { return Ok(Verifier::Key(derived.to_owned())) };
        ensure_key_file(public_key, "public key")?;
        let read = |path: &Path| std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()));
        if read(public_key)?.trim() != read(derived)?.trim() {
            bail!(
                "the public key {} does not belong to the signing key {}: pass the .pub file made with it, or leave \
                 --public-key out to use the derived one",
                public_key.display(),
                key.argument()
            );
        }
        Ok(Verifier::Key(public_key.to_owned()))
    }

    fn identity_args(&self) -> Vec<String> {
        match self {
            Signer::Key { key, .. } => vec!["--key".to_owned(), key.argument()],
            Signer::Keyless { .. } => Vec::new(),
        }
    }

    /// Runs cosign with this signer's secrets; `reference` is the image it works on, if any.
    fn cosign(&self, cosign: &Path, args: &[String], reference: Option<&str>) -> Result<String> {
        let mut secrets = Vec::new();
        if let Signer::Key { key, password } = self {
            secrets.push(("COSIGN_PASSWORD".to_owned(), password.clone()));
            if let KeySource::Env { variable, pem } = key {
                secrets.push((variable.clone(), pem.clone()));
            }
        }
        cosign::run(cosign, args, &secrets).map_err(|failure| match self {
            Signer::Key { key, .. } => explain_for_signing(failure, key, reference),
            Signer::Keyless { .. } => failure.into_error(),
        })
    }
}

fn key_source(argument: &str) -> Result<KeySource> {
    if let Some(variable) = argument.strip_prefix("env://") {
        let pem = std::env::var(variable).ok().filter(|pem| !pem.is_empty()).with_context(|| {
            format!(
                "--key {argument}: the environment variable {variable} is not set (it must hold the PEM private key)"
            )
        })?;
        return Ok(KeySource::Env { variable: variable.to_owned(), pem: Secret::new(pem) });
    }
    let path = PathBuf::from(argument);
    ensure_key_file(&path, "signing key")?;
    Ok(KeySource::File(path))
}

fn ensure_key_file(path: &Path, what: &str) -> Result<()> {
    if !path.is_file() {
        bail!(
            "the {what} {} does not exist: pass the right file (a pair is made with `cosign generate-key-pair`)",
            path.display()
        );
    }
    Ok(())
}

/// The certificate identity GitHub Actions gives a workflow run: `https://github.com/OWNER/REPO/.github/workflows/FILE@REF`.
fn github_workflow_identity() -> Result<String> {
    let server = std::env::var("GITHUB_SERVER_URL").unwrap_or_else(|_| "https://github.com".to_owned());
    let workflow = std::env::var("GITHUB_WORKFLOW_REF")
        .context("GITHUB_WORKFLOW_REF is not set: keyless signing runs inside a GitHub Actions workflow")?;
    Ok(format!("{server}/{workflow}"))
}

impl Verifier {
    /// Checks the signature of `pinned` (a reference by digest) and returns the digest cosign vouched for.
    pub fn verify_signature(&self, cosign: &Path, pinned: &str, tlog: Tlog) -> Result<String> {
        let mut args = vec!["verify".to_owned()];
        args.extend(self.identity_args());
        args.extend(tlog.verify_flags().iter().map(|flag| flag.to_string()));
        args.push(pinned.to_owned());
        let output = cosign::run(cosign, &args, &[])
            .map_err(|failure| explain_for_verifying(failure, self, pinned, "signature"))?;
        cosign::signed_digest(&output).with_context(|| format!("reading what cosign verified for {pinned}"))
    }

    /// Checks the attestations of the given predicate type on `pinned` and returns the in-toto statements they carry.
    pub fn verify_attestation(
        &self,
        cosign: &Path,
        pinned: &str,
        predicate_type: &str,
        tlog: Tlog,
    ) -> Result<Vec<serde_json::Value>> {
        let mut args = vec!["verify-attestation".to_owned(), "--type".to_owned(), predicate_type.to_owned()];
        args.extend(self.identity_args());
        args.extend(tlog.verify_flags().iter().map(|flag| flag.to_string()));
        args.push(pinned.to_owned());
        let output = cosign::run(cosign, &args, &[]).map_err(|failure| {
            explain_for_verifying(failure, self, pinned, &format!("{predicate_type} attestation"))
        })?;
        cosign::statements(&output).with_context(|| format!("reading the {predicate_type} attestations of {pinned}"))
    }

    fn identity_args(&self) -> Vec<String> {
        match self {
            Verifier::Key(public_key) => vec!["--key".to_owned(), public_key.display().to_string()],
            Verifier::Keyless { identity, issuer } => {
                let (flag, identity) = match identity {
                    Identity::Exact(identity) => ("--certificate-identity", identity),
                    Identity::Pattern(pattern) => ("--certificate-identity-regexp", pattern),
                };
                vec![flag.to_owned(), identity.clone(), "--certificate-oidc-issuer".to_owned(), issuer.clone()]
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Verifier::Key(public_key) => format!("the public key {}", public_key.display()),
            Verifier::Keyless { identity: Identity::Exact(identity), issuer } => {
                format!("the identity {identity} (issuer {issuer})")
            }
            Verifier::Keyless { identity: Identity::Pattern(pattern), issuer } => {
                format!("an identity matching {pattern} (issuer {issuer})")
            }
        }
    }
}

/// What a failed signing run means, in the words of the fix.
fn explain_for_signing(failure: Failure, key: &KeySource, reference: Option<&str>) -> anyhow::Error {
    if failure.mentions(&["decrypt", "incorrect password", "password"]) {
        return anyhow::anyhow!(
            "COSIGN_PASSWORD does not decrypt the signing key {}: set the password this key was created with",
            key.argument()
        );
    }
    if failure.mentions(&["pem", "private key", "unsupported"]) {
        return anyhow::anyhow!("{} is not a cosign private key: {}", key.argument(), failure.output());
    }
    reference.and_then(|reference| failure.unreachable_registry(reference)).unwrap_or_else(|| failure.into_error())
}

/// What a failed verification means: unreachable, unsigned or signed by someone else, or another failure.
fn explain_for_verifying(failure: Failure, verifier: &Verifier, pinned: &str, what: &str) -> anyhow::Error {
    if let Some(error) = failure.unreachable_registry(pinned) {
        return error;
    }
    let mismatch =
        ["no signatures found", "no matching signatures", "no matching attestations", "do not match threshold"];
    if failure.mentions(&mismatch) {
        return anyhow::anyhow!(
            "{pinned} has no {what} that verifies with {}: it is unsigned, was signed with another key, or its \
             content changed since it was signed ({})",
            verifier.describe(),
            failure.last_line()
        );
    }
    failure.into_error()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_args(key: &str) -> SigningArgs {
        SigningArgs { key: Some(key.to_owned()), ..SigningArgs::default() }
    }

    #[test]
    fn a_missing_key_file_is_named() {
        let error = Signer::from_args(&key_args("/nonexistent/cosign.key")).unwrap_err().to_string();
        assert!(error.contains("signing key /nonexistent/cosign.key does not exist"), "{error}");
    }

    #[test]
    fn an_unset_key_variable_is_named() {
        let error = Signer::from_args(&key_args("env://XTASK_TEST_NEVER_SET_KEY")).unwrap_err().to_string();
        assert!(error.contains("environment variable XTASK_TEST_NEVER_SET_KEY is not set"), "{error}");
    }

    #[test]
    fn secrets_do_not_print() {
        let signer = Signer::Key {
            key: KeySource::Env { variable: "COSIGN_PRIVATE_KEY".into(), pem: Secret::new("PEM BODY") },
            password: Secret::new("hunter2"),
        };
        let shown = format!("{signer:?}");
        assert!(!shown.contains("PEM BODY") && !shown.contains("hunter2"), "{shown}");
    }
}
