//! OpenVEX (`https://openvex.dev/ns/v0.2.0`) from the scan policy's allow-list: each accepted vulnerability as a
//! `not_affected` statement about one released image, with the entry's reason and expiry as its impact statement.
//! `release` attaches it as a signed attestation to the image it names; `verify` checks it names that image.

use anyhow::{bail, Context as _, Result};
use jiff::civil::Date;
use serde_json::{json, Value};

use crate::policy::Policy;

/// cosign's name of the predicate type.
pub const COSIGN_TYPE: &str = "openvex";

/// The product an image is in OpenVEX: its package URL, pinned to its digest.
pub fn product(repository: &str, digest: &str) -> String {
    let name = repository.rsplit('/').next().unwrap_or(repository);
    format!("pkg:oci/{name}@{}?repository_url={repository}", digest.replace(':', "%3A"))
}

/// The document for the image `repository@digest`, from the entries of `policy` that are in force on `today`; `None`
/// when there is none.
pub fn document(policy: &Policy, repository: &str, digest: &str, today: Date, timestamp: &str) -> Option<Value> {
    let product = product(repository, digest);
    let statements: Vec<Value> = policy
        .allow
        .iter()
        .filter(|entry| entry.expires >= today)
        .map(|entry| {
            let package = entry.package.as_deref().map(|package| format!(" (package {package})")).unwrap_or_default();
            json!({
                "vulnerability": { "name": entry.id },
                "products": [{ "@id": product }],
                "status": "not_affected",
                "justification": "vulnerable_code_not_in_execute_path",
                "impact_statement": format!("{}{package}; accepted until {}", entry.reason, entry.expires),
            })
        })
        .collect();
    if statements.is_empty() {
        return None;
    }
    Some(json!({
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": format!("urn:distroless-python:vex:{product}"),
        "author": "cargo xtask release (scan-policy.toml and the image's [scan] allow-list)",
        "timestamp": timestamp,
        "version": 1,
        "statements": statements,
    }))
}

/// Checks that every statement of an OpenVEX predicate is about `repository@digest`, and returns how many there are.
pub fn check_products(predicate: &Value, repository: &str, digest: &str) -> Result<usize> {
    let expected = product(repository, digest);
    let statements = predicate["statements"].as_array().context("the VEX document has no statements")?;
    for statement in statements {
        let products: Vec<&str> = statement["products"]
            .as_array()
            .map(|products| products.iter().filter_map(|product| product["@id"].as_str()).collect())
            .unwrap_or_default();
        if !products.contains(&expected.as_str()) {
            bail!(
                "the VEX statement about {} is for {}, not for this image ({expected})",
                statement["vulnerability"]["name"],
                products.join(", ")
            );
        }
    }
    Ok(statements.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::AllowEntry;

    fn policy(expires: &str) -> Policy {
        let entry = AllowEntry {
            id: "CVE-2023-30861".into(),
            package: Some("flask".into()),
            reason: "no permanent sessions".into(),
            expires: expires.parse().unwrap(),
        };
        Policy { allow: vec![entry], ..Policy::default() }
    }

    #[test]
    fn allow_list_entries_in_force_become_statements_about_the_image() {
        let today: Date = "2026-06-01".parse().unwrap();
        let digest = format!("sha256:{}", "a".repeat(64));
        let vex = document(&policy("2026-12-31"), "ghcr.io/o/app", &digest, today, "2026-06-01T00:00:00Z").unwrap();
        let statement = &vex["statements"][0];
        assert_eq!(statement["vulnerability"]["name"], "CVE-2023-30861");
        assert_eq!(statement["status"], "not_affected");
        assert!(statement["impact_statement"].as_str().unwrap().contains("accepted until 2026-12-31"));
        assert_eq!(
            statement["products"][0]["@id"],
            format!("pkg:oci/app@sha256%3A{}?repository_url=ghcr.io/o/app", "a".repeat(64))
        );
        assert_eq!(check_products(&vex, "ghcr.io/o/app", &digest).unwrap(), 1);
        let other = check_products(&vex, "ghcr.io/o/other", &digest).unwrap_err().to_string();
        assert!(other.contains("not for this image"), "{other}");
        assert!(document(&policy("2026-05-31"), "ghcr.io/o/app", &digest, today, "t").is_none(), "expired: none");
    }
}
