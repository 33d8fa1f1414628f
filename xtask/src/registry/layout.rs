//! Pushing an OCI image layout byte for byte: every blob the registry lacks, the child manifests of an index by
//! digest, then the manifest or index `index.json` names by each tag; the whole layout is checked before anything
//! is sent.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::{Reference, Session};

/// Pushes the OCI image layout at `layout` (`oci-layout`, `index.json` with one descriptor, `blobs/sha256/`) to
/// `repository` (`HOST[:PORT]/NAMESPACE/NAME`) exactly as its bytes are: every blob the registry lacks, then the
/// child manifests of an image index by digest, then the image manifest or index that index.json names by each
/// tag (by its digest alone when there is no tag). Returns that manifest's digest, after checking that the registry
/// stores it under the same digest.
pub fn push_layout(layout: &Path, repository: &str, tags: &[String]) -> Result<String> {
    let target = push_target(repository, tags)?;
    let plan = Plan::read(layout)?;
    let top = plan.manifests.last().expect("a plan has its top manifest");
    let session = Session::new(&target.registry)?;
    // Blob requests name the repository through a reference; the top manifest's digest is as good as any.
    let anchor = session.pinned(&target.repository, &top.digest);
    let mut missing = Vec::new();
    for blob in &plan.blobs {
        let present = session
            .run(session.client.blob_exists(&anchor, &blob.digest))
            .map_err(|error| session.explain(error, &format!("the push to {repository}")))?;
        if !present {
            missing.push(blob);
        }
    }
    eprintln!(
        "xtask: pushing {} to {repository} as {}: {} of {} blobs to upload, {} manifest(s), digest {}",
        layout.display(),
        tags.join(", "),
        missing.len(),
        plan.blobs.len(),
        plan.manifests.len(),
        top.digest
    );
    for blob in missing {
        let data = std::fs::read(&blob.path).with_context(|| format!("reading {}", blob.path.display()))?;
        session.run(session.client.push_blob(&anchor, data, &blob.digest)).map_err(|error| {
            session.explain(error, &format!("the push to {repository} (blob {}, {})", blob.digest, blob.role))
        })?;
    }
    let (children, _) = plan.manifests.split_at(plan.manifests.len() - 1);
    for child in children {
        session.put_manifest(&session.pinned(&target.repository, &child.digest), child, repository)?;
    }
    for tag in tags {
        session.put_manifest(&session.tagged(&target.repository, tag), top, repository)?;
    }
    if tags.is_empty() {
        session.put_manifest(&session.pinned(&target.repository, &top.digest), top, repository)?;
    }
    // What a pull by each tag now gets: the same bytes, under the same digest.
    for tag in tags {
        let image = session.tagged(&target.repository, tag);
        let (stored, digest) = session
            .run(session.client.pull_manifest_raw(&image, &session.auth, &[top.media_type.as_str()]))
            .map_err(|error| session.explain(error, &format!("reading back {repository}:{tag}")))?;
        if digest != top.digest || stored.as_ref() != top.bytes.as_slice() {
            bail!(
                "registry {} serves {repository}:{tag} as {digest}, not as the pushed {}: it changed the manifest, \
                 so the digest computed locally is not the one in the registry",
                target.registry,
                top.digest
            );
        }
    }
    Ok(top.digest.clone())
}

/// The repository of a push, checked together with its tags.
fn push_target(repository: &str, tags: &[String]) -> Result<Reference> {
    // A valid tag stands in for none: only the repository is parsed.
    let first = tags.first().map_or("latest", String::as_str);
    for tag in tags {
        let valid = tag.len() <= 128
            && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && tag.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !valid {
            bail!("`{tag}` is not a valid tag: letters, digits, `_`, `.` and `-`, at most 128, not starting with `.` or `-`");
        }
    }
    let reference = Reference::parse(&format!("{repository}:{first}"))?;
    let path_is_plain =
        reference.repository.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c));
    if format!("{}/{}", reference.registry, reference.repository) != repository || !path_is_plain {
        bail!("`{repository}` is not a repository: write HOST[:PORT]/NAMESPACE/NAME, without tag or digest");
    }
    Ok(reference)
}

/// What a layout holds, in push order: the blobs (configs and layers, each once), then the manifests, children of
/// an index first and the one index.json names last.
#[derive(Debug)]
struct Plan {
    blobs: Vec<Blob>,
    manifests: Vec<Manifest>,
}

#[derive(Debug)]
struct Blob {
    digest: String,
    path: PathBuf,
    /// What the blob is to the image, for messages: `layer 2 of manifest sha256:...`.
    role: String,
}

#[derive(Debug)]
pub(crate) struct Manifest {
    pub(crate) digest: String,
    pub(crate) media_type: String,
    pub(crate) bytes: Vec<u8>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: String,
    digest: String,
    size: u64,
}

/// The parts of an image manifest, an image index or index.json that pushing needs.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    media_type: Option<String>,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LayoutMarker {
    image_layout_version: String,
}

impl Plan {
    /// Reads and checks the whole layout before anything is pushed: every blob present with its size, every
    /// manifest matching its digest.
    fn read(layout: &Path) -> Result<Self> {
        let name = layout.display();
        if !layout.is_dir() {
            bail!("there is no OCI image layout at {name}");
        }
        let document = |file: &str| -> Result<Vec<u8>> {
            let path = layout.join(file);
            std::fs::read(&path).map_err(|error| match error.kind() {
                std::io::ErrorKind::NotFound => anyhow::anyhow!("OCI layout {name} is incomplete: it has no {file}"),
                _ => anyhow::anyhow!("reading {}: {error}", path.display()),
            })
        };
        let marker: LayoutMarker = serde_json::from_slice(&document("oci-layout")?)
            .with_context(|| format!("OCI layout {name}: oci-layout is not {{\"imageLayoutVersion\": ...}}"))?;
        if !marker.image_layout_version.starts_with("1.") {
            bail!("OCI layout {name}: image layout version {} is not 1.x", marker.image_layout_version);
        }
        let index: Document = serde_json::from_slice(&document("index.json")?)
            .with_context(|| format!("OCI layout {name}: index.json is not an image index"))?;
        let [top] = index.manifests.as_slice() else {
            bail!(
                "OCI layout {name}: index.json must hold exactly one descriptor (the image or its index), not {}",
                index.manifests.len()
            );
        };
        let mut plan = Self { blobs: Vec::new(), manifests: Vec::new() };
        plan.manifest(layout, top, "named by index.json", true)?;
        Ok(plan)
    }

    /// Adds a manifest, after its blobs or (for an index) its child manifests.
    fn manifest(&mut self, layout: &Path, descriptor: &Descriptor, role: &str, top: bool) -> Result<()> {
        let name = layout.display();
        let digest = &descriptor.digest;
        let media_type = descriptor.media_type.as_str();
        let index = match media_type {
            OCI_IMAGE_MEDIA_TYPE | IMAGE_MANIFEST_MEDIA_TYPE => false,
            OCI_IMAGE_INDEX_MEDIA_TYPE | IMAGE_MANIFEST_LIST_MEDIA_TYPE if top => true,
            other => bail!(
                "OCI layout {name}: {digest} ({role}) is {other}, which is neither an image manifest nor (named by \
                 index.json) an image index"
            ),
        };
        let path = blob_file(layout, descriptor, role)?;
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        if actual != *digest {
            bail!("OCI layout {name} is corrupt: blob {digest} ({role}) hashes to {actual}");
        }
        let document: Document = serde_json::from_slice(&bytes)
            .with_context(|| format!("OCI layout {name}: blob {digest} ({role}) is not a manifest"))?;
        if let Some(own) = document.media_type.as_deref().filter(|own| *own != media_type) {
            bail!("OCI layout {name}: {digest} ({role}) says it is {own}, but its descriptor says {media_type}");
        }
        if index {
            if document.manifests.is_empty() {
                bail!("OCI layout {name}: the image index {digest} ({role}) lists no manifests");
            }
            for (number, child) in document.manifests.iter().enumerate() {
                self.manifest(layout, child, &format!("manifest {} of index {digest}", number + 1), false)?;
            }
        } else {
            let config = document
                .config
                .as_ref()
                .with_context(|| format!("OCI layout {name}: the manifest {digest} ({role}) has no config"))?;
            self.blob(layout, config, format!("the config of manifest {digest}"))?;
            for (number, layer) in document.layers.iter().enumerate() {
                self.blob(layout, layer, format!("layer {} of manifest {digest}", number + 1))?;
            }
        }
        if !self.manifests.iter().any(|manifest| manifest.digest == *digest) {
            self.manifests.push(Manifest { digest: digest.clone(), media_type: media_type.to_owned(), bytes });
        }
        Ok(())
    }

    /// Adds a config or layer blob, once, after checking that the layout has it whole.
    fn blob(&mut self, layout: &Path, descriptor: &Descriptor, role: String) -> Result<()> {
        let path = blob_file(layout, descriptor, &role)?;
        if !self.blobs.iter().any(|blob| blob.digest == descriptor.digest) {
            self.blobs.push(Blob { digest: descriptor.digest.clone(), path, role });
        }
        Ok(())
    }
}

/// Where the layout keeps a blob, once it is known to be there with the size its descriptor gives.
fn blob_file(layout: &Path, descriptor: &Descriptor, role: &str) -> Result<PathBuf> {
    let name = layout.display();
    let digest = &descriptor.digest;
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|hex| hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()))
        .with_context(|| format!("OCI layout {name}: {role} has the digest `{digest}`, not sha256:<64 hex digits>"))?;
    let path = layout.join("blobs").join("sha256").join(hex);
    let size = match std::fs::metadata(&path) {
        Ok(metadata) if metadata.is_file() => metadata.len(),
        _ => bail!("OCI layout {name} is incomplete: blob {digest} ({role}) is missing (no file {})", path.display()),
    };
    if size != descriptor.size {
        bail!(
            "OCI layout {name} is corrupt: blob {digest} ({role}) has {size} bytes, its descriptor says {}",
            descriptor.size
        );
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_needs_a_repository_and_valid_tags() {
        let tags = |tags: &[&str]| tags.iter().map(|tag| tag.to_string()).collect::<Vec<_>>();
        let target = push_target("127.0.0.1:5000/team/app", &tags(&["0123456789ab", "v1.2.3"])).unwrap();
        assert_eq!((target.registry.as_str(), target.repository.as_str()), ("127.0.0.1:5000", "team/app"));
        // Without a tag, by digest alone.
        assert_eq!(push_target("127.0.0.1:5000/team/app", &[]).unwrap().repository, "team/app");
        for (repository, given, complaint) in [
            ("127.0.0.1:5000/team/app", &["-bad"][..], "not a valid tag"),
            ("127.0.0.1:5000/team/app", &["a/b"], "not a valid tag"),
            ("127.0.0.1:5000/team/app:1", &["2"], "not a repository"),
            ("team/app", &["1"], "registry host"),
        ] {
            let error = push_target(repository, &tags(given)).unwrap_err().to_string();
            assert!(error.contains(complaint), "{repository} {given:?}: {error}");
        }
    }

    /// A layout of one image (`layers` as its layer contents) in a new temporary folder.
    fn layout(layers: &[&[u8]]) -> (tempfile::TempDir, String) {
        let folder = tempfile::tempdir().unwrap();
        let dir = folder.path();
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let blob = |media_type: &str, bytes: &[u8]| {
            let hex = hex::encode(Sha256::digest(bytes));
            std::fs::write(dir.join("blobs/sha256").join(&hex), bytes).unwrap();
            serde_json::json!({ "mediaType": media_type, "digest": format!("sha256:{hex}"), "size": bytes.len() })
        };
        let config = blob("application/vnd.oci.image.config.v1+json", b"{}");
        let layers: Vec<_> =
            layers.iter().map(|bytes| blob("application/vnd.oci.image.layer.v1.tar+gzip", bytes)).collect();
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_IMAGE_MEDIA_TYPE, "config": config, "layers": layers,
        });
        let manifest = blob(OCI_IMAGE_MEDIA_TYPE, &serde_json::to_vec_pretty(&manifest).unwrap());
        let digest = manifest["digest"].as_str().unwrap().to_owned();
        let index = serde_json::json!({ "schemaVersion": 2, "manifests": [manifest] });
        std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
        (folder, digest)
    }

    #[test]
    fn a_layout_is_read_in_push_order_with_each_blob_once() {
        let (folder, digest) = layout(&[b"layer one", b"layer two", b"layer one"]);
        let plan = Plan::read(folder.path()).unwrap();
        let roles: Vec<&str> = plan.blobs.iter().map(|blob| blob.role.split(" of ").next().unwrap()).collect();
        assert_eq!(roles, ["the config", "layer 1", "layer 2"]);
        assert_eq!(plan.manifests.len(), 1);
        assert_eq!(plan.manifests[0].digest, digest);
        assert_eq!(plan.manifests[0].media_type, OCI_IMAGE_MEDIA_TYPE);
        let on_disk = std::fs::read(folder.path().join("blobs/sha256").join(&digest[7..])).unwrap();
        assert_eq!(plan.manifests[0].bytes, on_disk);
    }

    #[test]
    fn a_broken_layout_is_named_with_what_is_wrong() {
        let blobs = |folder: &tempfile::TempDir| folder.path().join("blobs/sha256");
        let layer = hex::encode(Sha256::digest(b"layer"));
        type Damage<'a> = &'a dyn Fn(&tempfile::TempDir, &str);
        let cases: [(&str, Damage); 6] = [
            ("is incomplete: blob sha256:", &|folder, _| std::fs::remove_file(blobs(folder).join(&layer)).unwrap()),
            ("has 1 bytes, its descriptor says 5", &|folder, _| {
                std::fs::write(blobs(folder).join(&layer), "x").unwrap()
            }),
            ("hashes to sha256:", &|folder, digest| {
                let path = blobs(folder).join(&digest[7..]);
                let mut bytes = std::fs::read(&path).unwrap();
                bytes[0] = b' ';
                std::fs::write(path, bytes).unwrap();
            }),
            ("is incomplete: it has no oci-layout", &|folder, _| {
                std::fs::remove_file(folder.path().join("oci-layout")).unwrap()
            }),
            ("exactly one descriptor", &|folder, _| {
                std::fs::write(folder.path().join("index.json"), r#"{"schemaVersion":2,"manifests":[]}"#).unwrap()
            }),
            ("neither an image manifest", &|folder, digest| {
                let size = std::fs::metadata(blobs(folder).join(&digest[7..])).unwrap().len();
                let index = format!(
                    r#"{{"manifests":[{{"mediaType":"application/octet-stream","digest":"{digest}","size":{size}}}]}}"#
                );
                std::fs::write(folder.path().join("index.json"), index).unwrap()
            }),
        ];
        for (complaint, damage) in cases {
            let (folder, digest) = layout(&[b"layer"]);
            damage(&folder, &digest);
            let error = Plan::read(folder.path()).unwrap_err().to_string();
            assert!(error.contains(complaint), "{complaint}: {error}");
            assert_eq!(error.lines().count(), 1, "{error}");
        }
        let error = Plan::read(Path::new("/nonexistent/oci")).unwrap_err().to_string();
        assert!(error.contains("there is no OCI image layout at /nonexistent/oci"), "{error}");
    }
}
