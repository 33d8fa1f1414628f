//! One registry session through oci-client, and what its errors mean: unreachable, refused, not found.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;

use super::credentials::credentials;
use super::layout;

/// Loopback registries speak plain HTTP, as Docker and cosign assume for them; every other one HTTPS.
pub(super) fn scheme(registry: &str) -> &'static str {
    let host = registry.rsplit_once(':').map_or(registry, |(host, _port)| host);
    if host == "localhost" || host.starts_with("127.") || host == "[::1]" {
        "http"
    } else {
        "https"
    }
}

/// One registry, through oci-client on a runtime of its own, with the credentials `docker login` stored for it.
pub(crate) struct Session {
    pub(super) registry: String,
    pub(super) runtime: tokio::runtime::Runtime,
    pub(super) client: oci_client::Client,
    pub(super) auth: RegistryAuth,
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
        // The raw calls (blobs, manifests by bytes) only authorize with credentials stored beforehand.
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

pub(super) fn is_not_found(error: &OciDistributionError) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_plain_http() {
        for registry in ["localhost:5000", "localhost", "127.0.0.1:5000", "127.1.2.3", "[::1]:5000"] {
            assert_eq!(scheme(registry), "http", "{registry}");
        }
        for registry in ["ghcr.io", "registry.local:5000", "10.0.0.1:5000", "128.0.0.1"] {
            assert_eq!(scheme(registry), "https", "{registry}");
        }
    }
}
