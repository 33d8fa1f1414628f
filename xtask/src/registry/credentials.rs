//! The credentials `docker login` stored: its config file, its credential store and the registries' helpers.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use oci_client::secrets::RegistryAuth;

/// The credentials `docker login` stored for a registry: in the Docker config file, its credential store or the
/// registry's credential helper; anonymous when there are none (enough for public images).
pub(super) fn credentials(registry: &str) -> Result<RegistryAuth> {
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
