//! Container registries through `oci-client`: image references, tag-to-digest resolution, pushing an OCI
//! image layout byte for byte, the credentials `docker login` stored (its config file, credential store and
//! helpers), and how a registry that cannot be reached is told apart from one that refuses.

mod layout;

pub use layout::push_layout;

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE};
use oci_client::secrets::RegistryAuth;
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

/// Loopback registries speak plain HTTP, as Docker and cosign assume for them; every other one HTTPS.
fn scheme(registry: &str) -> &'static str {
    let host = registry.rsplit_once(':').map_or(registry, |(host, _port)| host);
    if host == "localhost" || host.starts_with("127.") || host == "[::1]" {
        "http"
    } else {
        "https"
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

/// One registry, through oci-client on a runtime of its own, with the credentials `docker login` stored for it.
pub(crate) struct Session {
    registry: String,
    runtime: tokio::runtime::Runtime,
    client: oci_client::Client,
    auth: RegistryAuth,
}

impl Session {
    pub(crate) fn new(registry: &str) -> Result<Self> {
        // reqwest is built with rustls but no crypto provider of its own: ring, already in the tree, is the one.
        // Installing fails harmlessly when a provider is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the runtime of the registry client")?;
        let protocol = match scheme(registry) {
            "http" => ClientProtocol::HttpsExcept(vec![registry.to_owned()]),
            _ => ClientProtocol::Https,
        };
        let config = ClientConfig {
            protocol,
            connect_timeout: Some(Duration::from_secs(30)),
            read_timeout: Some(Duration::from_secs(300)),
            // Indexes are pushed and resolved as they are, never resolved to one platform.
            platform_resolver: None,
            user_agent: concat!("xtask/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        let client = oci_client::Client::try_from(config)
            .map_err(|error| anyhow::anyhow!("setting up the registry client: {error}"))?;
        let auth = credentials(registry)?;
        let session = Self { registry: registry.to_owned(), runtime, client, auth };
        // The raw calls (blobs, manifests by bytes, referrers) only authorize with credentials stored beforehand.
        let key = session.tagged("_", "_").resolve_registry().to_owned();
        session.runtime.block_on(session.client.store_auth_if_needed(&key, &session.auth));
        Ok(session)
    }

    pub(crate) fn run<T>(
        &self,
        call: impl Future<Output = oci_client::errors::Result<T>>,
    ) -> oci_client::errors::Result<T> {
        self.runtime.block_on(call)
    }

    pub(crate) fn tagged(&self, repository: &str, tag: &str) -> oci_client::Reference {
        oci_client::Reference::with_tag(self.registry.clone(), repository.to_owned(), tag.to_owned())
    }

    pub(crate) fn pinned(&self, repository: &str, digest: &str) -> oci_client::Reference {
        oci_client::Reference::with_digest(self.registry.clone(), repository.to_owned(), digest.to_owned())
    }

    /// Puts a manifest's bytes unchanged (by tag or digest, as `image` says) and checks the digest the registry
    /// reports for them.
    pub(crate) fn put_manifest(
        &self,
        image: &oci_client::Reference,
        manifest: &layout::Manifest,
        repository: &str,
    ) -> Result<()> {
        let what = match image.tag() {
            Some(tag) => format!("{repository}:{tag}"),
            None => format!("{repository}@{}", manifest.digest),
        };
        let content_type = http::HeaderValue::from_str(&manifest.media_type)
            .with_context(|| format!("the media type of {what} is not a header value"))?;
        let location = self
            .run(self.client.push_manifest_raw(image, manifest.bytes.clone(), content_type))
            .map_err(|error| self.explain(error, &format!("the manifest of {what}")))?;
        // Docker-Content-Digest is not handed out by oci-client; the Location it answers with ends in the same.
        if let Some(stored) = location.rsplit('/').next().filter(|last| last.starts_with("sha256:")) {
            if stored != manifest.digest {
                bail!(
                    "registry {} stored {what} as {stored}, not as {}: it changed the manifest's bytes",
                    self.registry,
                    manifest.digest
                );
            }
        }
        Ok(())
    }

    /// One line that says what went wrong with `what` and, where there is one, the fix.
    pub(crate) fn explain(&self, error: OciDistributionError, what: &str) -> anyhow::Error {
        let registry = &self.registry;
        if let Some(cause) = unreachable_cause(&error) {
            return unreachable(registry, cause);
        }
        if let Some(answer) = refusal(&error) {
            return anyhow::anyhow!(
                "registry {registry} refused {what} ({answer}): log in with `docker login {registry}`"
            );
        }
        let text = one_line(&crate::process::error_chain(&error));
        if text.contains("MANIFEST_BLOB_UNKNOWN") {
            return anyhow::anyhow!(
                "registry {registry} refused {what}: it lacks a blob or manifest the manifest refers to ({text})"
            );
        }
        anyhow::anyhow!("registry {registry}: {what} failed: {text}")
    }
}

/// Why the registry could not be reached at all, if that is what the error says.
fn unreachable_cause(error: &OciDistributionError) -> Option<String> {
    match error {
        OciDistributionError::RequestError(error)
            if error.is_connect() || error.is_timeout() || (error.is_request() && error.status().is_none()) =>
        {
            // reqwest's own message is only the URL; its sources say what happened.
            let cause = std::error::Error::source(error).map_or_else(|| error.to_string(), crate::process::error_chain);
            Some(one_line(&cause))
        }
        _ => None,
    }
}

/// What the registry answered, if it refused for want of (valid) credentials.
fn refusal(error: &OciDistributionError) -> Option<String> {
    match error {
        OciDistributionError::UnauthorizedError { .. } => Some("HTTP 401".to_owned()),
        OciDistributionError::AuthenticationFailure(reason) => {
            Some(format!("its token service said: {}", one_line(reason)))
        }
        OciDistributionError::ServerError { code: code @ (401 | 403), .. } => Some(format!("HTTP {code}")),
        OciDistributionError::RequestError(error) => error
            .status()
            .filter(|status| matches!(status.as_u16(), 401 | 403))
            .map(|status| format!("HTTP {}", status.as_u16())),
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .find(|error| matches!(error.code, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            .map(|error| one_line(&format!("{:?}: {}", error.code, error.message))),
        _ => None,
    }
}

fn is_not_found(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code: 404, .. } => true,
        OciDistributionError::RequestError(error) => error.status().is_some_and(|status| status.as_u16() == 404),
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|error| {
            matches!(
                error.code,
                OciErrorCode::ManifestUnknown
                    | OciErrorCode::NameUnknown
                    | OciErrorCode::NotFound
                    | OciErrorCode::BlobUnknown
            )
        }),
        _ => false,
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What the Docker CLI, cosign and other Go clients print when they cannot reach a registry at all.
const UNREACHABLE: [&str; 5] = [
    "connection refused",
    "no such host",
    "i/o timeout",
    "network is unreachable",
    "server gave HTTP response to HTTPS client",
];

/// The line of a client's output that says the registry could not be reached, if one does.
pub fn unreachable_line(output: &str) -> Option<&str> {
    output.lines().find(|line| UNREACHABLE.iter().any(|needle| line.contains(needle))).map(str::trim)
}

pub fn unreachable(registry: &str, error: impl fmt::Display) -> anyhow::Error {
    anyhow::anyhow!(
        "registry {registry} is unreachable ({error}): check that it is running and that `{registry}` is the right address"
    )
}

/// The credentials `docker login` stored for a registry: in the Docker config file, its credential store or the
/// registry's credential helper; anonymous when there are none (enough for public images).
fn credentials(registry: &str) -> Result<RegistryAuth> {
    credentials_in(docker_config().as_deref(), registry)
}

/// [`credentials`] from the Docker config file `config`.
fn credentials_in(config: Option<&Path>, registry: &str) -> Result<RegistryAuth> {
    use docker_credential::{CredentialRetrievalError as Error, DockerCredential};
    // Docker files Docker Hub's credentials under its old index address.
    let server = match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "https://index.docker.io/v1/",
        other => other,
    };
    let Some(config) = config.filter(|path| path.is_file()) else { return Ok(RegistryAuth::Anonymous) };
    let shown = config.display();
    let file = std::fs::File::open(config).with_context(|| format!("reading {shown}"))?;
    match docker_credential::get_credential_from_reader(std::io::BufReader::new(file), server) {
        Ok(DockerCredential::UsernamePassword(username, password)) => Ok(RegistryAuth::Basic(username, password)),
        Ok(DockerCredential::IdentityToken(_)) => bail!(
            "the Docker credentials for {registry} are an identity token, which xtask cannot use: log in with a \
             user name and password or access token (`docker login {registry} -u USER`)"
        ),
        Err(Error::NoCredentialConfigured | Error::ConfigNotFound) => Ok(RegistryAuth::Anonymous),
        Err(Error::ConfigReadError) => bail!("{shown} is not a Docker config file (invalid JSON): fix or remove it"),
        Err(Error::HelperFailure { stdout, stderr, .. })
            if format!("{stdout}{stderr}").to_ascii_lowercase().contains("credentials not found") =>
        {
            Ok(RegistryAuth::Anonymous)
        }
        Err(Error::HelperFailure { helper, stderr, .. }) => {
            let last = stderr.lines().rev().find(|line| !line.trim().is_empty()).unwrap_or_default().trim();
            bail!("{helper} failed for {registry} ({last}): run `docker login {registry}` again")
        }
        Err(Error::HelperCommunicationError) => bail!(
            "the Docker credential helper that {shown} names for {registry} could not be run: install \
             docker-credential-<helper> on PATH, or change credsStore / credHelpers there"
        ),
        Err(error) => bail!("the Docker credentials for {registry} in {shown} are unusable ({error}): run `docker login {registry}` again"),
    }
}

/// Docker's config file: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
fn docker_config() -> Option<PathBuf> {
    let folder = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".docker")))?;
    Some(folder.join("config.json"))
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn loopback_registries_are_plain_http() {
        for registry in ["localhost:5000", "localhost", "127.0.0.1:5000", "127.1.2.3", "[::1]:5000"] {
            assert_eq!(scheme(registry), "http", "{registry}");
        }
        for registry in ["ghcr.io", "registry.local:5000", "10.0.0.1:5000", "128.0.0.1"] {
            assert_eq!(scheme(registry), "https", "{registry}");
        }
    }

    #[test]
    fn credentials_come_from_the_docker_config() {
        let folder = tempfile::tempdir().unwrap();
        let config = folder.path().join("config.json");
        let write = |text: &str| std::fs::write(&config, text).unwrap();
        // "xtask:secret" in base64.
        write(
            r#"{"auths":{"127.0.0.1:5000":{"auth":"eHRhc2s6c2VjcmV0"},"https://ghcr.io":{"auth":"eHRhc2s6c2VjcmV0"}}}"#,
        );
        let basic = RegistryAuth::Basic("xtask".into(), "secret".into());
        assert_eq!(credentials_in(Some(&config), "127.0.0.1:5000").unwrap(), basic);
        assert_eq!(credentials_in(Some(&config), "ghcr.io").unwrap(), basic);
        assert_eq!(credentials_in(Some(&config), "127.0.0.1:5001").unwrap(), RegistryAuth::Anonymous);
        assert_eq!(credentials_in(None, "ghcr.io").unwrap(), RegistryAuth::Anonymous);
        assert_eq!(credentials_in(Some(&folder.path().join("none.json")), "ghcr.io").unwrap(), RegistryAuth::Anonymous);

        write(r#"{"auths":{"ghcr.io":{"identitytoken":"refresh"}}}"#);
        let error = credentials_in(Some(&config), "ghcr.io").unwrap_err().to_string();
        assert!(error.contains("identity token") && error.contains("docker login ghcr.io"), "{error}");
        assert!(!error.contains("refresh"), "{error}");

        write(r#"{"credsStore":"xtask-surely-not-installed"}"#);
        let error = credentials_in(Some(&config), "ghcr.io").unwrap_err().to_string();
        assert!(error.contains("could not be run") && error.contains("credsStore"), "{error}");

        write("{not json");
        let error = credentials_in(Some(&config), "ghcr.io").unwrap_err().to_string();
        assert!(error.contains("is not a Docker config file"), "{error}");
    }
}
