//! Container registries through `oci-client`: image references, tag-to-digest resolution, pushing an OCI
//! image layout byte for byte, the credentials `docker login` stored (its config file, credential store and
//! helpers), and how a registry that cannot be reached is told apart from one that refuses.

mod credentials;
mod layout;
mod session;

pub use layout::push_layout;
use session::is_not_found;
pub(crate) use session::Session;
pub use session::{unreachable, unreachable_line};

use std::fmt;

use anyhow::{bail, Context as _, Result};
use oci_client::manifest::{IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE};
use serde::Deserialize;

/// `HOST[:PORT]/PATH[:TAG][@sha256:HEX]`, always with an explicit registry host: release and verify never guess one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    pub fn parse(text: &str) -> Result<Self> {
        let usage = "write it as HOST[:PORT]/NAMESPACE/NAME[:TAG] or HOST[:PORT]/NAMESPACE/NAME@sha256:DIGEST";
        let (name, digest) = match text.split_once('@') {
            Some((name, digest)) => {
                let hex = digest.strip_prefix("sha256:").unwrap_or_default();
                if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()) {
                    bail!("`{text}`: the digest must be sha256: followed by 64 lowercase hex digits ({usage})");
                }
                (name, Some(digest.to_owned()))
            }
            None => (text, None),
        };
        let (registry, path) = name.split_once('/').with_context(|| format!("`{text}` names no registry: {usage}"))?;
        let looks_like_host = registry.contains('.') || registry.contains(':') || registry == "localhost";
        if !looks_like_host {
            bail!("`{text}` does not start with a registry host (`{registry}` is not one): {usage}");
        }
        // A colon after the last slash separates the tag; one before it belongs to the host's port.
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repository, tag)) if !tag.contains('/') => (repository, Some(tag.to_owned())),
            _ => (path, None),
        };
        if repository.is_empty() || repository.split('/').any(str::is_empty) {
            bail!("`{text}` has an empty path segment: {usage}");
        }
        if repository.chars().any(|c| c.is_ascii_uppercase()) {
            bail!("`{text}`: repository names must be lowercase (write `{}`)", repository.to_ascii_lowercase());
        }
        if tag.is_none() && digest.is_none() {
            bail!("`{text}` names neither a tag nor a digest: {usage}");
        }
        Ok(Self { registry: registry.to_owned(), repository: repository.to_owned(), tag, digest })
    }

    /// The reference pinned to a digest, without the tag: what gets signed and verified.
    pub fn pinned(&self, digest: &str) -> String {
        format!("{}/{}@{digest}", self.registry, self.repository)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// The digest a reference stands for: its own when pinned, else what the registry says the tag points to now.
pub fn resolve_digest(reference: &Reference) -> Result<String> {
    if let Some(digest) = &reference.digest {
        return Ok(digest.clone());
    }
    let tag = reference.tag.as_deref().expect("a reference without a digest has a tag");
    let session = Session::new(&reference.registry)?;
    let image = session.tagged(&reference.repository, tag);
    session.run(session.client.fetch_manifest_digest(&image, &session.auth)).map_err(|error| {
        if is_not_found(&error) {
            anyhow::anyhow!("{reference} does not exist in registry {} (no such repository or tag)", reference.registry)
        } else {
            session.explain(error, &reference.to_string())
        }
    })
}

/// The tags of a repository (`HOST[:PORT]/NAMESPACE/NAME`); none when the repository does not exist.
pub fn list_tags(repository: &str) -> Result<Vec<String>> {
    let reference = Reference::parse(&format!("{repository}:_"))?;
    let session = Session::new(&reference.registry)?;
    let image = session.tagged(&reference.repository, "_");
    match session.run(session.client.list_tags(&image, &session.auth, None, None)) {
        Ok(response) => Ok(response.tags),
        Err(error) if is_not_found(&error) => Ok(Vec::new()),
        Err(error) => Err(session.explain(error, &format!("the tags of {repository}"))),
    }
}

/// An image in a registry, pulled whole (manifest, config, layers): what `reproduce --release` compares with a build.
pub fn fetch_image(reference: &Reference) -> Result<crate::image_diff::ImageBlobs> {
    let pulled = Pulled::manifest(reference)?;
    Ok(crate::image_diff::ImageBlobs {
        config: pulled.blob(&pulled.manifest.config)?,
        layers: pulled.manifest.layers.iter().map(|layer| pulled.blob(layer)).collect::<Result<_>>()?,
        manifest_digest: pulled.digest,
    })
}

/// The configuration of an image in a registry (its labels, say).
pub fn fetch_config(reference: &Reference) -> Result<serde_json::Value> {
    let pulled = Pulled::manifest(reference)?;
    let config = pulled.blob(&pulled.manifest.config)?;
    serde_json::from_slice(&config).with_context(|| format!("the configuration of {} is not JSON", pulled.what))
}

/// The platform manifests of an image index, as `(linux/arm64, digest)`; `None` when the digest is an image manifest.
pub fn platform_manifests(reference: &Reference, digest: &str) -> Result<Option<Vec<(String, String)>>> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Document {
        media_type: Option<String>,
        #[serde(default)]
        manifests: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        digest: String,
        platform: Option<EntryPlatform>,
    }
    #[derive(Deserialize)]
    struct EntryPlatform {
        os: String,
        architecture: String,
    }
    let session = Session::new(&reference.registry)?;
    let what = reference.pinned(digest);
    let accepted = [OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE];
    let (bytes, _) = session
        .run(session.client.pull_manifest_raw(&session.pinned(&reference.repository, digest), &session.auth, &accepted))
        .map_err(|error| session.explain(error, &what))?;
    let document: Document = serde_json::from_slice(&bytes).with_context(|| format!("{what} is not a manifest"))?;
    if document.media_type.as_deref() != Some(OCI_IMAGE_INDEX_MEDIA_TYPE) && document.manifests.is_empty() {
        return Ok(None);
    }
    document
        .manifests
        .into_iter()
        .map(|entry| {
            let platform = entry
                .platform
                .with_context(|| format!("the index {what} lists {} without a platform", entry.digest))?;
            Ok((format!("{}/{}", platform.os, platform.architecture), entry.digest))
        })
        .collect::<Result<_>>()
        .map(Some)
}

/// What a reference stands for: its digest, and the image of each platform (the image itself, or each one of an
/// image index).
#[derive(Debug)]
pub struct Released {
    pub digest: String,
    pub index: bool,
    pub platforms: Vec<(crate::platform::Platform, String)>,
}

/// Resolves a reference to what it stands for, each platform's image digest included.
pub fn resolve_platforms(reference: &Reference) -> Result<Released> {
    let digest = resolve_digest(reference)?;
    match platform_manifests(reference, &digest)? {
        Some(manifests) => {
            let platforms = manifests
                .into_iter()
                .map(|(platform, digest)| Ok((platform.parse()?, digest)))
                .collect::<Result<_>>()?;
            Ok(Released { digest, index: true, platforms })
        }
        None => {
            let config = fetch_config(&Reference::parse(&reference.pinned(&digest))?)?;
            let architecture = config["architecture"].as_str().unwrap_or("amd64");
            Ok(Released { platforms: vec![(architecture.parse()?, digest.clone())], digest, index: false })
        }
    }
}

/// An image manifest pulled by digest, and the session to pull its blobs with.
struct Pulled {
    session: Session,
    image: oci_client::Reference,
    digest: String,
    what: String,
    manifest: PulledManifest,
}

#[derive(Deserialize)]
struct PulledManifest {
    config: PulledBlob,
    layers: Vec<PulledBlob>,
}

#[derive(Deserialize)]
struct PulledBlob {
    digest: String,
}

impl Pulled {
    fn manifest(reference: &Reference) -> Result<Pulled> {
        let digest = resolve_digest(reference)?;
        let session = Session::new(&reference.registry)?;
        let image = session.pinned(&reference.repository, &digest);
        let what = reference.pinned(&digest);
        let accepted = [OCI_IMAGE_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE];
        let (bytes, _) = session
            .run(session.client.pull_manifest_raw(&image, &session.auth, &accepted))
            .map_err(|error| session.explain(error, &what))?;
        let manifest = serde_json::from_slice(&bytes)
            .with_context(|| format!("{what} is not an image manifest (an index? name one platform's digest)"))?;
        Ok(Pulled { session, image, digest, what, manifest })
    }

    fn blob(&self, blob: &PulledBlob) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.session
            .run(self.session.client.pull_blob(&self.image, blob.digest.as_str(), &mut bytes))
            .map_err(|error| self.session.explain(error, &format!("blob {} of {}", blob.digest, self.what)))?;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::session::scheme;
    use super::*;

    #[test]
    fn parses_references_with_ports_tags_and_digests() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let reference = Reference::parse(&format!("127.0.0.1:5000/team/app@{digest}")).unwrap();
        assert_eq!(reference.registry, "127.0.0.1:5000");
        assert_eq!(reference.repository, "team/app");
        assert_eq!(reference.tag, None);
        assert_eq!(reference.pinned(&digest), format!("127.0.0.1:5000/team/app@{digest}"));
        let tagged = Reference::parse("ghcr.io/owner/app:0123456789ab").unwrap();
        assert_eq!((tagged.repository.as_str(), tagged.tag.as_deref()), ("owner/app", Some("0123456789ab")));
        assert_eq!(scheme(&tagged.registry), "https");
        assert_eq!(scheme("127.0.0.1:5000"), "http");
    }

    #[test]
    fn rejects_references_it_would_have_to_guess() {
        for (text, complaint) in [
            ("library/app:1", "registry host"),
            ("ghcr.io/app", "neither a tag nor a digest"),
            ("ghcr.io/Owner/app:1", "lowercase"),
            ("ghcr.io/owner/app@sha256:abc", "64 lowercase hex"),
        ] {
            let error = Reference::parse(text).unwrap_err().to_string();
            assert!(error.contains(complaint), "{text}: {error}");
        }
    }
}
