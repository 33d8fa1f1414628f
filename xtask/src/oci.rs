//! Images written as OCI image layouts, the same bytes for the same content on any machine and builder.
//!
//! The engine builds the image as its Dockerfile says; `docker save` hands over its layers and settings. Here every
//! layer is written again deterministically (entries sorted by path, every time set to the commit's time, numeric
//! owners without names, hard links pointing at the first path of their group, no extended headers), compressed with
//! a fixed gzip (level 6, no timestamp, the pure-Rust deflate pinned by Cargo.lock), and the configuration is
//! reduced to what describes the image (no build times, no builder fingerprints) and serialized canonically. The
//! result is an OCI image layout under `out/images/<image>/oci/`: its manifest digest is known before any push, and
//! the layout also carries the `manifest.json` that lets Engine 20.10's `docker load` read it.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// What `docker save` exported: the image configuration and each layer as an uncompressed tar.
pub struct Saved {
    pub config: Value,
    pub layers: Vec<Vec<u8>>,
}

/// Reads a `docker save` archive: Engine 20.10's legacy layout or the OCI layout newer engines write; both list the
/// configuration and the layers in `manifest.json`.
pub fn read_docker_save(archive: impl Read) -> Result<Saved> {
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    let mut tar = tar::Archive::new(archive);
    for entry in tar.entries().context("reading the `docker save` archive")? {
        let mut entry = entry?;
        if entry.header().entry_type().is_file() {
            let path = entry.path()?.to_string_lossy().trim_start_matches("./").to_owned();
            let mut content = Vec::new();
            entry.read_to_end(&mut content)?;
            files.insert(path, content);
        }
    }
    let manifest: Vec<DockerManifest> =
        serde_json::from_slice(files.get("manifest.json").context("the `docker save` archive has no manifest.json")?)
            .context("reading manifest.json of the `docker save` archive")?;
    let [image] = manifest.as_slice() else {
        bail!("the `docker save` archive holds {} images, not one", manifest.len());
    };
    let take = |path: &str| files.get(path).with_context(|| format!("the `docker save` archive lacks {path}"));
    let config = serde_json::from_slice(take(&image.config)?).context("reading the image configuration")?;
    let layers = image.layers.iter().map(|path| decompress(take(path)?)).collect::<Result<_>>()?;
    Ok(Saved { config, layers })
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    layers: Vec<String>,
}

/// A layer as stored: plain tar, or gzip (zstd, which some engines write, is refused with a reason).
fn decompress(bytes: &[u8]) -> Result<Vec<u8>> {
    match bytes {
        [0x1f, 0x8b, ..] => {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(bytes).read_to_end(&mut plain).context("decompressing a gzip layer")?;
            Ok(plain)
        }
        [0x28, 0xb5, 0x2f, 0xfd, ..] => bail!("a layer is zstd-compressed: build with gzip or uncompressed layers"),
        _ => Ok(bytes.to_vec()),
    }
}

/// One file system entry of a layer, with only what the image needs to say about it.
#[derive(Clone, Debug, PartialEq)]
struct Entry {
    path: String,
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    link: Option<String>,
    device: Option<(u32, u32)>,
    content: Vec<u8>,
}

/// The layer written again deterministically, every time set to `epoch` (seconds, the commit's time).
pub fn normalize_layer(layer: &[u8], epoch: u64) -> Result<Vec<u8>> {
    let mut entries = read_entries(layer)?;
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    retarget_hard_links(&mut entries);
    let mut builder = tar::Builder::new(Vec::new());
    for entry in &entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(entry.kind);
        header.set_mode(entry.mode);
        header.set_uid(entry.uid);
        header.set_gid(entry.gid);
        header.set_mtime(epoch);
        header.set_size(entry.content.len() as u64);
        if let Some((major, minor)) = entry.device {
            header.set_device_major(major)?;
            header.set_device_minor(minor)?;
        }
        match &entry.link {
            Some(target) => builder.append_link(&mut header, &entry.path, target)?,
            None => builder.append_data(&mut header, &entry.path, entry.content.as_slice())?,
        }
    }
    Ok(builder.into_inner()?)
}

fn read_entries(layer: &[u8]) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut archive = tar::Archive::new(layer);
    for entry in archive.entries().context("reading a layer")? {
        let mut entry = entry?;
        let header = entry.header().clone();
        let kind = header.entry_type();
        if matches!(kind, tar::EntryType::XHeader | tar::EntryType::XGlobalHeader | tar::EntryType::GNULongName) {
            continue;
        }
        let mut path = normalize_path(&entry.path()?.to_string_lossy());
        if path.is_empty() {
            continue;
        }
        if kind.is_dir() {
            path.push('/');
        }
        let link = match entry.link_name()? {
            Some(target) if kind.is_hard_link() => Some(normalize_path(&target.to_string_lossy())),
            Some(target) => Some(target.to_string_lossy().into_owned()),
            None => None,
        };
        let device = (kind.is_character_special() || kind.is_block_special())
            .then(|| Ok::<_, anyhow::Error>((header.device_major()?.unwrap_or(0), header.device_minor()?.unwrap_or(0))))
            .transpose()?;
        let mut content = Vec::new();
        entry.read_to_end(&mut content)?;
        entries.push(Entry {
            path,
            kind,
            // The permission and special bits; the file type is the entry type.
            mode: header.mode()? & 0o7777,
            uid: header.uid()?,
            gid: header.gid()?,
            link,
            device,
            content,
        });
    }
    Ok(entries)
}

/// `./usr/bin/x` and `/usr/bin/x/` alike as `usr/bin/x`.
fn normalize_path(path: &str) -> String {
    path.trim_start_matches("./").trim_start_matches('/').trim_end_matches('/').to_owned()
}

/// Hard links point at the first path of their group in sorted order, which carries the content: a link must come
/// after its target, and which of the paths the builder happened to write first must not matter.
fn retarget_hard_links(entries: &mut [Entry]) {
    let by_path: HashMap<String, usize> = entries.iter().enumerate().map(|(i, e)| (e.path.clone(), i)).collect();
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (index, entry) in entries.iter().enumerate() {
        if entry.kind.is_hard_link() {
            if let Some(&target) = entry.link.as_ref().and_then(|target| by_path.get(target)) {
                groups.entry(target).or_default().push(index);
            }
        }
    }
    for (target, mut members) in groups {
        members.push(target);
        members.sort_unstable();
        let original = entries[target].clone();
        let first_path = entries[members[0]].path.clone();
        for (position, &member) in members.iter().enumerate() {
            let entry = &mut entries[member];
            entry.mode = original.mode;
            entry.uid = original.uid;
            entry.gid = original.gid;
            if position == 0 {
                entry.kind = original.kind;
                entry.link = None;
                entry.content = original.content.clone();
            } else {
                entry.kind = tar::EntryType::Link;
                entry.link = Some(first_path.clone());
                entry.content.clear();
            }
        }
    }
}

/// A gzip stream of `data` that is the same on every machine: level 6, no name, no timestamp, OS "unknown".
pub fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut encoder =
        flate2::GzBuilder::new().mtime(0).operating_system(255).write(Vec::new(), flate2::Compression::new(6));
    encoder.write_all(data)?;
    Ok(encoder.finish()?)
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The image configuration reduced to what describes the image, with the layers' digests, `created` set to the
/// commit's time, and `labels` added; serialized canonically (sorted keys, no spaces).
pub fn normalize_config(
    saved: &Value,
    diff_ids: &[String],
    created: &str,
    labels: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let field = |name: &str| saved.get(name).cloned().unwrap_or(Value::Null);
    let mut settings = serde_json::Map::new();
    if let Some(Value::Object(config)) = saved.get("config") {
        // The OCI settings, and Docker's health check; everything else (hostname, attach flags, ...) is the builder's.
        for key in [
            "User",
            "ExposedPorts",
            "Env",
            "Entrypoint",
            "Cmd",
            "Volumes",
            "WorkingDir",
            "Labels",
            "StopSignal",
            "Healthcheck",
        ] {
            if let Some(value) = config.get(key).filter(|value| !value.is_null()) {
                settings.insert(key.to_owned(), value.clone());
            }
        }
    }
    let mut all_labels: BTreeMap<String, Value> = match settings.get("Labels") {
        Some(Value::Object(existing)) => existing.clone().into_iter().collect(),
        _ => BTreeMap::new(),
    };
    all_labels.extend(labels.iter().map(|(key, value)| (key.clone(), Value::from(value.as_str()))));
    if !all_labels.is_empty() {
        settings.insert("Labels".to_owned(), json!(all_labels));
    }
    // One history entry per layer, in the words of the Dockerfile step that made it; builders differ in the rest.
    let steps: Vec<String> = field("history")
        .as_array()
        .map(|history| {
            history
                .iter()
                .filter(|step| !step.get("empty_layer").and_then(Value::as_bool).unwrap_or(false))
                .map(|step| describe_step(step.get("created_by").and_then(Value::as_str).unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let history: Vec<Value> = (0..diff_ids.len())
        .map(|index| {
            let step = steps.get(index).cloned().unwrap_or_else(|| format!("layer {}", index + 1));
            json!({ "created": created, "created_by": step })
        })
        .collect();
    let mut config = json!({
        "architecture": field("architecture"),
        "os": field("os"),
        "created": created,
        "config": Value::Object(settings),
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": history,
    });
    if let Some(variant) = saved.get("variant").filter(|value| !value.is_null()) {
        config["variant"] = variant.clone();
    }
    canonical_json(&config)
}

/// A Dockerfile step as builders record it, without what varies between them (`/bin/sh -c #(nop)`, ` # buildkit`).
fn describe_step(created_by: &str) -> String {
    created_by.trim().trim_start_matches("/bin/sh -c #(nop) ").trim_end_matches(" # buildkit").trim().to_owned()
}

/// JSON with sorted keys and no insignificant white space: the same value always gives the same bytes.
pub fn canonical_json(value: &impl Serialize) -> Result<Vec<u8>> {
    // serde_json's map keeps keys sorted (no `preserve_order` feature), and `to_vec` writes no white space.
    Ok(serde_json::to_vec(&serde_json::to_value(value)?)?)
}

/// A descriptor of a blob in a layout.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
}

/// The digest of what the `index.json` of an OCI image layout names: its image manifest, or its image index.
pub fn layout_top_digest(layout: &Path) -> Result<String> {
    let path = layout.join("index.json");
    let index: Value =
        serde_json::from_slice(&std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?)
            .with_context(|| format!("{} is not JSON", path.display()))?;
    match index["manifests"].as_array().map(Vec::as_slice) {
        Some([top]) => {
            top["digest"].as_str().map(str::to_owned).with_context(|| format!("{} names no digest", path.display()))
        }
        _ => bail!("{} must name exactly one manifest", path.display()),
    }
}

/// An OCI image layout being written: blobs go in as they are made, `index.json` last.
pub struct LayoutWriter {
    dir: PathBuf,
}

impl LayoutWriter {
    /// Starts a layout in `dir`, which must not exist yet.
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir.join("blobs").join("sha256"))
            .with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        Ok(LayoutWriter { dir: dir.to_owned() })
    }

    /// Stores a blob under its digest and describes it.
    pub fn blob(&self, media_type: &str, bytes: &[u8]) -> Result<Descriptor> {
        let digest = sha256(bytes);
        let path = self.dir.join("blobs").join("sha256").join(&digest["sha256:".len()..]);
        // Content-addressed: a blob already there (linked from another layout) holds exactly these bytes.
        if !path.exists() {
            std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(Descriptor {
            media_type: media_type.to_owned(),
            digest,
            size: bytes.len() as u64,
            platform: None,
            annotations: BTreeMap::new(),
        })
    }

    /// Writes `index.json` naming `top` under `name`, and the `manifest.json` Engine 20.10's `docker load` reads
    /// (its `RepoTags` are the tags the images load under).
    pub fn finish(
        self,
        mut top: Descriptor,
        name: &str,
        docker_images: &[(String, Descriptor, Vec<Descriptor>)],
    ) -> Result<PathBuf> {
        top.annotations.insert("org.opencontainers.image.ref.name".to_owned(), name.to_owned());
        let index = json!({ "schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [top] });
        std::fs::write(self.dir.join("index.json"), canonical_json(&index)?)?;
        let blob_path = |descriptor: &Descriptor| format!("blobs/sha256/{}", &descriptor.digest["sha256:".len()..]);
        let docker: Vec<Value> = docker_images
            .iter()
            .map(|(tag, config, layers)| {
                json!({ "Config": blob_path(config), "RepoTags": [tag], "Layers": layers.iter().map(blob_path).collect::<Vec<_>>() })
            })
            .collect();
        std::fs::write(self.dir.join("manifest.json"), canonical_json(&docker)?)?;
        Ok(self.dir)
    }
}

#[cfg(test)]
mod tests;
