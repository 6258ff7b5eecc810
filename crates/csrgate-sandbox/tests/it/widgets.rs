//! A CRD the sandbox has never heard of, applied with kubectl and used as kube-apiserver serves it:
//! discovery by short name, printer columns, the status subresource, generation, defaults, schema
//! validation and unknown fields refused under kubectl's `fieldValidation=Strict`.

use csrgate_sandbox::SandboxConfig;

use crate::common::*;
use crate::kubectl::{kubectl, text};

const CRD: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {kind: Widget, plural: widgets, shortNames: [wd]}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Color, type: string, jsonPath: .spec.color}
    - {name: Phase, type: string, jsonPath: .status.phase}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, required: [size], properties: {
            size: {type: integer}, color: {type: string, enum: [red, blue], default: red}}}
          status: {type: object, properties: {phase: {type: string}}}
";

fn widget(name: &str, spec: &str) -> String {
    format!("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

/// Writes `yaml` to a file in the test's folder and runs `kubectl <verb> -f` on it.
async fn with_file(env: &Env, verb: &str, name: &str, yaml: &str) -> std::process::Output {
    let path = env.dir.path().join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    kubectl(env, &[verb, "-f", path.to_str().unwrap()]).await
}

async fn jsonpath(env: &Env, path: &str) -> String {
    let out = kubectl(env, &["get", "wd", "w1", "-o", &format!("jsonpath={path}")]).await;
    assert!(out.status.success(), "{}", text(&out));
    text(&out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_serves_a_made_up_crd_applied_to_the_sandbox() {
    require_kubectl!();
    let env = start_with(SandboxConfig::default()).await;
    let out = kubectl(&env, &["get", "widgets"]).await;
    assert!(
        !out.status.success(),
        "nothing serves widgets yet: {}",
        text(&out)
    );

    let out = with_file(&env, "apply", "crd", CRD).await;
    assert!(out.status.success(), "{}", text(&out));
    let wait = "--for=condition=Established";
    let out = kubectl(&env, &["wait", wait, "crd/widgets.example.com"]).await;
    assert!(out.status.success(), "{}", text(&out));

    let out = with_file(&env, "create", "w1", &widget("w1", "  size: 3\n")).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = kubectl(&env, &["get", "wd"]).await;
    let shown = text(&out);
    let lines: Vec<Vec<&str>> = shown
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    // No Age column: kube-apiserver adds it only to a CRD without additionalPrinterColumns.
    assert_eq!(lines[0], ["NAME", "SIZE", "COLOR", "PHASE"], "{shown}");
    assert_eq!(
        lines[1][..3],
        ["w1", "3", "red"],
        "the color defaults from the schema: {shown}"
    );
    assert_eq!(jsonpath(&env, "{.metadata.generation}").await, "1");

    let status = r#"{"status":{"phase":"Ready"}}"#;
    let out = kubectl(
        &env,
        &[
            "patch",
            "wd",
            "w1",
            "--subresource=status",
            "--type=merge",
            "-p",
            status,
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let ignored = r#"{"status":{"phase":"Gone"}}"#;
    let out = kubectl(&env, &["patch", "wd", "w1", "--type=merge", "-p", ignored]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        jsonpath(&env, "{.status.phase}").await,
        "Ready",
        "the main resource does not write status"
    );
    assert_eq!(jsonpath(&env, "{.metadata.generation}").await, "1");
    let out = kubectl(
        &env,
        &[
            "patch",
            "wd",
            "w1",
            "--type=merge",
            "-p",
            r#"{"spec":{"size":4}}"#,
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(jsonpath(&env, "{.metadata.generation}").await, "2");

    let out = with_file(
        &env,
        "create",
        "w2",
        &widget("w2", "  size: 1\n  bogus: 1\n"),
    )
    .await;
    assert!(!out.status.success());
    assert!(
        text(&out).contains("strict decoding error: unknown field \"spec.bogus\""),
        "{}",
        text(&out)
    );
    let out = with_file(&env, "create", "w3", &widget("w3", "  color: green\n")).await;
    assert!(!out.status.success());
    assert!(
        text(&out).contains("spec.size: Required value"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("spec.color: Unsupported value: \"green\""),
        "{}",
        text(&out)
    );
    let out = kubectl(&env, &["get", "wd", "-o", "name"]).await;
    assert_eq!(text(&out).trim(), "widget.example.com/w1");
}
