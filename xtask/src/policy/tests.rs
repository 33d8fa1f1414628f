use super::*;
use crate::trivy::{self, Report};

/// The test reports list no packages: expecting none keeps these tests on the findings.
const EVERYTHING: Expectations = Expectations { os_packages: false, python_packages: false };
fn report_with(vulns: &[(&str, &str, &str, &str)], secret: bool) -> Report {
    let vulnerabilities: Vec<serde_json::Value> = vulns
        .iter()
        .map(|(id, package, fixed, severity)| {
            serde_json::json!({
                "VulnerabilityID": id, "PkgName": package, "InstalledVersion": "1.0",
                "FixedVersion": fixed, "Severity": severity, "Title": format!("{id} title"),
            })
        })
        .collect();
    let mut results = vec![serde_json::json!({
        "Target": "Python", "Class": "lang-pkgs", "Type": "python-pkg", "Vulnerabilities": vulnerabilities,
    })];
    if secret {
        results.push(serde_json::json!({
            "Target": "/app/settings.py", "Class": "secret",
            "Secrets": [{"RuleID": "aws-access-key-id", "Category": "AWS", "Severity": "CRITICAL",
                         "Title": "AWS Access Key ID", "StartLine": 3, "EndLine": 3, "Match": "AWS_KEY=****"}],
        }));
    }
    let text = serde_json::json!({"SchemaVersion": 2, "ArtifactName": "test", "Results": results}).to_string();
    trivy::parse(&text).unwrap()
}

fn date(text: &str) -> Date {
    text.parse().unwrap()
}

fn allow(id: &str, package: Option<&str>, expires: &str) -> AllowEntry {
    AllowEntry {
        id: id.into(),
        package: package.map(Into::into),
        reason: "accepted for the test".into(),
        expires: date(expires),
    }
}

const TODAY: &str = "2026-06-15";

#[test]
fn the_threshold_decides_by_default_high_and_critical() {
    let report = report_with(
        &[("CVE-1", "a", "2.0", "MEDIUM"), ("CVE-2", "b", "2.0", "HIGH"), ("CVE-3", "c", "2.0", "CRITICAL")],
        false,
    );
    let decision = Policy::default().evaluate(&report, date(TODAY), &EVERYTHING);
    let failing: Vec<&str> = decision.failing.iter().map(|(finding, _)| finding.id.as_str()).collect();
    assert_eq!(failing, ["CVE-2", "CVE-3"]);
    assert!(!decision.passed());
    assert_eq!(decision.below_threshold, 1);
    assert_eq!(decision.counts[&Severity::Medium], 1);

    let strict = Policy { min_severity: Severity::Medium, ..Policy::default() };
    assert_eq!(strict.evaluate(&report, date(TODAY), &EVERYTHING).failing.len(), 3);
    let lenient = Policy { min_severity: Severity::Critical, ..Policy::default() };
    assert_eq!(lenient.evaluate(&report, date(TODAY), &EVERYTHING).failing.len(), 1);
}

#[test]
fn findings_without_a_fix_only_fail_when_only_fixed_is_off() {
    let report = report_with(&[("CVE-1", "a", "", "CRITICAL")], false);
    let decision = Policy::default().evaluate(&report, date(TODAY), &EVERYTHING);
    assert!(decision.passed(), "{decision:?}");
    let all = Policy { only_fixed: false, ..Policy::default() };
    assert!(!all.evaluate(&report, date(TODAY), &EVERYTHING).passed());
}

#[test]
fn an_allow_entry_matches_by_id_and_optionally_by_package() {
    let report = report_with(&[("CVE-1", "flask", "2.2.5", "HIGH"), ("CVE-1", "werkzeug", "3.0.1", "HIGH")], false);
    let by_id = Policy { allow: vec![allow("cve-1", None, "2026-12-31")], ..Policy::default() };
    let decision = by_id.evaluate(&report, date(TODAY), &EVERYTHING);
    assert!(decision.passed());
    assert_eq!(decision.excused.len(), 2);

    let by_package = Policy { allow: vec![allow("CVE-1", Some("Flask"), "2026-12-31")], ..Policy::default() };
    let decision = by_package.evaluate(&report, date(TODAY), &EVERYTHING);
    assert_eq!(decision.excused.len(), 1);
    assert_eq!(decision.failing.len(), 1);
    assert_eq!(decision.failing[0].0.package, "werkzeug");
    assert!(decision.failing[0].1.is_none());

    let other_id = Policy { allow: vec![allow("CVE-2", None, "2026-12-31")], ..Policy::default() };
    assert_eq!(other_id.evaluate(&report, date(TODAY), &EVERYTHING).failing.len(), 2);
}

#[test]
fn an_expired_entry_no_longer_excuses_and_the_gate_says_so() {
    let report = report_with(&[("CVE-2023-30861", "flask", "2.2.5", "HIGH")], false);
    let on_its_last_day = Policy { allow: vec![allow("CVE-2023-30861", None, TODAY)], ..Policy::default() };
    assert!(on_its_last_day.evaluate(&report, date(TODAY), &EVERYTHING).passed());

    let expired = Policy { allow: vec![allow("CVE-2023-30861", Some("flask"), "2026-06-14")], ..Policy::default() };
    let decision = expired.evaluate(&report, date(TODAY), &EVERYTHING);
    assert!(!decision.passed());
    assert_eq!(decision.failing[0].1.as_ref().map(|entry| entry.expires), Some(date("2026-06-14")));
    let message = decision.message("demo", &expired);
    assert!(message.contains("FAILED"), "{message}");
    assert!(message.contains("CVE-2023-30861 (package flask) expired on 2026-06-14"), "{message}");
}

#[test]
fn secrets_always_fail() {
    let report = report_with(&[], true);
    let anything_goes = Policy {
        min_severity: Severity::Critical,
        only_fixed: true,
        unknown_as: None,
        allow: vec![allow("aws-access-key-id", None, "2099-01-01")],
    };
    let decision = anything_goes.evaluate(&report, date(TODAY), &EVERYTHING);
    assert!(!decision.passed());
    assert_eq!(decision.secrets[0].id, "aws-access-key-id");
    let message = decision.message("demo", &anything_goes);
    assert!(message.contains("1 secret(s)"), "{message}");
    assert!(!message.contains("****"), "the match never reaches the output: {message}");
}

#[test]
fn policy_files_and_overrides() {
    let mut policy = Policy::parse(
        r#"
        min_severity = "CRITICAL"
        [[allow]]
        id = "CVE-1"
        reason = "not reachable"
        expires = 2026-12-31
        [[allow]]
        id = "CVE-2"
        package = "flask"
        reason = "upgrade planned"
        expires = "2027-01-31"
        "#,
    )
    .unwrap();
    assert_eq!(policy.min_severity, Severity::Critical);
    assert!(policy.only_fixed);
    assert_eq!(policy.allow[0].expires, date("2026-12-31"));
    assert_eq!(policy.allow[1].expires, date("2027-01-31"));

    let image: PolicyOverride = toml::from_str("min_severity = \"HIGH\"\nonly_fixed = false\n[[allow]]\nid = \"CVE-3\"\nreason = \"r\"\nexpires = \"2027-02-28\"").unwrap();
    policy.apply(&image).unwrap();
    assert_eq!((policy.min_severity, policy.only_fixed, policy.allow.len()), (Severity::High, false, 3));

    let unknown = Policy::parse("min_severity = \"HIGH\"\nseverity_threshold = 3").unwrap_err();
    assert!(format!("{unknown:#}").contains("unknown field"), "{unknown:#}");
    let bad_date = Policy::parse("[[allow]]\nid = \"CVE-1\"\nreason = \"r\"\nexpires = \"2026-02-30\"").unwrap_err();
    assert!(format!("{bad_date:#}").contains("2026-02-30"), "{bad_date:#}");
    let no_reason = Policy::parse("[[allow]]\nid = \"CVE-1\"\nreason = \" \"\nexpires = \"2026-02-28\"").unwrap_err();
    assert!(format!("{no_reason:#}").contains("empty `reason`"), "{no_reason:#}");
}

#[test]
fn today_is_a_real_calendar_day() {
    assert!(today() > date("2025-01-01"));
}

#[test]
fn a_report_that_saw_nothing_or_missed_a_part_of_the_image_fails_closed() {
    let empty = trivy::parse(r#"{"SchemaVersion": 2, "Results": []}"#).unwrap();
    let decision = Policy::default().evaluate(&empty, date(TODAY), &EVERYTHING);
    assert!(!decision.passed());
    assert!(decision.message("demo", &Policy::default()).contains("no results at all"), "{decision:?}");

    let python_only = trivy::parse(
        r#"{"SchemaVersion": 2, "Results": [{"Target": "Python", "Class": "lang-pkgs", "Packages": [{"Name": "flask"}]}]}"#,
    )
    .unwrap();
    let debian_image = Expectations { os_packages: true, python_packages: true };
    let decision = Policy::default().evaluate(&python_only, date(TODAY), &debian_image);
    assert!(!decision.passed());
    let message = decision.message("demo", &Policy::default());
    assert!(message.contains("no Debian package") && !message.contains("no Python package"), "{message}");
    assert!(Policy::default()
        .evaluate(&python_only, date(TODAY), &Expectations { os_packages: false, python_packages: true })
        .passed());
}

#[test]
fn a_fixable_unknown_counts_as_the_threshold_unless_the_policy_says_otherwise() {
    let report = report_with(&[("CVE-9", "a", "2.0", "UNKNOWN")], false);
    assert!(!Policy::default().evaluate(&report, date(TODAY), &EVERYTHING).passed(), "UNKNOWN is HIGH by default");
    let lenient = Policy { unknown_as: Some(Severity::Low), ..Policy::default() };
    assert!(lenient.evaluate(&report, date(TODAY), &EVERYTHING).passed());
    let unfixed = report_with(&[("CVE-9", "a", "", "UNKNOWN")], false);
    assert!(Policy::default().evaluate(&unfixed, date(TODAY), &EVERYTHING).passed(), "only fixable findings fail");
}

#[test]
fn an_allow_entry_that_excuses_nothing_is_stale() {
    let report = report_with(&[("CVE-1", "flask", "2.2.5", "HIGH")], false);
    let policy = Policy {
        allow: vec![allow("CVE-1", Some("flask"), "2026-12-31"), allow("CVE-OLD", None, "2026-12-31")],
        ..Policy::default()
    };
    let decision = policy.evaluate(&report, date(TODAY), &EVERYTHING);
    assert!(decision.passed());
    let stale: Vec<&str> = decision.stale.iter().map(|entry| entry.id.as_str()).collect();
    assert_eq!(stale, ["CVE-OLD"]);
    assert!(decision.message("demo", &policy).contains("stale allow-list entry CVE-OLD"));
}
