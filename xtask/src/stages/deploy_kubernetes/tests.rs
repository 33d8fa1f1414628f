use super::kubectl::new_secrets;
use super::*;

fn rendered() -> Rendered {
    Rendered {
        namespace: "distroless-python".into(),
        namespace_yaml: "kind: Namespace\n".into(),
        workloads_yaml: "kind: Deployment\n".into(),
        policy_yaml: "kind: ClusterImagePolicy\n".into(),
        policies: vec!["distroless-python-signed".into(), "distroless-python-released".into()],
        deployments: vec!["giropops-senhas".into(), "fake-shop".into(), "postgres".into()],
        secrets: [("fake-shop".to_owned(), ["db-password", "secret-key"].map(String::from).into())].into(),
        services: vec![("fake-shop".into(), vec![5000])],
    }
}

fn fresh_cluster() -> Facts {
    Facts { policy_controller: true, ..Facts::default() }
}

fn deployed_before() -> Facts {
    let rendered = rendered();
    Facts {
        namespace: true,
        policy_controller: true,
        policies: rendered.policies.iter().cloned().collect(),
        secrets: rendered.secrets.clone(),
    }
}

fn options(dry_run: bool) -> Options {
    Options { context: Some("test-cluster".into()), dry_run, timeout: "90s".into() }
}

fn args(step: &Step) -> String {
    step.args.join(" ")
}

#[test]
fn a_first_deploy_sets_the_cluster_up_then_dry_runs_then_applies_then_waits() {
    let steps = plan(&rendered(), &fresh_cluster(), &options(false)).unwrap();
    let shown: Vec<String> = steps.iter().map(args).collect();
    let apply = "--context test-cluster apply --server-side --field-manager=distroless-python-xtask -f -";
    let dry_run = "--context test-cluster apply --server-side --field-manager=distroless-python-xtask \
                   --dry-run=server --warnings-as-errors -f -";
    assert_eq!(
        shown,
        [
            apply,
            apply,
            "--context test-cluster create -f -",
            dry_run,
            apply,
            "--context test-cluster rollout status deployment/giropops-senhas --namespace distroless-python --timeout=90s",
            "--context test-cluster rollout status deployment/fake-shop --namespace distroless-python --timeout=90s",
            "--context test-cluster rollout status deployment/postgres --namespace distroless-python --timeout=90s",
        ]
    );
    let inputs: Vec<&Input> = steps.iter().map(|step| &step.input).collect();
    assert_eq!(inputs[0], &Input::Manifests("kind: Namespace\n".into()));
    assert_eq!(inputs[1], &Input::Manifests("kind: ClusterImagePolicy\n".into()));
    assert_eq!(
        inputs[2],
        &Input::NewSecrets { namespace: "distroless-python".into(), secrets: rendered().secrets },
        "the plan names the secrets; their values are made when the step runs"
    );
    assert_eq!(inputs[3], inputs[4], "what is applied is what was dry-run");
    assert!(steps.iter().all(|step| !step.what.is_empty() && !step.fix.is_empty()));
}

#[test]
fn a_later_deploy_keeps_the_secrets() {
    let steps = plan(&rendered(), &deployed_before(), &options(false)).unwrap();
    assert!(steps.iter().all(|step| !matches!(step.input, Input::NewSecrets { .. })), "{steps:#?}");
    assert_eq!(steps.len(), 7);
}

#[test]
fn without_policy_controller_no_policy_is_applied() {
    let facts = Facts { policy_controller: false, ..deployed_before() };
    let steps = plan(&rendered(), &facts, &Options { context: None, ..options(false) }).unwrap();
    assert!(steps.iter().all(|step| !step.what.contains("ClusterImagePolicies")), "{steps:#?}");
    assert_eq!(args(&steps[0]), "apply --server-side --field-manager=distroless-python-xtask -f -", "no --context");
}

#[test]
fn a_dry_run_changes_nothing() {
    let facts = Facts { secrets: BTreeMap::new(), ..deployed_before() };
    let steps = plan(&rendered(), &facts, &options(true)).unwrap();
    assert_eq!(steps.len(), 4, "namespace, policies, secrets, workloads: {steps:#?}");
    for step in &steps {
        assert!(step.args.contains(&"--dry-run=server".to_owned()), "{}", args(step));
        assert!(!step.args.contains(&"rollout".to_owned()));
    }
    assert_eq!(args(&steps[2]), "--context test-cluster create --dry-run=server -f -");
}

#[test]
fn a_dry_run_needs_the_namespace_and_the_policies_in_place() {
    let error = plan(&rendered(), &fresh_cluster(), &options(true)).unwrap_err().to_string();
    assert!(error.contains("namespace distroless-python does not exist yet"), "{error}");
    let facts = Facts { policies: BTreeSet::new(), ..deployed_before() };
    let error = plan(&rendered(), &facts, &options(true)).unwrap_err().to_string();
    assert!(error.contains("distroless-python-signed, distroless-python-released are not in the cluster"), "{error}");
    assert!(error.contains("kubectl apply --server-side -f out/kubernetes/cluster-image-policy.yaml"), "{error}");
}

#[test]
fn a_secret_without_a_key_the_pods_read_is_named() {
    let mut facts = deployed_before();
    facts.secrets.insert("fake-shop".into(), ["db-password".to_owned()].into());
    let error = plan(&rendered(), &facts, &options(false)).unwrap_err().to_string();
    assert!(error.contains("lacks the keys secret-key"), "{error}");
}

#[test]
fn new_secrets_are_random_and_only_in_what_kubectl_reads() {
    let secrets = rendered().secrets;
    let (first, values) = new_secrets("distroless-python", &secrets).unwrap();
    let (second, _) = new_secrets("distroless-python", &secrets).unwrap();
    assert_ne!(first, second);
    assert_eq!(values.len(), 2);
    assert!(values.iter().all(|value| value.len() == 64 && value.bytes().all(|byte| byte.is_ascii_hexdigit())));
    let documents = crate::kubernetes::parse_documents(&first).unwrap();
    assert_eq!(documents[0]["metadata"]["namespace"], "distroless-python");
    for (key, value) in ["db-password", "secret-key"].iter().zip(&values) {
        assert_eq!(documents[0]["stringData"][key], value.as_str());
    }
    // A plan holds none of it.
    let plan = format!("{:?}", plan(&rendered(), &fresh_cluster(), &options(false)).unwrap());
    assert!(values.iter().all(|value| !plan.contains(value.as_str())));
}

#[test]
fn image_overrides_are_name_equals_reference() {
    let digest = format!("sha256:{}", "a".repeat(64));
    let (name, reference) = parse_override(&format!("postgres=registry.example/db/postgres@{digest}")).unwrap();
    assert_eq!((name.as_str(), reference), ("postgres", format!("registry.example/db/postgres@{digest}")));
    assert!(parse_override("postgres").unwrap_err().contains("NAME=IMAGE"));
}
