//! Signing and verifying images with cosign: key-based or keyless, with or without the transparency log.
//!
//! Secrets (the private key's password, a private key held in an environment variable) reach cosign only through its
//! environment; they are never on a command line, never written to a file, and scrubbed from any output shown.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use crate::context::Context;

/// The issuer of the OIDC tokens GitHub Actions hands to workflows with `id-token: write`.
const GITHUB_OIDC_ISSUER: &str = "https://token.actions.githubusercontent.com";

/// The predicate type cosign gives its signatures in the referrers it stores.
pub const SIGNATURE_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";

/// The predicate type of the SBOM attestation.
pub const SBOM_PREDICATE: &str = "cyclonedx";

/// A value that must never be shown: it has no `Display`, and its `Debug` prints a placeholder.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

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
    Keyless { identity: String, issuer: String },
}

/// Whether signatures go to (and are checked against) the Rekor transparency log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tlog {
    Upload,
    /// No log reachable (air-gapped sites, this machine): skip it when signing, accept its absence when verifying.
    Offline,
}

impl Tlog {
    fn sign_flags(self) -> &'static [&'static str] {
        match self {
            Tlog::Upload => &[],
            Tlog::Offline => &["--use-signing-config=false", "--tlog-upload=false"],
        }
    }

    fn verify_flags(self) -> &'static [&'static str] {
        match self {
            Tlog::Upload => &[],
            Tlog::Offline => &["--insecure-ignore-tlog"],
        }
    }

    /// One line for the output, so that nobody mistakes an offline signature for a logged one.
    pub fn describe(self) -> String {
        match self {
            Tlog::Upload => "transparency log: on (signatures are uploaded to and checked against Rekor)".to_owned(),
            Tlog::Offline => format!(
                "transparency log: OFF (signing with {}, verifying with {}; --tlog or XTASK_TLOG=1 turns it on)",
                Tlog::Offline.sign_flags().join(" "),
                Tlog::Offline.verify_flags().join(" ")
            ),
        }
    }
}

#[derive(clap::Args, Debug, Default)]
pub struct TlogArgs {
    /// Use the Rekor transparency log: true or false (default: off with a key, on keyless; XTASK_TLOG=0|1 too).
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    tlog: Option<bool>,
}

impl TlogArgs {
    /// The flag, else XTASK_TLOG, else no preference.
    pub fn choice(&self) -> Result<Option<bool>> {
        if self.tlog.is_some() {
            return Ok(self.tlog);
        }
        match std::env::var("XTASK_TLOG").ok().as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some("1" | "true" | "yes" | "on") => Ok(Some(true)),
            Some("0" | "false" | "no" | "off") => Ok(Some(false)),
            Some(other) => bail!("XTASK_TLOG={other}: use 1 (transparency log on) or 0 (off)"),
        }
    }
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
        args.extend(tlog.sign_flags().iter().map(|flag| flag.to_string()));
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
        args.extend(tlog.sign_flags().iter().map(|flag| flag.to_string()));
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
                return Ok(Verifier::Keyless { identity: identity.clone(), issuer: issuer.clone() })
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
        run_cosign(cosign, args, &secrets).map_err(|failure| match self {
            Signer::Key { key, .. } => failure.explain_for_signing(key, reference),
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
        let output = run_cosign(cosign, &args, &[])
            .map_err(|failure| failure.explain_for_verifying(self, pinned, "signature"))?;
        signed_digest(&output).with_context(|| format!("reading what cosign verified for {pinned}"))
    }

    /// Checks an attestation of the given predicate type on `pinned`.
    pub fn verify_attestation(&self, cosign: &Path, pinned: &str, predicate_type: &str, tlog: Tlog) -> Result<()> {
        let mut args = vec!["verify-attestation".to_owned(), "--type".to_owned(), predicate_type.to_owned()];
        args.extend(self.identity_args());
        args.extend(tlog.verify_flags().iter().map(|flag| flag.to_string()));
        args.push(pinned.to_owned());
        run_cosign(cosign, &args, &[])
            .map_err(|failure| failure.explain_for_verifying(self, pinned, &format!("{predicate_type} attestation")))?;
        Ok(())
    }

    fn identity_args(&self) -> Vec<String> {
        match self {
            Verifier::Key(public_key) => vec!["--key".to_owned(), public_key.display().to_string()],
            Verifier::Keyless { identity, issuer } => vec![
                "--certificate-identity".to_owned(),
                identity.clone(),
                "--certificate-oidc-issuer".to_owned(),
                issuer.clone(),
            ],
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Verifier::Key(public_key) => format!("the public key {}", public_key.display()),
            Verifier::Keyless { identity, issuer } => format!("the identity {identity} (issuer {issuer})"),
        }
    }
}

/// Whether `pinned` carries an attestation of the given predicate type, signed by anyone: verifying it is a separate
/// step, so that an attestation that fails to verify is an error rather than "none attached".
pub fn has_attestation(cosign: &Path, pinned: &str, predicate_type: &str) -> Result<bool> {
    let args = ["download", "attestation", "--predicate-type", predicate_type, pinned].map(str::to_owned);
    match run_cosign(cosign, &args, &[]) {
        Ok(output) => Ok(!output.trim().is_empty()),
        Err(failure) if failure.mentions(&["no attestations"]) => Ok(false),
        Err(failure) => Err(failure.unreachable_registry(pinned).unwrap_or_else(|| failure.into_error())),
    }
}

/// cosign verify prints one JSON document per valid signature; each names the digest it signs.
fn signed_digest(output: &str) -> Result<String> {
    let documents: Vec<serde_json::Value> = serde_json::from_str(output.trim())?;
    documents
        .iter()
        .find_map(|document| document.pointer("/critical/image/docker-manifest-digest")?.as_str())
        .map(str::to_owned)
        .context("no signature payload names an image digest")
}

/// A cosign run that failed, with its output already scrubbed of secrets.
struct Failure {
    command: String,
    output: String,
}

impl Failure {
    fn mentions(&self, needles: &[&str]) -> bool {
        let output = self.output.to_ascii_lowercase();
        needles.iter().any(|needle| output.contains(needle))
    }

    /// The registry of `reference` named as unreachable, when cosign could not connect to it.
    fn unreachable_registry(&self, reference: &str) -> Option<anyhow::Error> {
        let line = crate::registry::unreachable_line(&self.output)?;
        let registry = reference.split('/').next().unwrap_or(reference);
        Some(crate::registry::unreachable(registry, line.trim_start_matches("Error: ")))
    }

    fn explain_for_signing(self, key: &KeySource, reference: Option<&str>) -> anyhow::Error {
        if self.mentions(&["decrypt", "incorrect password", "password"]) {
            return anyhow::anyhow!(
                "COSIGN_PASSWORD does not decrypt the signing key {}: set the password this key was created with",
                key.argument()
            );
        }
        if self.mentions(&["pem", "private key", "unsupported"]) {
            return anyhow::anyhow!("{} is not a cosign private key: {}", key.argument(), self.output.trim());
        }
        reference.and_then(|reference| self.unreachable_registry(reference)).unwrap_or_else(|| self.into_error())
    }

    fn explain_for_verifying(self, verifier: &Verifier, pinned: &str, what: &str) -> anyhow::Error {
        if let Some(error) = self.unreachable_registry(pinned) {
            return error;
        }
        let mismatch =
            ["no signatures found", "no matching signatures", "no matching attestations", "do not match threshold"];
        if self.mentions(&mismatch) {
            return anyhow::anyhow!(
                "{pinned} has no {what} that verifies with {}: it is unsigned, was signed with another key, or its \
                 content changed since it was signed ({})",
                verifier.describe(),
                self.last_line()
            );
        }
        self.into_error()
    }

    fn last_line(&self) -> &str {
        self.output.lines().rev().find(|line| !line.trim().is_empty()).unwrap_or_default().trim()
    }

    fn into_error(self) -> anyhow::Error {
        anyhow::anyhow!("`{}` failed:\n{}", self.command, self.output.trim())
    }
}

/// Runs cosign with the secrets in its environment only, capturing its output (stdout is returned).
fn run_cosign(cosign: &Path, args: &[String], secrets: &[(String, Secret)]) -> std::result::Result<String, Failure> {
    let command = format!("cosign {}", args.join(" "));
    eprintln!("xtask: {command}");
    let failure = |output: String| Failure { command: command.clone(), output };
    let sh = xshell::Shell::new().map_err(|error| failure(format!("could not start cosign: {error}")))?;
    // Empty stdin: cosign must never wait for a password prompt.
    let mut cosign_cmd = xshell::cmd!(sh, "{cosign} {args...}").quiet().ignore_status().stdin("");
    for (name, secret) in secrets {
        cosign_cmd = cosign_cmd.env(name, &secret.0);
    }
    let output =
        cosign_cmd.output().map_err(|error| failure(format!("could not start {}: {error}", cosign.display())))?;
    let scrub = |bytes: &[u8]| {
        let mut text = String::from_utf8_lossy(bytes).into_owned();
        for (_, secret) in secrets.iter().filter(|(_, secret)| !secret.0.is_empty()) {
            text = text.replace(&secret.0, "<secret>");
        }
        text
    };
    if output.status.success() {
        Ok(scrub(&output.stdout))
    } else {
        Err(failure(format!("{}{}", scrub(&output.stderr), scrub(&output.stdout))))
    }
}

/// The cosign binary the project pins (see `cargo xtask tools`).
pub fn cosign(ctx: &Context) -> Result<PathBuf> {
    crate::pinned_tools::ensure(ctx, crate::pinned_tools::Tool::Cosign)
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
    fn offline_flags_are_the_ones_cosign_3_needs() {
        assert_eq!(Tlog::Offline.sign_flags(), ["--use-signing-config=false", "--tlog-upload=false"]);
        assert_eq!(Tlog::Offline.verify_flags(), ["--insecure-ignore-tlog"]);
        assert!(Tlog::Upload.sign_flags().is_empty() && Tlog::Upload.verify_flags().is_empty());
        assert!(Tlog::Offline.describe().contains("OFF"));
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
