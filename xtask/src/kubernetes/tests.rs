use super::policy::{self, Scope};
use super::*;
use crate::cosign::Tlog;
use crate::signing::{Identity, Verifier};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// The base's files as kustomize would list them (kustomize adds only the namespace): the checks run on the real
/// manifests in every `cargo test`, with kubectl or without.
fn base() -> Manifests {
    let dir = workspace().join(BASE);
    let kustomization = parse_documents(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap()).unwrap();
    let namespace = kustomization[0]["namespace"].as_str().unwrap().to_owned();
    let mut text = String::new();
    for resource in kustomization[0]["resources"].as_array().unwrap() {
        text.push_str("---\n");
        text.push_str(&std::fs::read_to_string(dir.join(resource.as_str().unwrap())).unwrap());
    }
    let mut manifests = Manifests::parse(&text).unwrap();
    for object in &mut manifests.objects {
        object["metadata"]["namespace"] = Value::from(namespace.as_str());
    }
    manifests
}

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn pins(names: &BTreeSet<String>) -> BTreeMap<String, String> {
    names.iter().map(|name| (name.clone(), format!("127.0.0.1:5000/team/{name}@{DIGEST}"))).collect()
}

#[test]
fn the_base_names_each_image_by_placeholder_and_pins_to_digests_only() {
    let mut manifests = base();
    let placeholders = manifests.placeholders();
    assert_eq!(placeholders, ["fake-shop", "giropops-senhas", "postgres"].map(String::from).into());
    // Every image is one of the project's folders: a placeholder nobody can build fails here, not in a cluster.
    for name in &placeholders {
        assert!(workspace().join("images").join(name).join("image.toml").is_file(), "{name}");
    }
    manifests.pin(&pins(&placeholders)).unwrap();
    manifests.check().unwrap();
    let text = to_yaml(&manifests.objects).unwrap();
    assert!(!text.contains(PLACEHOLDER), "{text}");
    for line in text.lines().filter(|line| line.trim_start().starts_with("image:")) {
        assert!(line.ends_with(&format!("@{DIGEST}")), "{line}");
    }
}

#[test]
fn every_pod_of_the_base_is_restricted_and_hardened() {
    let mut manifests = base();
    manifests.pin(&pins(&manifests.placeholders())).unwrap();
    let deployments = manifests.names_of("Deployment");
    assert_eq!(deployments, ["giropops-senhas", "fake-shop", "postgres"]);
    // Each field the check looks at, taken away in turn, fails the check with its name.
    let cases = [
        ("/spec/template/spec/securityContext/runAsNonRoot", "runAsNonRoot"),
        ("/spec/template/spec/securityContext/runAsUser", "runAsUser"),
        ("/spec/template/spec/securityContext/seccompProfile", "seccompProfile"),
        ("/spec/template/spec/automountServiceAccountToken", "automountServiceAccountToken"),
        ("/spec/template/spec/containers/0/securityContext/allowPrivilegeEscalation", "allowPrivilegeEscalation"),
        ("/spec/template/spec/containers/0/securityContext/readOnlyRootFilesystem", "readOnlyRootFilesystem"),
        ("/spec/template/spec/containers/0/securityContext/capabilities", "capabilities.drop"),
        ("/spec/template/spec/containers/0/readinessProbe", "readinessProbe"),
        ("/spec/template/spec/containers/0/livenessProbe", "livenessProbe"),
        ("/spec/template/spec/containers/0/resources/limits", "limits.memory"),
        ("/spec/template/spec/containers/0/volumeMounts", "/tmp"),
    ];
    for index in 0..manifests.objects.len() {
        if manifests.objects[index]["kind"] != "Deployment" {
            continue;
        }
        for (pointer, named) in cases {
            let mut broken = manifests.clone();
            let (parent, field) = pointer.rsplit_once('/').unwrap();
            broken.objects[index].pointer_mut(parent).unwrap().as_object_mut().unwrap().remove(field).unwrap();
            let error = broken.check().unwrap_err().to_string();
            assert!(error.contains(named), "{pointer}: {error}");
        }
    }
}

#[test]
fn hostile_pod_fields_and_secrets_are_refused() {
    let mut manifests = base();
    manifests.pin(&pins(&manifests.placeholders())).unwrap();
    let mut broken = manifests.clone();
    let pod = broken.objects.iter_mut().find(|object| object["kind"] == "Deployment").unwrap();
    pod["spec"]["template"]["spec"]["hostNetwork"] = Value::from(true);
    pod["spec"]["template"]["spec"]["volumes"][0] = serde_json::json!({ "name": "tmp", "hostPath": { "path": "/" } });
    pod["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] =
        serde_json::json!(["SYS_ADMIN"]);
    pod["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsUser"] = Value::from(0);
    pod["spec"]["template"]["spec"]["containers"][0]["image"] =
        Value::from("registry.example/app:1@".to_owned() + DIGEST);
    broken.objects.push(serde_json::json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "s" } }));
    let error = broken.check().unwrap_err().to_string();
    for named in ["hostNetwork", "hostPath", "capabilities.add", "non-root user", "not pinned", "Secret/s"] {
        assert!(error.contains(named), "{named}: {error}");
    }
}

#[test]
fn images_other_than_placeholders_and_placeholders_without_a_digest_are_refused() {
    let mut manifests = base();
    let mut pinned = pins(&manifests.placeholders());
    pinned.remove("postgres");
    let index = manifests.objects.iter().position(|object| object["kind"] == "Deployment").unwrap();
    manifests.objects[index]["spec"]["template"]["spec"]["containers"][0]["image"] = Value::from("redis:7");
    let error = manifests.pin(&pinned).unwrap_err().to_string();
    assert!(error.contains("image `redis:7` is not a placeholder"), "{error}");
    assert!(error.contains("no verified image for distroless-python/postgres"), "{error}");
}

#[test]
fn a_pinned_image_has_a_digest_and_no_tag() {
    assert!(is_pinned(&format!("127.0.0.1:5000/team/app@{DIGEST}")));
    for image in [
        "127.0.0.1:5000/team/app".to_owned(),
        "127.0.0.1:5000/team/app:v1".to_owned(),
        format!("127.0.0.1:5000/team/app:v1@{DIGEST}"),
        format!("127.0.0.1:5000/team/app@{}", DIGEST.to_uppercase()),
        "127.0.0.1:5000/team/app@sha256:abc".to_owned(),
    ] {
        assert!(!is_pinned(&image), "{image}");
    }
}

#[test]
fn the_manifests_read_one_secret_and_agree_with_the_images_settings() {
    let manifests = base();
    let secrets = manifests.secret_references();
    assert_eq!(secrets.len(), 1, "{secrets:?}");
    assert_eq!(secrets["fake-shop"], ["db-password", "secret-key"].map(String::from).into());
    // Ports and health endpoints come from each image's image.toml, as the Dockerfile's EXPOSE and HEALTHCHECK do.
    let ctx = Context::at(workspace()).unwrap();
    for image in ctx.images().iter().filter(|image| image.settings.release) {
        let deployment =
            manifests.objects.iter().find(|object| object["metadata"]["name"] == image.name.as_str()).unwrap();
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["ports"][0]["containerPort"], image.settings.port, "{}", image.name);
        let health = image.health().unwrap();
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], health.path.as_str(), "{}", image.name);
        let liveness = health.liveness_path.as_ref().unwrap_or(&health.path);
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], liveness.as_str(), "{}", image.name);
        let startup = &container["startupProbe"];
        let budget = startup["periodSeconds"].as_u64().unwrap() * startup["failureThreshold"].as_u64().unwrap();
        assert!(budget >= health.timeout.as_secs(), "{}: startup budget {budget}s < {:?}", image.name, health.timeout);
    }
}

#[test]
fn grace_periods_nest_inside_the_pods_termination_grace_period() {
    let manifests = base();
    let root = workspace();
    for name in ["giropops-senhas", "fake-shop"] {
        let launcher: toml::Table =
            std::fs::read_to_string(root.join(format!("images/{name}/launcher.toml"))).unwrap().parse().unwrap();
        let grace = launcher["grace_period"].as_str().unwrap();
        let launcher_grace: u64 = grace.strip_suffix('s').and_then(|seconds| seconds.parse().ok()).expect(grace);
        let gunicorn = std::fs::read_to_string(root.join(format!("apps/{name}/gunicorn.conf.py"))).unwrap();
        let graceful: u64 =
            gunicorn.lines().find_map(|line| line.strip_prefix("graceful_timeout = ")).unwrap().trim().parse().unwrap();
        let deployment = manifests.objects.iter().find(|object| object["metadata"]["name"] == name).unwrap();
        let pod = &deployment["spec"]["template"]["spec"];
        let termination = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
        let pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64().unwrap_or(0);
        assert!(graceful < launcher_grace, "{name}: gunicorn {graceful}s >= launcher {launcher_grace}s");
        assert!(pre_stop + launcher_grace < termination, "{name}: {pre_stop}s + {launcher_grace}s >= {termination}s");
    }
}

#[test]
fn more_or_fewer_than_one_namespace_is_refused() {
    let error = Manifests::parse("kind: Service\nmetadata: {name: s}\n").unwrap_err().to_string();
    assert!(error.contains("0 Namespace objects"), "{error}");
    let two = "kind: Namespace\nmetadata: {name: a}\n---\nkind: Namespace\nmetadata: {name: b}\n";
    assert!(Manifests::parse(two).unwrap_err().to_string().contains("2 Namespace objects"));
}

fn scope() -> Scope {
    Scope {
        released: vec!["127.0.0.1:5000/team/fake-shop".into(), "127.0.0.1:5000/team/giropops-senhas".into()],
        companions: vec!["127.0.0.1:5000/team/postgres".into()],
        source_repository: "https://github.com/owner/distroless-python".into(),
    }
}

fn template() -> String {
    std::fs::read_to_string(workspace().join(policy::TEMPLATE)).unwrap()
}

fn authorities(policies: &[Value], name: &str) -> Vec<Value> {
    let policy = policies.iter().find(|policy| policy["metadata"]["name"] == name).unwrap();
    policy["spec"]["authorities"].as_array().unwrap().clone()
}

fn globs(policies: &[Value], name: &str) -> Vec<String> {
    let policy = policies.iter().find(|policy| policy["metadata"]["name"] == name).unwrap();
    policy["spec"]["images"].as_array().unwrap().iter().map(|glob| glob["glob"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn the_policy_takes_the_public_key_verify_takes() {
    let folder = tempfile::tempdir().unwrap();
    let key = folder.path().join("cosign.pub");
    let pem = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n";
    std::fs::write(&key, pem).unwrap();
    let policies = policy::render(&template(), &Verifier::Key(key.clone()), Tlog::Offline, &scope()).unwrap();
    assert_eq!(policies.len(), 2);
    assert_eq!(
        globs(&policies, "distroless-python-signed"),
        [
            "127.0.0.1:5000/team/fake-shop@**",
            "127.0.0.1:5000/team/fake-shop:**",
            "127.0.0.1:5000/team/giropops-senhas@**",
            "127.0.0.1:5000/team/giropops-senhas:**",
            "127.0.0.1:5000/team/postgres@**",
            "127.0.0.1:5000/team/postgres:**",
        ]
    );
    assert_eq!(globs(&policies, "distroless-python-released").len(), 4, "the companion needs no SBOM or provenance");
    for name in ["distroless-python-signed", "distroless-python-released"] {
        for authority in authorities(&policies, name) {
            assert_eq!(authority["key"]["data"], pem, "{name}");
            // Offline, as `verify --insecure-ignore-tlog`: no transparency log to check.
            assert!(authority.get("ctlog").is_none() && authority.get("keyless").is_none(), "{authority}");
        }
    }
    let evidence = &authorities(&policies, "distroless-python-released")[0];
    let predicates: Vec<&str> = evidence["attestations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|attestation| attestation["predicateType"].as_str().unwrap())
        .collect();
    assert_eq!(predicates, ["https://cyclonedx.org/bom", "https://slsa.dev/provenance/v1"]);
    let rego = evidence["attestations"][1]["policy"]["data"].as_str().unwrap();
    assert!(rego.contains(r#"source.repository == "https://github.com/owner/distroless-python""#), "{rego}");
    assert!(rego.contains(&format!("buildType == \"{}\"", crate::provenance::BUILD_TYPE)), "{rego}");

    // With --tlog the signatures must be in Rekor.
    let logged = policy::render(&template(), &Verifier::Key(key.clone()), Tlog::Upload, &scope()).unwrap();
    assert_eq!(authorities(&logged, "distroless-python-signed")[0]["ctlog"]["url"], "https://rekor.sigstore.dev");

    // A private key is never put into a cluster object.
    std::fs::write(
        &key,
        "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nx\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
    )
    .unwrap();
    let error = policy::render(&template(), &Verifier::Key(key), Tlog::Offline, &scope()).unwrap_err();
    assert!(format!("{error:#}").contains("is not a PEM public key"), "{error:#}");
}

#[test]
fn the_policy_takes_the_keyless_identity_verify_takes() {
    let issuer = "https://token.actions.githubusercontent.com";
    let exact = "https://github.com/owner/distroless-python/.github/workflows/ci.yml@refs/heads/main";
    let verifier = Verifier::Keyless { identity: Identity::Exact(exact.into()), issuer: issuer.into() };
    let policies = policy::render(&template(), &verifier, Tlog::Upload, &scope()).unwrap();
    for name in ["distroless-python-signed", "distroless-python-released"] {
        let authority = &authorities(&policies, name)[0];
        assert!(authority.get("key").is_none(), "{authority}");
        assert_eq!(authority["keyless"]["url"], "https://fulcio.sigstore.dev");
        assert_eq!(authority["keyless"]["identities"], serde_json::json!([{ "issuer": issuer, "subject": exact }]));
        assert_eq!(authority["ctlog"]["url"], "https://rekor.sigstore.dev");
    }
    let pattern = r"^https://github\.com/owner/distroless-python/\.github/workflows/ci\.yml@refs/tags/v[0-9.]+$";
    let verifier = Verifier::Keyless { identity: Identity::Pattern(pattern.into()), issuer: issuer.into() };
    let policies = policy::render(&template(), &verifier, Tlog::Upload, &scope()).unwrap();
    let identities = &authorities(&policies, "distroless-python-signed")[0]["keyless"]["identities"];
    assert_eq!(identities, &serde_json::json!([{ "issuer": issuer, "subjectRegExp": pattern }]));
}

#[test]
fn a_repository_with_quotes_stays_one_rego_string() {
    let verifier = Verifier::Keyless { identity: Identity::Exact("x".into()), issuer: "y".into() };
    let scope = Scope { source_repository: "https://x/\" || true || \"".into(), ..scope() };
    let policies = policy::render(&template(), &verifier, Tlog::Upload, &scope).unwrap();
    let rego = authorities(&policies, "distroless-python-released")[0]["attestations"][1]["policy"]["data"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(rego.contains(r#"== "https://x/\" || true || \"""#), "{rego}");
}
