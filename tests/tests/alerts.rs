//! The chart's PrometheusRule: `promtool check rules` on what the chart renders (with default
//! and with other values), and `promtool test rules` (tests/alerts/) exercising every alert
//! expression against series shaped like a real SCIM server's /metrics. promtool is built
//! from its Go module by tests/tools/build-promtool.sh.

use std::path::{Path, PathBuf};
use std::process::Command;

use kube_scim_tests::{helm, must_succeed, promtool, repo_root};
use serde_yaml::Value;

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
    let rule: Value = serde_yaml::from_slice(&out).unwrap();
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
    std::fs::write(&path, serde_yaml::to_string(spec).unwrap()).unwrap();
    path
}

#[test]
fn every_alert_fires_on_real_series_and_only_then() {
    let dir = temp_dir("test");
    let rules = write_rules(&dir, &rendered_rules(&[], &[]));
    let names: Vec<String> =
        serde_yaml::from_str::<Value>(&std::fs::read_to_string(&rules).unwrap()).unwrap()["groups"]
            [0]["rules"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|r| r["alert"].as_str().map(str::to_string))
            .collect();
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
            "prometheusRule.noProvisioningRequestFor=90m",
            "prometheusRule.notReadyFor=1h",
            "prometheusRule.authFailureThreshold=20",
            "prometheusRule.authFailureWindow=30m",
        ],
        &["prometheusRule.serverErrorRatio=0.2"],
    );
    let text = serde_yaml::to_string(&spec).unwrap();
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
