//! SLSA v1 provenance of an image (`https://slsa.dev/provenance/v1`): the pipeline that built it, from which
//! repository and commit, with which locked inputs (the Debian base by digest, every `.deb` with its SHA-256, the
//! Python locks and wheels, the launcher binary), on which builder. `build` writes it beside the image's layout;
//! `release` attaches it as a signed attestation; `verify` reads it back.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::context::Context;
use crate::platform::Platform;

/// cosign's name of the predicate type.
pub const COSIGN_TYPE: &str = "slsaprovenance1";
/// What built the image: this pipeline, `cargo xtask build` (the meaning of its parameters is this file's).
pub const BUILD_TYPE: &str = "https://slsa.dev/provenance/v1?buildType=distroless-python-cargo-xtask-build-v1";

/// What went into one image.
pub struct Inputs<'a> {
    pub image: &'a str,
    pub platform: Platform,
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

/// Writes the provenance predicate of an image's platform to `out/images/<image>/<arch>/provenance.json`.
pub fn write(ctx: &Context, inputs: &Inputs) -> Result<PathBuf> {
    let (source, mut dependencies) = source(ctx)?;
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
    let external = json!({ "image": inputs.image, "platform": inputs.platform.docker(), "source": source });
    let internal = json!({ "engine": inputs.engine, "sourceDateEpoch": ctx.revision()?.commit_time });
    let predicate = predicate(external, internal, dependencies, (inputs.started, inputs.finished));
    save(&ctx.out.provenance(inputs.image, inputs.platform), &predicate)
}

/// Writes the provenance of an image index to `out/images/<image>/provenance.json`: the same commit, and each
/// platform's manifest as what the index was made of (`oci-manifest:linux/<arch>`).
pub fn write_index(ctx: &Context, image: &str, platforms: &[(Platform, String)]) -> Result<PathBuf> {
    let (source, mut dependencies) = source(ctx)?;
    for (platform, digest) in platforms {
        dependencies.push(json!({
            "uri": format!("{PLATFORM_MANIFEST}{}", platform.docker()),
            "digest": sha256_map(digest),
        }));
    }
    let external = json!({
        "image": image,
        "platforms": platforms.iter().map(|(platform, _)| platform.docker()).collect::<Vec<_>>(),
        "source": source,
    });
    let now = jiff::Timestamp::now();
    let internal = json!({ "sourceDateEpoch": ctx.revision()?.commit_time });
    let predicate = predicate(external, internal, dependencies, (now, now));
    save(&ctx.out.index_provenance(image), &predicate)
}

/// The source parameter (repository and commit) and the commit as the first resolved dependency.
fn source(ctx: &Context) -> Result<(Value, Vec<Value>)> {
    let commit = &ctx.revision()?.commit;
    let repository = source_repository(ctx);
    let dependency = json!({ "uri": format!("git+{repository}"), "digest": { "gitCommit": commit } });
    Ok((json!({ "repository": repository, "revision": commit }), vec![dependency]))
}

fn save(path: &Path, predicate: &Value) -> Result<PathBuf> {
    crate::files::write(path, serde_json::to_string_pretty(predicate)?)?;
    Ok(path.to_owned())
}

/// How an index's provenance names the manifest of each platform it holds.
const PLATFORM_MANIFEST: &str = "oci-manifest:";

/// The SLSA v1 predicate around what was built (`externalParameters`) from what (`resolvedDependencies`).
fn predicate(
    external: Value,
    internal: Value,
    dependencies: Vec<Value>,
    (started, finished): (jiff::Timestamp, jiff::Timestamp),
) -> Value {
    let (builder, invocation) = builder_and_invocation();
    json!({
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": external,
            "internalParameters": internal,
            "resolvedDependencies": dependencies,
        },
        "runDetails": {
            "builder": { "id": builder },
            "metadata": {
                "invocationId": invocation,
                "startedOn": started.to_string(),
                "finishedOn": finished.to_string(),
            },
        },
    })
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
    /// For an image index: the manifest digest of each platform it was made of, by platform (`linux/arm64`).
    pub platform_manifests: Vec<(String, String)>,
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
            platform_manifests: statement
                .pointer("/predicate/buildDefinition/resolvedDependencies")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|dependency| {
                    let platform = dependency["uri"].as_str()?.strip_prefix(PLATFORM_MANIFEST)?;
                    Some((platform.to_owned(), format!("sha256:{}", dependency["digest"]["sha256"].as_str()?)))
                })
                .collect(),
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
