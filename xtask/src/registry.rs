//! Container registries over their HTTP API: image references, tag-to-digest resolution, referrers, and how a
//! registry that cannot be reached is told apart from one that refuses.

use std::fmt;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};

/// Every manifest type a tag may point to; without them a registry may answer with an older schema and its digest.
const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

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
    let mut session = Session::new(reference)?;
    let response = session.request(Method::Head, &format!("manifests/{tag}"), MANIFEST_TYPES)?;
    match response.status().as_u16() {
        200 => header(&response, "docker-content-digest").with_context(|| {
            format!("registry {} answered for {reference} without a Docker-Content-Digest header", reference.registry)
        }),
        404 => bail!("{reference} does not exist in registry {} (no such repository or tag)", reference.registry),
        status => bail!("{}", session.refusal(status, &reference.to_string())),
    }
}

/// An artifact that refers to an image: a signature, an attestation.
#[derive(Debug)]
pub struct Referrer {
    pub digest: String,
    /// `dev.sigstore.bundle.predicateType`, e.g. `https://sigstore.dev/cosign/sign/v1` for a cosign signature.
    pub predicate_type: Option<String>,
    pub created: Option<String>,
}

const PREDICATE_TYPE: &str = "dev.sigstore.bundle.predicateType";
const CREATED: &str = "org.opencontainers.image.created";

/// The referrers of `digest`: from the OCI 1.1 referrers API, or on registries without it from the fallback tag
/// `sha256-<hex>` that clients maintain instead.
pub fn referrers(reference: &Reference, digest: &str) -> Result<Vec<Referrer>> {
    let index_type = "application/vnd.oci.image.index.v1+json";
    let mut session = Session::new(reference)?;
    // Registries without the API answer 404, or some other refusal; either way the fallback tag is next.
    let mut index = session.get_json(&format!("referrers/{digest}"), index_type).ok().flatten();
    if index.is_none() {
        index = session.get_json(&format!("manifests/{}", digest.replace(':', "-")), index_type)?;
    }
    let descriptors = index
        .as_ref()
        .and_then(|index| index.get("manifests"))
        .and_then(|manifests| manifests.as_array())
        .cloned()
        .unwrap_or_default();
    let mut referrers = Vec::new();
    for descriptor in descriptors {
        let digest = descriptor["digest"].as_str().context("a referrer without digest")?.to_owned();
        // Older clients leave the annotations out of the fallback index; the manifest itself carries them.
        let annotations = match descriptor.get("annotations") {
            Some(annotations) if annotations.get(PREDICATE_TYPE).is_some() => annotations.clone(),
            _ => session
                .get_json(&format!("manifests/{digest}"), "application/vnd.oci.image.manifest.v1+json")?
                .and_then(|manifest| manifest.get("annotations").cloned())
                .unwrap_or_default(),
        };
        let text = |key: &str| annotations.get(key).and_then(|value| value.as_str()).map(str::to_owned);
        referrers.push(Referrer { predicate_type: text(PREDICATE_TYPE), created: text(CREATED), digest });
    }
    Ok(referrers)
}

#[derive(Clone, Copy)]
enum Method {
    Head,
    Get,
}

/// Requests to one repository, authorizing once when the registry asks for it.
struct Session<'a> {
    reference: &'a Reference,
    client: reqwest::blocking::Client,
    authorization: Option<String>,
}

impl<'a> Session<'a> {
    fn new(reference: &'a Reference) -> Result<Self> {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build()?;
        Ok(Self { reference, client, authorization: None })
    }

    /// `path` is relative to `/v2/<repository>/`.
    fn request(&mut self, method: Method, path: &str, accept: &str) -> Result<Response> {
        let response = self.send(method, path, accept)?;
        if response.status() != 401 || self.authorization.is_some() {
            return Ok(response);
        }
        let challenge = header(&response, "www-authenticate").unwrap_or_default();
        self.authorization = Some(self.authorize(&challenge)?);
        self.send(method, path, accept)
    }

    /// The JSON document at `path`, or None when the registry has none there.
    fn get_json(&mut self, path: &str, accept: &str) -> Result<Option<serde_json::Value>> {
        let response = self.request(Method::Get, path, accept)?;
        match response.status().as_u16() {
            200 => {
                let body = response.text()?;
                let document = serde_json::from_str(&body).with_context(|| {
                    format!("registry {} answered {path} with invalid JSON", self.reference.registry)
                })?;
                Ok(Some(document))
            }
            404 => Ok(None),
            status => bail!("{}", self.refusal(status, path)),
        }
    }

    fn send(&self, method: Method, path: &str, accept: &str) -> Result<Response> {
        let url = format!(
            "{}://{}/v2/{}/{path}",
            scheme(&self.reference.registry),
            self.reference.registry,
            self.reference.repository
        );
        let mut request = match method {
            Method::Head => self.client.head(&url),
            Method::Get => self.client.get(&url),
        }
        .header("Accept", accept);
        if let Some(authorization) = &self.authorization {
            request = request.header("Authorization", authorization);
        }
        request.send().map_err(|error| unreachable(&self.reference.registry, crate::process::error_chain(&error)))
    }

    /// The Authorization header for a challenge: the distribution token flow, with the credentials `docker login`
    /// stored when there are any, anonymously otherwise (enough for public images).
    fn authorize(&self, challenge: &str) -> Result<String> {
        let registry = &self.reference.registry;
        let credentials = docker_login(registry);
        if challenge.starts_with("Basic ") {
            return credentials
                .map(|auth| format!("Basic {auth}"))
                .with_context(|| format!("registry {registry} wants a login: run `docker login {registry}`"));
        }
        let parameters = challenge.strip_prefix("Bearer ").with_context(|| {
            format!("registry {registry} asks for `{challenge}` authentication, which xtask does not speak")
        })?;
        let fields = challenge_fields(parameters);
        let realm = fields
            .iter()
            .find(|(key, _)| key == "realm")
            .map(|(_, value)| value.as_str())
            .with_context(|| format!("registry {registry} sent a Bearer challenge without a realm"))?;
        let query: Vec<&(String, String)> = fields.iter().filter(|(key, _)| key != "realm").collect();
        let mut request = self.client.get(realm).query(&query);
        if let Some(auth) = credentials {
            request = request.header("Authorization", format!("Basic {auth}"));
        }
        let response = request.send().map_err(|error| unreachable(realm, crate::process::error_chain(&error)))?;
        if response.status() != 200 {
            bail!("the token service of registry {registry} ({realm}) answered HTTP {}", response.status());
        }
        let body: serde_json::Value = serde_json::from_str(&response.text()?)
            .with_context(|| format!("the token service of registry {registry} answered something other than JSON"))?;
        let token = body
            .get("token")
            .or_else(|| body.get("access_token"))
            .and_then(|token| token.as_str())
            .with_context(|| format!("the token service of registry {registry} answered without a token"))?;
        Ok(format!("Bearer {token}"))
    }

    fn refusal(&self, status: u16, what: &str) -> String {
        let registry = &self.reference.registry;
        match status {
            401 | 403 => {
                format!("registry {registry} refuses access to {what} (HTTP {status}): run `docker login {registry}`")
            }
            _ => format!("registry {registry} answered HTTP {status} for {what}"),
        }
    }
}

type Response = reqwest::blocking::Response;

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

fn header(response: &Response, name: &str) -> Option<String> {
    response.headers().get(name).and_then(|value| value.to_str().ok()).map(str::to_owned)
}

/// The base64 `user:password` that `docker login` stored for a registry in the Docker config file (credential
/// helpers are not consulted).
fn docker_login(registry: &str) -> Option<String> {
    let folder = std::env::var_os("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".docker")))?;
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("config.json")).ok()?).ok()?;
    let auths = config.get("auths")?.as_object()?;
    let entry = auths.get(registry).or_else(|| auths.get(&format!("https://{registry}")))?;
    entry.get("auth")?.as_str().filter(|auth| !auth.is_empty()).map(str::to_owned)
}

/// `realm="https://x/token",service="x",scope="repository:a/b:pull"` into its pairs (values may hold commas).
fn challenge_fields(parameters: &str) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    let mut rest = parameters.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_owned();
        let (value, remainder) = match after.strip_prefix('"') {
            Some(quoted) => quoted.split_once('"').unwrap_or((quoted, "")),
            None => after.split_once(',').unwrap_or((after, "")),
        };
        fields.push((key, value.to_owned()));
        rest = remainder.trim_start_matches(',').trim();
    }
    fields
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
    fn reads_bearer_challenges() {
        let fields =
            challenge_fields(r#"realm="https://ghcr.io/token",service="ghcr.io",scope="repository:o/a:pull,push""#);
        assert_eq!(
            fields,
            [
                ("realm".to_owned(), "https://ghcr.io/token".to_owned()),
                ("service".to_owned(), "ghcr.io".to_owned()),
                ("scope".to_owned(), "repository:o/a:pull,push".to_owned()),
            ]
        );
    }
}
