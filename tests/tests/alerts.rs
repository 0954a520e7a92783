//! The chart's PrometheusRule: `promtool check rules` on what the chart renders (with default
//! and with other values), and `promtool test rules` (tests/alerts/) exercising every alert
//! expression against series shaped like a real SCIM server's /metrics. promtool comes from
//! Debian's package (tests/tools/install-promtool.sh).

use std::path::{Path, PathBuf};
use std::process::Command;

use kube_scim_tests::{helm, must_succeed, promtool, repo_root};
use serde_norway::Value;

/// The rule groups (`spec`) of the PrometheusRule the chart renders with `values`.
fn rendered_rules(values: &[&str], json_values: &[&str]) -> Value {
    let mut cmd = Command::new(helm().unwrap());
    cmd.args(["template", "kube-scim"])
        .arg(repo_root().join("charts/kube-scim"))
        .args([
            "--namespace",
            "kube-scim",
            "--show-only",
            "templates/prometheusrule.yaml",
        ])
        .args(["--set", "prometheusRule.enabled=true"])
        .args(["--api-versions", "monitoring.coreos.com/v1/PrometheusRule"]);
    for v in values {
        cmd.args(["--set", v]);
    }
    // A float from --set would be a string: numbers go as JSON.
    for v in json_values {
        cmd.args(["--set-json", v]);
    }
    let out = must_succeed(&mut cmd).stdout;
    let rule: Value = serde_norway::from_slice(&out).unwrap();
    assert_eq!(rule["kind"], Value::from("PrometheusRule"));
    rule["spec"].clone()
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kube-scim-alerts-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_rules(dir: &Path, spec: &Value) -> PathBuf {
    let path = dir.join("rules.yaml");
    std::fs::write(&path, serde_norway::to_string(spec).unwrap()).unwrap();
    path
}

/// The directories the promtool tests list for KubeScimNoProvisioningRequests (opt-in); their
/// quiet tenant-d/quiet is left out.
const WATCHED: &str = "prometheusRule.noProvisioningRequestDirectories={tenant-a/contoso,tenant-b/fabrikam,tenant-c/northwind}";

/// Every rule of every group.
fn rules_of(spec: &Value) -> Vec<Value> {
    spec["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap().clone())
        .collect()
}

/// GitHub's anchor of a Markdown heading.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_alert_fires_on_real_series_and_only_then() {
    let dir = temp_dir("test");
    let spec = rendered_rules(&[WATCHED], &[]);
    let rules = write_rules(&dir, &spec);
    let names: Vec<String> = rules_of(&spec)
        .iter()
        .filter_map(|r| r["alert"].as_str().map(str::to_string))
        .collect();
    assert!(names.len() >= 11, "{names:?}");
    let tests =
        std::fs::read_to_string(repo_root().join("tests/alerts/kube-scim-alerts.test.yaml"))
            .unwrap();
    for name in &names {
        assert!(
            tests.contains(&format!("alertname: {name}")),
            "alert {name} has no promtool test in tests/alerts/"
        );
    }
    std::fs::write(dir.join("kube-scim-alerts.test.yaml"), tests).unwrap();
    let promtool = promtool().unwrap();
    must_succeed(Command::new(&promtool).args(["check", "rules"]).arg(&rules));
    let out = Command::new(&promtool)
        .current_dir(&dir)
        .args(["test", "rules", "kube-scim-alerts.test.yaml"])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "promtool test rules failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn without_the_prometheus_rule_api_nothing_is_rendered() {
    let out = Command::new(helm().unwrap())
        .args(["template", "kube-scim"])
        .arg(repo_root().join("charts/kube-scim"))
        .args([
            "--set",
            "prometheusRule.enabled=true",
            "--set",
            "serviceMonitor.enabled=true",
            // ServiceMonitors fail the install by default without their API (helm_chart.rs).
            "--set",
            "serviceMonitor.renderMode=SkipIfMissing",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("kind: PrometheusRule"), "{text}");
    assert!(!text.contains("kind: ServiceMonitor"), "{text}");
}

#[test]
fn other_windows_and_thresholds_render_valid_rules() {
    let dir = temp_dir("values");
    let spec = rendered_rules(
        &[
            WATCHED,
            "prometheusRule.noProvisioningRequestFor=90m",
            "prometheusRule.notReadyFor=1h",
            "prometheusRule.authFailureThreshold=20",
            "prometheusRule.authFailureWindow=30m",
        ],
        &["prometheusRule.serverErrorRatio=0.2"],
    );
    let text = serde_norway::to_string(&spec).unwrap();
    assert!(text.contains("> 5400"), "90m is 5400 s:\n{text}");
    assert!(text.contains("[30m])) >= 20"), "{text}");
    assert!(text.contains("> 0.2"), "{text}");
    let rules = write_rules(&dir, &spec);
    let out = Command::new(promtool().unwrap())
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_alert_has_a_runbook_in_operations_md() {
    let spec = rendered_rules(
        &[
            WATCHED,
            "serviceMonitor.enabled=true",
            "serviceMonitor.renderMode=Always",
        ],
        &[],
    );
    let docs = std::fs::read_to_string(repo_root().join("docs/operations.md")).unwrap();
    let anchors: Vec<String> = docs
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect();
    for rule in rules_of(&spec) {
        let name = rule["alert"].as_str().unwrap();
        let url = rule["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no runbook_url"));
        let (base, fragment) = url.split_once('#').expect("an anchor");
        assert_eq!(
            base,
            "https://github.com/kube-scim/kube-scim/blob/main/docs/operations.md"
        );
        assert!(
            anchors.iter().any(|a| a == fragment),
            "{name}: docs/operations.md has no heading for #{fragment}"
        );
    }
}

#[test]
fn a_quiet_tenant_is_not_watched_unless_listed() {
    let names = |spec: &Value| -> Vec<String> {
        rules_of(spec)
            .iter()
            .filter_map(|r| r["alert"].as_str().map(str::to_string))
            .collect()
    };
    let default = rendered_rules(&[], &[]);
    assert!(
        !names(&default).contains(&"KubeScimNoProvisioningRequests".to_string()),
        "KubeScimNoProvisioningRequests is opt-in per directory"
    );
    let listed = rendered_rules(
        &["prometheusRule.noProvisioningRequestDirectories={team-a/entra.prod}"],
        &[],
    );
    let rule = rules_of(&listed)
        .into_iter()
        .find(|r| r["alert"].as_str() == Some("KubeScimNoProvisioningRequests"))
        .expect("rendered when a directory is listed");
    let expr = rule["expr"].as_str().unwrap();
    // Matched literally: the name's dot is not a regex wildcard.
    assert!(
        expr.contains(r#"{directory=~"team-a/entra\\.prod"}"#),
        "{expr}"
    );
}

#[test]
fn with_the_charts_service_monitor_a_missing_operator_is_no_leader() {
    let with = serde_norway::to_string(&rendered_rules(
        &[
            "serviceMonitor.enabled=true",
            "serviceMonitor.renderMode=Always",
        ],
        &[],
    ))
    .unwrap();
    assert!(
        with.contains(r#"absent(kube_scim_operator_leader{namespace="kube-scim"})"#),
        "{with}"
    );
    let without = serde_norway::to_string(&rendered_rules(&[], &[])).unwrap();
    assert!(!without.contains("absent("), "{without}");
}
