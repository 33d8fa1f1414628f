//! Tiny OCI image layouts written by the tests themselves: one gzip layer holding one file, a config, a manifest
//! (or an index of two such manifests), `index.json` and `oci-layout`, with every digest computed here.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::json;
use sha2::{Digest as _, Sha256};

pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A layout on disk and what its `index.json` names.
pub struct Layout {
    pub dir: PathBuf,
    /// The digest of the manifest (or index) `index.json` names: what the registry must report.
    pub digest: String,
    /// Its bytes, as written.
    pub bytes: Vec<u8>,
    /// The child manifests of an index, `(digest, bytes)`; empty for a single image.
    pub children: Vec<(String, Vec<u8>)>,
    /// The digests of the layers, `blobs/sha256/<hex>` each.
    pub layers: Vec<String>,
}

impl Layout {
    pub fn blob(&self, digest: &str) -> PathBuf {
        blob_path(&self.dir, digest)
    }
}

/// A single-platform image whose one layer holds `/payload.txt` with `content`.
pub fn image(dir: &Path, content: &str) -> Layout {
    built_from(dir, content, None)
}

/// The same, labelled as built from `commit` (`org.opencontainers.image.revision`), as the xtask labels its images.
pub fn built_from(dir: &Path, content: &str, commit: Option<&str>) -> Layout {
    built_for(dir, content, commit, "amd64")
}

/// [`built_from`] for another architecture.
pub fn built_for(dir: &Path, content: &str, commit: Option<&str>, architecture: &str) -> Layout {
    start(dir);
    let labels = commit.map(|commit| json!({ "org.opencontainers.image.revision": commit }));
    let (descriptor, bytes, layer) = image_manifest(dir, content, architecture, labels);
    finish(dir, descriptor, bytes, Vec::new(), vec![layer])
}

/// A single-platform image of one program: `program`'s bytes at `path` (mode 0755), started as `entrypoint` by the
/// user `user`.
pub fn program(dir: &Path, path: &str, program: &[u8], entrypoint: &[&str], user: &str) -> Layout {
    start(dir);
    let tar = tar_of(path, program, 0o755);
    let config = json!({ "Entrypoint": entrypoint, "User": user });
    let (descriptor, bytes, layer) = manifest_of(dir, &tar, config, "amd64", None);
    finish(dir, descriptor, bytes, Vec::new(), vec![layer])
}

/// An image index of one image per `(architecture, content)`, its children written first.
pub fn index(dir: &Path, platforms: &[(&str, &str)]) -> Layout {
    start(dir);
    let mut children = Vec::new();
    let mut descriptors = Vec::new();
    let mut layers = Vec::new();
    for (architecture, content) in platforms {
        let (mut descriptor, bytes, layer) = image_manifest(dir, content, architecture, None);
        descriptor["platform"] = json!({ "architecture": architecture, "os": "linux" });
        children.push((descriptor["digest"].as_str().unwrap().to_owned(), bytes));
        descriptors.push(descriptor);
        layers.push(layer);
    }
    let index = json!({ "schemaVersion": 2, "mediaType": INDEX, "manifests": descriptors });
    let (descriptor, bytes) = write_json(dir, INDEX, &index);
    finish(dir, descriptor, bytes, children, layers)
}

fn start(dir: &Path) {
    std::fs::create_dir_all(dir.join("blobs").join("sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

fn finish(
    dir: &Path,
    mut descriptor: serde_json::Value,
    bytes: Vec<u8>,
    children: Vec<(String, Vec<u8>)>,
    layers: Vec<String>,
) -> Layout {
    let digest = descriptor["digest"].as_str().unwrap().to_owned();
    descriptor["annotations"] = json!({ "org.opencontainers.image.ref.name": "latest" });
    let index = json!({ "schemaVersion": 2, "mediaType": INDEX, "manifests": [descriptor] });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    Layout { dir: dir.to_owned(), digest, bytes, children, layers }
}

/// Writes layer, config and manifest; returns the manifest's descriptor, its bytes and the layer's digest.
fn image_manifest(
    dir: &Path,
    content: &str,
    architecture: &str,
    labels: Option<serde_json::Value>,
) -> (serde_json::Value, Vec<u8>, String) {
    let tar = tar_of("payload.txt", content.as_bytes(), 0o644);
    manifest_of(dir, &tar, json!({ "Entrypoint": ["/payload.txt"] }), architecture, labels)
}

/// Writes the layer of `tar`, a config around `image_config` and the manifest.
fn manifest_of(
    dir: &Path,
    tar: &[u8],
    image_config: serde_json::Value,
    architecture: &str,
    labels: Option<serde_json::Value>,
) -> (serde_json::Value, Vec<u8>, String) {
    let mut gzip = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::default());
    gzip.write_all(tar).unwrap();
    let layer = write_blob(dir, "application/vnd.oci.image.layer.v1.tar+gzip", &gzip.finish().unwrap());
    let mut config = json!({
        "architecture": architecture,
        "os": "linux",
        "config": image_config,
        "rootfs": { "type": "layers", "diff_ids": [digest(tar)] },
    });
    if let Some(labels) = labels {
        config["config"]["Labels"] = labels;
    }
    let (config, _) = write_json(dir, "application/vnd.oci.image.config.v1+json", &config);
    let layer_digest = layer["digest"].as_str().unwrap().to_owned();
    let manifest = json!({ "schemaVersion": 2, "mediaType": MANIFEST, "config": config, "layers": [layer] });
    let (descriptor, bytes) = write_json(dir, MANIFEST, &manifest);
    (descriptor, bytes, layer_digest)
}

fn tar_of(name: &str, data: &[u8], mode: u32) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_cksum();
    builder.append_data(&mut header, name, data).unwrap();
    builder.into_inner().unwrap()
}

/// Pretty-printed with a trailing newline: bytes no JSON library re-serializes to, so a registry (or client) that
/// rewrote them would change the digest.
fn write_json(dir: &Path, media_type: &str, value: &serde_json::Value) -> (serde_json::Value, Vec<u8>) {
    let mut bytes = serde_json::to_vec_pretty(value).unwrap();
    bytes.push(b'\n');
    (write_blob(dir, media_type, &bytes), bytes)
}

fn write_blob(dir: &Path, media_type: &str, bytes: &[u8]) -> serde_json::Value {
    let digest = digest(bytes);
    std::fs::write(blob_path(dir, &digest), bytes).unwrap();
    json!({ "mediaType": media_type, "digest": digest, "size": bytes.len() })
}

pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs").join("sha256").join(digest.strip_prefix("sha256:").unwrap())
}
