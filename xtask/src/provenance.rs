//! SLSA v1 provenance of an image (`https://slsa.dev/provenance/v1`): the pipeline that built it, from which
//! repository and commit, with which locked inputs (the Debian base by digest, every `.deb` with its SHA-256, the
//! Python locks and wheels, the launcher binary), on which builder. `build` writes it beside the image's layout;
//! `release` attaches it as a signed attestation; `verify` reads it back.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::context::Context;

/// cosign's name of the predicate type.
pub const COSIGN_TYPE: &str = "slsaprovenance1";
/// What built the image: this pipeline, `cargo xtask build` (the meaning of its parameters is this file's).
pub const BUILD_TYPE: &str = "https://slsa.dev/provenance/v1?buildType=distroless-python-cargo-xtask-build-v1";

/// What went into one image.
pub struct Inputs<'a> {
    pub image: &'a str,
    pub platform: &'a str,
    /// The Debian base of the build stages and the image id the engine has for it.
    pub base: (&'a str, &'a str),
    /// Each locked package: its name, version, architecture and the content-addressed file it was unpacked from.
    pub packages: Vec<(String, String, String, PathBuf)>,
    /// The hash-pinned locks, relative to the workspace root.
    pub locks: Vec<PathBuf>,
    pub wheels: &'a Path,
    pub launcher: &'a Path,
    pub engine: &'a str,
    pub started: jiff::Timestamp,
    pub finished: jiff::Timestamp,
}

/// Writes the provenance predicate of an image to `out/images/<image>/provenance.json`.
pub fn write(ctx: &Context, inputs: &Inputs) -> Result<PathBuf> {
    let revision = ctx.revision()?;
    let repository = source_repository(ctx);
    let mut dependencies = vec![json!({
        "uri": format!("git+{repository}"),
        "digest": { "gitCommit": revision.commit },
    })];
    let (base, base_id) = inputs.base;
    dependencies.push(json!({ "uri": format!("docker-image://{base}"), "digest": sha256_map(base_id) }));
    for (name, version, architecture, file) in &inputs.packages {
        let hex = file.file_name().and_then(|name| name.to_str()).context("a cached package without a name")?;
        dependencies.push(json!({
            "uri": format!("pkg:deb/debian/{name}@{version}?arch={architecture}"),
            "digest": { "sha256": hex },
        }));
    }
    for lock in &inputs.locks {
        dependencies
            .push(json!({ "uri": format!("file:{}", lock.display()), "digest": file_digest(&ctx.root.join(lock))? }));
    }
    for wheel in sorted_files(inputs.wheels, "whl")? {
        let name = wheel.file_name().and_then(|name| name.to_str()).unwrap_or_default().to_owned();
        dependencies
            .push(json!({ "uri": format!("file:wheels/{name}"), "name": name, "digest": file_digest(&wheel)? }));
    }
    dependencies.push(json!({
        "uri": "file:usr/local/bin/launcher",
        "name": "launcher",
        "digest": file_digest(inputs.launcher)?,
    }));
    let (builder, invocation) = builder_and_invocation();
    let predicate = json!({
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "image": inputs.image,
                "platform": inputs.platform,
                "source": { "repository": repository, "revision": revision.commit },
            },
            "internalParameters": { "engine": inputs.engine, "sourceDateEpoch": revision.commit_time },
            "resolvedDependencies": dependencies,
        },
        "runDetails": {
            "builder": { "id": builder },
            "metadata": {
                "invocationId": invocation,
                "startedOn": inputs.started.to_string(),
                "finishedOn": inputs.finished.to_string(),
            },
        },
    });
    let path = ctx.out.provenance(inputs.image);
    std::fs::write(&path, serde_json::to_string_pretty(&predicate)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The repository the source comes from: GitHub's when on Actions, else `repository` of Cargo.toml's
/// `[workspace.package]`, else the checkout's `origin`.
pub fn source_repository(ctx: &Context) -> String {
    if let (Ok(server), Ok(repository)) = (std::env::var("GITHUB_SERVER_URL"), std::env::var("GITHUB_REPOSITORY")) {
        return format!("{server}/{repository}");
    }
    let from_manifest = std::fs::read_to_string(ctx.root.join("Cargo.toml"))
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|manifest| manifest.get("workspace")?.get("package")?.get("repository")?.as_str().map(str::to_owned));
    from_manifest
        .or_else(|| ctx.read("git", &["config", "--get", "remote.origin.url"]).ok().filter(|url| !url.is_empty()))
        .unwrap_or_else(|| format!("file://{}", ctx.root.display()))
}

/// Who built: the GitHub workflow run on Actions, the host otherwise.
fn builder_and_invocation() -> (String, String) {
    let env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    match (env("GITHUB_SERVER_URL"), env("GITHUB_WORKFLOW_REF"), env("GITHUB_REPOSITORY"), env("GITHUB_RUN_ID")) {
        (Some(server), Some(workflow), Some(repository), Some(run)) => {
            let attempt = env("GITHUB_RUN_ATTEMPT").unwrap_or_else(|| "1".to_owned());
            (format!("{server}/{workflow}"), format!("{server}/{repository}/actions/runs/{run}/attempts/{attempt}"))
        }
        _ => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            let host = host.trim();
            let now = jiff::Timestamp::now();
            (format!("urn:distroless-python:host:{host}"), format!("urn:distroless-python:host:{host}:{now}"))
        }
    }
}

/// What a provenance says, as `verify` reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub subject_digests: Vec<String>,
    pub build_type: String,
    pub image: String,
    pub repository: String,
    pub revision: String,
    pub builder: String,
}

impl Summary {
    /// Reads an in-toto statement whose predicate is an SLSA v1 provenance of this pipeline.
    pub fn of_statement(statement: &Value) -> Result<Summary> {
        let text = |pointer: &str| -> Result<String> {
            statement
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .with_context(|| format!("the provenance has no {pointer}"))
        };
        let subject_digests = statement["subject"]
            .as_array()
            .map(|subjects| {
                subjects
                    .iter()
                    .filter_map(|subject| subject["digest"]["sha256"].as_str())
                    .map(|hex| format!("sha256:{hex}"))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Summary {
            subject_digests,
            build_type: text("/predicate/buildDefinition/buildType")?,
            image: text("/predicate/buildDefinition/externalParameters/image")?,
            repository: text("/predicate/buildDefinition/externalParameters/source/repository")?,
            revision: text("/predicate/buildDefinition/externalParameters/source/revision")?,
            builder: text("/predicate/runDetails/builder/id")?,
        })
    }
}

fn sha256_map(digest: &str) -> Value {
    json!({ "sha256": digest.trim_start_matches("sha256:") })
}

fn file_digest(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(json!({ "sha256": hex::encode(Sha256::digest(bytes)) }))
}

fn sorted_files(dir: &Path, extension: &str) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|entry| Some(entry.ok()?.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == extension))
            .collect(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(error).with_context(|| format!("reading {}", dir.display())),
    };
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_is_read_back_into_what_verify_checks() {
        let statement = json!({
            "_type": "https://in-toto.io/Statement/v0.1",
            "subject": [{"name": "r/app", "digest": {"sha256": "ab"}}],
            "predicateType": "https://slsa.dev/provenance/v1",
            "predicate": {
                "buildDefinition": {
                    "buildType": BUILD_TYPE,
                    "externalParameters": {"image": "app", "source": {"repository": "https://x/y", "revision": "c0ffee"}},
                },
                "runDetails": {"builder": {"id": "urn:distroless-python:host:h"}},
            },
        });
        let summary = Summary::of_statement(&statement).unwrap();
        assert_eq!(summary.subject_digests, ["sha256:ab"]);
        assert_eq!((summary.revision.as_str(), summary.repository.as_str()), ("c0ffee", "https://x/y"));
        let missing = Summary::of_statement(&json!({"predicate": {}})).unwrap_err().to_string();
        assert!(missing.contains("buildType"), "{missing}");
    }
}
