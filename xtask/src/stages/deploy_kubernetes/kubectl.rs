//! kubectl for `deploy --kubernetes`: read-only questions to the cluster, and the planned steps run one by one with
//! generated secrets handed over on stdin and scrubbed from what kubectl prints.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};

use super::{Facts, Input, Rendered, Step, POLICY_CRD};
use crate::kubernetes;

/// kubectl with a context.
pub(super) struct Kubectl {
    pub(super) path: PathBuf,
    pub(super) context: Option<String>,
}

impl Kubectl {
    /// Runs read-only kubectl `args`; returns its stdout.
    pub(super) fn read(&self, args: &[&str]) -> Result<String> {
        let sh = xshell::Shell::new()?;
        let (kubectl, context) = (&self.path, context_args(self.context.as_deref()));
        xshell::cmd!(sh, "{kubectl} {context...} {args...}").quiet().read().with_context(|| {
            let context =
                self.context.as_deref().map_or("the current context".to_owned(), |name| format!("context {name}"));
            format!(
                "`kubectl {}` failed: is the cluster of {context} reachable? (`kubectl cluster-info` tells)",
                args.join(" ")
            )
        })
    }

    /// What the cluster holds of what the deploy makes, asked read-only.
    pub(super) fn facts(&self, rendered: &Rendered) -> Result<Facts> {
        let exists = |args: &[&str]| -> Result<bool> { Ok(!self.read(args)?.trim().is_empty()) };
        let namespace = &rendered.namespace;
        let mut facts = Facts {
            namespace: exists(&["get", "namespace", namespace, "--ignore-not-found", "-o", "name"])?,
            policy_controller: exists(&[
                "get",
                "customresourcedefinition",
                POLICY_CRD,
                "--ignore-not-found",
                "-o",
                "name",
            ])?,
            ..Facts::default()
        };
        if facts.policy_controller {
            let mut args = vec!["get", POLICY_CRD, "--ignore-not-found", "-o", "name"];
            args.extend(rendered.policies.iter().map(String::as_str));
            facts.policies = self
                .read(&args)?
                .lines()
                .filter_map(|line| line.rsplit_once('/').map(|(_, name)| name.to_owned()))
                .collect();
        }
        if facts.namespace {
            // The keys only: the values stay in the cluster.
            let keys = "--template={{.metadata.name}}{{range $key, $value := .data}} {{$key}}{{end}}";
            for secret in rendered.secrets.keys() {
                let found = self.read(&[
                    "get",
                    "secret",
                    secret,
                    "--namespace",
                    namespace,
                    "--ignore-not-found",
                    "-o",
                    "go-template",
                    keys,
                ])?;
                let mut words = found.split_whitespace();
                if words.next().is_some() {
                    facts.secrets.insert(secret.clone(), words.map(str::to_owned).collect());
                }
            }
        }
        Ok(facts)
    }

    /// Runs one step; kubectl's output is shown, scrubbed of any generated secret.
    pub(super) fn run(&self, step: &Step) -> Result<()> {
        eprintln!("xtask: {} (kubectl {})", step.what, step.args.join(" "));
        let (input, values) = match &step.input {
            Input::Nothing => (String::new(), Vec::new()),
            Input::Manifests(yaml) => (yaml.clone(), Vec::new()),
            Input::NewSecrets { namespace, secrets } => new_secrets(namespace, secrets)?,
        };
        let sh = xshell::Shell::new()?;
        let (kubectl, args) = (&self.path, &step.args);
        let output = xshell::cmd!(sh, "{kubectl} {args...}")
            .quiet()
            .ignore_status()
            .stdin(input.as_bytes())
            .output()
            .with_context(|| format!("starting {}", kubectl.display()))?;
        let scrub = |bytes: &[u8]| {
            values
                .iter()
                .fold(String::from_utf8_lossy(bytes).into_owned(), |text, value| text.replace(value, "<secret>"))
        };
        let (stdout, stderr) = (scrub(&output.stdout), scrub(&output.stderr));
        eprint!("{stdout}");
        if !output.status.success() {
            bail!("{} failed:\n{}{stdout}\n{}", step.what, stderr.trim_end(), step.fix);
        }
        eprint!("{stderr}");
        Ok(())
    }
}

/// `--context NAME` when a context is given: kubectl's current context otherwise.
pub(super) fn context_args(context: Option<&str>) -> Vec<String> {
    context.iter().flat_map(|context| ["--context".to_owned(), context.to_string()]).collect()
}

/// The Secret objects, one random value of 32 bytes (hex) per key, and the values, to scrub kubectl's output with.
pub(super) fn new_secrets(
    namespace: &str,
    secrets: &BTreeMap<String, BTreeSet<String>>,
) -> Result<(String, Vec<String>)> {
    let mut documents = Vec::new();
    let mut values = Vec::new();
    for (name, keys) in secrets {
        let mut data = serde_json::Map::new();
        for key in keys {
            let value = crate::stack::random_hex(32)?;
            data.insert(key.clone(), Value::from(value.as_str()));
            values.push(value);
        }
        documents.push(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": { "name": name, "namespace": namespace, "labels": { "app.kubernetes.io/part-of": "distroless-python" } },
            "type": "Opaque",
            "stringData": data,
        }));
    }
    Ok((kubernetes::to_yaml(&documents)?, values))
}
