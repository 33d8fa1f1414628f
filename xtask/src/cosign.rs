//! Running cosign: the one place its processes start, with secrets in their environment only (never on a command
//! line, never in a file, scrubbed from any output shown), and with or without the transparency log.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use crate::context::Context;

/// The format signatures and attestations are written in: cosign's tags beside the image (`sha256-<hex>.sig` and
/// `.att`), not cosign 3's default Sigstore bundles stored as OCI referrers. sigstore's policy-controller (v0.13 to
/// v0.15 at least) reads bundles neither for a key nor for any signature, so the cluster could not admit a release
/// otherwise; `verify` (cosign 3 reads this format where an image has no bundle) then checks exactly what the cluster
/// checks. The signing config only produces bundles, so it is off: a keyless signature goes to the public Fulcio and
/// Rekor, cosign's defaults.
pub const SIGNING_FORMAT: [&str; 2] = ["--new-bundle-format=false", "--use-signing-config=false"];

/// The predicate type of the SBOM attestation.
pub const SBOM_PREDICATE: &str = "cyclonedx";

/// A value that must never be shown: it has no `Display`, and its `Debug` prints a placeholder.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that hands it to cosign's environment.
    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// Whether signatures go to (and are checked against) the Rekor transparency log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tlog {
    Upload,
    /// No log reachable (air-gapped sites, this machine): skip it when signing, accept its absence when verifying.
    Offline,
}

impl Tlog {
    /// Beside [`SIGNING_FORMAT`], whose `--use-signing-config=false` cosign 3 needs with `--tlog-upload=false`.
    pub fn sign_flags(self) -> &'static [&'static str] {
        match self {
            Tlog::Upload => &[],
            Tlog::Offline => &["--tlog-upload=false"],
        }
    }

    pub fn verify_flags(self) -> &'static [&'static str] {
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
/// Whether `pinned` carries an attestation of the given predicate type, signed by anyone: verifying it is a separate
/// step, so that an attestation that fails to verify is an error rather than "none attached".
pub fn has_attestation(cosign: &Path, pinned: &str, predicate_type: &str) -> Result<bool> {
    let args = ["download", "attestation", "--predicate-type", predicate_type, pinned].map(str::to_owned);
    match run(cosign, &args, &[]) {
        Ok(output) => Ok(!output.trim().is_empty()),
        Err(failure) if failure.mentions(&["no attestations"]) => Ok(false),
        Err(failure) => Err(failure.unreachable_registry(pinned).unwrap_or_else(|| failure.into_error())),
    }
}

/// cosign verify prints one JSON document per valid signature; each names the digest it signs.
pub fn signed_digest(output: &str) -> Result<String> {
    let documents: Vec<serde_json::Value> = serde_json::from_str(output.trim())?;
    documents
        .iter()
        .find_map(|document| document.pointer("/critical/image/docker-manifest-digest")?.as_str())
        .map(str::to_owned)
        .context("no signature payload names an image digest")
}

/// The in-toto statements of `cosign verify-attestation`'s output: one DSSE envelope per line, the statement in its
/// base64 payload.
pub fn statements(output: &str) -> Result<Vec<serde_json::Value>> {
    use base64::Engine as _;
    let mut statements = Vec::new();
    for line in output.lines().filter(|line| line.trim_start().starts_with('{')) {
        let envelope: serde_json::Value = serde_json::from_str(line).context("an attestation that is not JSON")?;
        let payload = envelope["payload"].as_str().context("an attestation without payload")?;
        let statement =
            base64::engine::general_purpose::STANDARD.decode(payload).context("a payload that is not base64")?;
        statements.push(serde_json::from_slice(&statement).context("a payload that is not an in-toto statement")?);
    }
    Ok(statements)
}

/// A cosign run that failed, with its output already scrubbed of secrets.
pub struct Failure {
    command: String,
    output: String,
}

impl Failure {
    pub fn mentions(&self, needles: &[&str]) -> bool {
        let output = self.output.to_ascii_lowercase();
        needles.iter().any(|needle| output.contains(needle))
    }

    /// The registry of `reference` named as unreachable, when cosign could not connect to it.
    pub fn unreachable_registry(&self, reference: &str) -> Option<anyhow::Error> {
        let line = crate::registry::unreachable_line(&self.output)?;
        let registry = reference.split('/').next().unwrap_or(reference);
        Some(crate::registry::unreachable(registry, line.trim_start_matches("Error: ")))
    }

    /// What cosign printed, secrets scrubbed.
    pub fn output(&self) -> &str {
        self.output.trim()
    }

    pub fn last_line(&self) -> &str {
        self.output.lines().rev().find(|line| !line.trim().is_empty()).unwrap_or_default().trim()
    }

    pub fn into_error(self) -> anyhow::Error {
        anyhow::anyhow!("`{}` failed:\n{}", self.command, self.output.trim())
    }
}

/// Runs cosign with the secrets in its environment only, capturing its output (stdout is returned).
pub fn run(cosign: &Path, args: &[String], secrets: &[(String, Secret)]) -> std::result::Result<String, Failure> {
    let command = format!("cosign {}", args.join(" "));
    eprintln!("xtask: {command}");
    let failure = |output: String| Failure { command: command.clone(), output };
    let sh = xshell::Shell::new().map_err(|error| failure(format!("could not start cosign: {error}")))?;
    // Empty stdin: cosign must never wait for a password prompt.
    let mut cosign_cmd = xshell::cmd!(sh, "{cosign} {args...}").quiet().ignore_status().stdin("");
    for (name, secret) in secrets {
        cosign_cmd = cosign_cmd.env(name, secret.expose());
    }
    let output =
        cosign_cmd.output().map_err(|error| failure(format!("could not start {}: {error}", cosign.display())))?;
    let scrub = |bytes: &[u8]| {
        let mut text = String::from_utf8_lossy(bytes).into_owned();
        for (_, secret) in secrets.iter().filter(|(_, secret)| !secret.expose().is_empty()) {
            text = text.replace(secret.expose(), "<secret>");
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
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_flags_are_the_ones_cosign_3_needs() {
        assert_eq!(Tlog::Offline.sign_flags(), ["--tlog-upload=false"]);
        assert!(SIGNING_FORMAT.contains(&"--use-signing-config=false"), "cosign 3 refuses --tlog-upload=false without");
        assert_eq!(Tlog::Offline.verify_flags(), ["--insecure-ignore-tlog"]);
        assert!(Tlog::Upload.sign_flags().is_empty() && Tlog::Upload.verify_flags().is_empty());
        assert!(Tlog::Offline.describe().contains("OFF"));
    }

    #[test]
    fn secrets_do_not_print() {
        let shown = format!("{:?}", [Secret::new("PEM BODY"), Secret::new("hunter2")]);
        assert!(!shown.contains("PEM BODY") && !shown.contains("hunter2"), "{shown}");
    }
}
