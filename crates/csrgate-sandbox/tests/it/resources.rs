//! The other resources: policies, CRDs, leases (with server-side apply), events, nodes, namespaces, SARs.

use csrgate_sandbox::{SandboxConfig, SarRule};
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::api::events::v1::Event;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use serde_json::json;

use crate::common::*;

fn policy_api(client: &kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("csrgate.dev", "v1alpha1", "CsrApprovalPolicy");
    Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, "csrapprovalpolicies"),
    )
}

fn policy(name: &str, mode: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "csrgate.dev/v1alpha1", "kind": "CsrApprovalPolicy",
        "metadata": {"name": name},
        "spec": {"signerNames": ["kubernetes.io/kubelet-serving"], "mode": mode,
            "validations": [{"name": "always", "expression": "true"}]},
        "status": {"observedGeneration": 99},
    }))
    .unwrap()
}

#[tokio::test]
async fn policy_generation_moves_on_spec_changes_only_and_status_is_a_subresource() {
    let env = start().await;
    let api = policy_api(&env.client);
    let created = api
        .create(&PostParams::default(), &policy("p", "Enforce"))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(
        created.data.get("status").is_none(),
        "status is dropped on create"
    );
    let labelled = api
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(labelled.metadata.generation, Some(1));
    let changed = api
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"mode": "Audit"}})),
        )
        .await
        .unwrap();
    assert_eq!(changed.metadata.generation, Some(2));
    let status = json!({"status": {"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True"}]}});
    let with_status = api
        .patch_status("p", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert_eq!(with_status.metadata.generation, Some(2));
    assert_eq!(with_status.data["status"]["observedGeneration"], 2);
    let ignored = api
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedGeneration": 7}})),
        )
        .await
        .unwrap();
    assert_eq!(
        ignored.data["status"]["observedGeneration"], 2,
        "the main resource does not write status"
    );
}

#[tokio::test]
async fn a_policy_breaking_the_built_in_crd_schema_is_invalid() {
    let env = start().await;
    let api = policy_api(&env.client);
    let mut obj = policy("bad", "Loud");
    obj.data["spec"]
        .as_object_mut()
        .unwrap()
        .remove("validations");
    let (code, reason, message) = api_error(api.create(&PostParams::default(), &obj).await);
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(
        message.contains("spec.validations: Required value"),
        "{message}"
    );
    assert!(
        message.contains("spec.mode: Unsupported value: \"Loud\""),
        "{message}"
    );
    let defaulted = api
        .create(&PostParams::default(), &policy("good", "Audit"))
        .await
        .unwrap();
    assert_eq!(
        defaulted.data["spec"]["failureAction"], "Deny",
        "schema defaults are applied"
    );
}

#[tokio::test]
async fn leases_support_server_side_apply_and_optimistic_updates() {
    let env = start().await;
    let api = Api::<Lease>::namespaced(env.client.clone(), "kube-system");
    let apply = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "csrgate"},
        "spec": {"holderIdentity": "pod-a", "leaseDurationSeconds": 15},
    });
    let pp = PatchParams::apply("lease-manager").force();
    let created = api
        .patch("csrgate", &pp, &Patch::Apply(&apply))
        .await
        .unwrap();
    assert_eq!(
        created.spec.as_ref().unwrap().holder_identity.as_deref(),
        Some("pod-a")
    );
    let take = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "csrgate"},
        "spec": {"holderIdentity": "pod-b"}});
    let taken = api
        .patch("csrgate", &pp, &Patch::Apply(&take))
        .await
        .unwrap();
    assert_eq!(
        taken.spec.as_ref().unwrap().holder_identity.as_deref(),
        Some("pod-b")
    );
    assert_eq!(
        taken.spec.as_ref().unwrap().lease_duration_seconds,
        Some(15)
    );
    let mut stale = created.clone();
    stale.spec.as_mut().unwrap().holder_identity = Some("pod-c".into());
    let (code, reason, _) = api_error(api.replace("csrgate", &PostParams::default(), &stale).await);
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    let (code, _, _) = api_error(
        Api::<Lease>::namespaced(env.client.clone(), "nowhere")
            .create(&PostParams::default(), &created)
            .await,
    );
    assert_eq!(code, 404, "a namespace that does not exist");
}

#[tokio::test]
async fn events_and_nodes_are_stored_and_listed() {
    let env = start().await;
    let events = Api::<Event>::namespaced(env.client.clone(), "default");
    let event: Event = serde_json::from_value(json!({
        "metadata": {"generateName": "csr-"},
        "eventTime": "2025-01-01T00:00:00.000000Z",
        "reportingController": "csrgate.dev/controller", "reportingInstance": "x",
        "action": "Decide", "reason": "PolicyApproved", "type": "Normal", "note": "approved",
        "regarding": {"kind": "CertificateSigningRequest", "name": "a"},
    }))
    .unwrap();
    events.create(&PostParams::default(), &event).await.unwrap();
    assert_eq!(
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let nodes = Api::<Node>::all(env.client.clone());
    let node: Node =
        serde_json::from_value(json!({"metadata": {"name": "n1", "labels": {"role": "worker"}}}))
            .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    assert_eq!(
        nodes.get("n1").await.unwrap().metadata.labels.unwrap()["role"],
        "worker"
    );
    let namespaces = Api::<Namespace>::all(env.client.clone());
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(
        names.contains(&"default".to_string()) && names.contains(&"kube-system".to_string()),
        "{names:?}"
    );
}

#[tokio::test]
async fn subject_access_reviews_are_answered_from_rules() {
    let rules = vec![
        "allow user=approver verb=approve resource=signers name=example.com/*"
            .parse::<SarRule>()
            .unwrap(),
    ];
    let env = start_with(SandboxConfig {
        sar_rules: rules,
        ..SandboxConfig::default()
    })
    .await;
    let api = Api::<SubjectAccessReview>::all(env.client.clone());
    let review = |user: &str| -> SubjectAccessReview {
        serde_json::from_value(json!({"spec": {"user": user, "resourceAttributes":
            {"group": "certificates.k8s.io", "resource": "signers", "verb": "approve", "name": "example.com/x"}}}))
        .unwrap()
    };
    let allowed = api
        .create(&PostParams::default(), &review("approver"))
        .await
        .unwrap();
    assert!(allowed.status.unwrap().allowed);
    let refused = api
        .create(&PostParams::default(), &review("jane"))
        .await
        .unwrap();
    assert!(!refused.status.unwrap().allowed);
}

#[tokio::test]
async fn an_applied_crd_replaces_the_built_in_schema_which_prunes_and_strictly_validates_policies()
{
    let env = start().await;
    let crds = Api::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>::all(env.client.clone());
    let crd = serde_json::from_value(json!({
        "metadata": {"name": "csrapprovalpolicies.csrgate.dev"},
        "spec": {"group": "csrgate.dev", "scope": "Cluster",
            "names": {"kind": "CsrApprovalPolicy", "plural": "csrapprovalpolicies"},
            "versions": [{"name": "v1alpha1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object", "properties": {"spec": {"type": "object", "properties": {
                    "signerNames": {"type": "array", "items": {"type": "string"}}, "mode": {"type": "string"}}}}}}}]}
    }))
    .unwrap();
    let builtin = crds.get("csrapprovalpolicies.csrgate.dev").await.unwrap();
    assert_eq!(
        builtin.spec.names.short_names,
        Some(vec!["csrpolicy".to_string()]),
        "the policy CRD is built in"
    );
    crds.delete("csrapprovalpolicies.csrgate.dev", &Default::default())
        .await
        .unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let api = policy_api(&env.client);
    let mut obj = policy("p", "Enforce");
    obj.data.as_object_mut().unwrap().remove("status");
    obj.data["spec"]
        .as_object_mut()
        .unwrap()
        .remove("validations");
    obj.data["spec"]["bogus"] = json!(1);
    let pruned = api.create(&PostParams::default(), &obj).await.unwrap();
    assert!(
        pruned.data["spec"].get("bogus").is_none(),
        "unknown fields are pruned"
    );
    obj.metadata.name = Some("q".into());
    let path = "/apis/csrgate.dev/v1alpha1/csrapprovalpolicies?fieldValidation=Strict";
    let (code, body) = raw(
        &env.sandbox,
        "POST",
        path,
        "application/json",
        serde_json::to_vec(&obj).unwrap(),
    )
    .await;
    assert_eq!((code, body["reason"].as_str()), (400, Some("BadRequest")));
    assert_eq!(
        body["message"],
        "strict decoding error: unknown field \"spec.bogus\""
    );
    assert!(api.get_opt("q").await.unwrap().is_none());
}

#[tokio::test]
async fn an_object_with_finalizers_is_marked_and_removed_when_the_last_finalizer_goes() {
    let env = start().await;
    let nodes = Api::<Node>::all(env.client.clone());
    let node: Node = serde_json::from_value(
        json!({"metadata": {"name": "n1", "finalizers": ["csrgate.dev/test"]}}),
    )
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    nodes.delete("n1", &Default::default()).await.unwrap();
    let marked = nodes.get("n1").await.unwrap();
    assert!(
        marked.metadata.deletion_timestamp.is_some(),
        "deletion waits for the finalizer"
    );
    nodes
        .patch(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    assert!(
        nodes.get_opt("n1").await.unwrap().is_none(),
        "removing the last finalizer deletes the object"
    );
}

#[tokio::test]
async fn an_event_written_through_events_k8s_io_is_listed_as_a_core_event() {
    let env = start().await;
    let events = Api::<Event>::namespaced(env.client.clone(), "default");
    let event: Event = serde_json::from_value(json!({
        "metadata": {"name": "csr-a.1"},
        "eventTime": "2025-01-01T00:00:00.000000Z",
        "reportingController": "csrgate.dev/controller", "reportingInstance": "x",
        "action": "Decide", "reason": "PolicyApproved", "type": "Normal", "note": "approved by policy",
        "regarding": {"kind": "CertificateSigningRequest", "name": "a"},
    }))
    .unwrap();
    events.create(&PostParams::default(), &event).await.unwrap();
    let core = Api::<k8s_openapi::api::core::v1::Event>::namespaced(env.client.clone(), "default");
    let listed = core
        .list(&ListParams::default().fields("involvedObject.name=a"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(
        listed.items[0].message.as_deref(),
        Some("approved by policy")
    );
    assert_eq!(
        listed.items[0].involved_object.kind.as_deref(),
        Some("CertificateSigningRequest")
    );
    let patched = events
        .patch(
            "csr-a.1",
            &PatchParams::default(),
            &Patch::Merge(json!({"note": "again"})),
        )
        .await
        .unwrap();
    assert_eq!(patched.note.as_deref(), Some("again"));
}

#[tokio::test]
async fn an_apply_without_force_conflicts_on_fields_another_manager_holds() {
    let env = start().await;
    let api = Api::<Lease>::namespaced(env.client.clone(), "default");
    let lease = |holder: &str| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15}})
    };
    api.patch("l", &PatchParams::apply("mgr-a"), &Patch::Apply(lease("a")))
        .await
        .unwrap();
    let (code, reason, message) = api_error(
        api.patch("l", &PatchParams::apply("mgr-b"), &Patch::Apply(lease("b")))
            .await,
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert!(
        message.contains("conflict with \"mgr-a\"") && message.contains(".spec.holderIdentity"),
        "{message}"
    );
    let release = json!({"spec": {"holderIdentity": null, "leaseDurationSeconds": null}});
    api.patch(
        "l",
        &PatchParams {
            field_manager: Some("mgr-a".into()),
            ..PatchParams::default()
        },
        &Patch::Strategic(release),
    )
    .await
    .unwrap();
    let taken = api
        .patch("l", &PatchParams::apply("mgr-b"), &Patch::Apply(lease("b")))
        .await
        .unwrap();
    assert_eq!(
        taken.spec.unwrap().holder_identity.as_deref(),
        Some("b"),
        "a released lease can be taken"
    );
    let forced = api
        .patch(
            "l",
            &PatchParams::apply("mgr-a").force(),
            &Patch::Apply(lease("a")),
        )
        .await
        .unwrap();
    assert_eq!(
        forced.spec.unwrap().holder_identity.as_deref(),
        Some("a"),
        "force takes the fields"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_lease_manager_elects_exactly_one_leader_and_hands_over_on_release() {
    use kube_lease_manager::LeaseManagerBuilder;
    let env = start().await;
    let mut watchers = Vec::new();
    for identity in ["a", "b"] {
        let manager = LeaseManagerBuilder::new(env.client.clone(), "csrgate")
            .with_namespace("default")
            .with_identity(identity)
            .with_duration(3)
            .with_grace(1)
            .build()
            .await
            .unwrap();
        watchers.push(manager.watch().await);
    }
    let leaders = || watchers.iter().filter(|(rx, _)| *rx.borrow()).count();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while leaders() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(leaders(), 1, "one leader at a time");
    let lease = Api::<Lease>::namespaced(env.client.clone(), "default")
        .get("csrgate")
        .await
        .unwrap();
    let holder = lease.spec.unwrap().holder_identity.unwrap();
    let (leader_index, _) = watchers
        .iter()
        .enumerate()
        .find(|(_, (rx, _))| *rx.borrow())
        .unwrap();
    assert_eq!(holder, ["a", "b"][leader_index]);
    // The leader steps down (dropping its receiver releases the lease); the other takes over.
    let (rx, handle) = watchers.remove(leader_index);
    drop(rx);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), handle).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !*watchers[0].0.borrow() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        *watchers[0].0.borrow(),
        "the other candidate becomes leader"
    );
}

#[tokio::test]
async fn lists_are_served_in_pages_when_the_client_asks_for_a_limit() {
    let env = start().await;
    let nodes: Api<Node> = Api::all(env.client.clone());
    for i in 0..7 {
        let node: Node =
            serde_json::from_value(json!({"metadata": {"name": format!("node-{i}")}})).unwrap();
        nodes.create(&PostParams::default(), &node).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut params = ListParams::default().limit(3);
    let mut pages = 0;
    let mut versions = std::collections::BTreeSet::new();
    loop {
        let page = nodes.list(&params).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 3);
        versions.insert(page.metadata.resource_version.clone());
        seen.extend(page.items.iter().map(|n| n.metadata.name.clone().unwrap()));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        versions.len(),
        1,
        "every page carries the first page's resourceVersion"
    );
    let expected: Vec<String> = (0..7).map(|i| format!("node-{i}")).collect();
    assert_eq!(seen, expected);

    // A watcher (which lists 500 at a time, following continue tokens) sees them all.
    let all = nodes.list(&ListParams::default()).await.unwrap();
    assert_eq!(all.items.len(), 7);
    assert!(all.metadata.continue_.is_none_or(|t| t.is_empty()));

    let error = nodes
        .list(&ListParams::default().limit(3).continue_token("not-a-token"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, kube::Error::Api(ref s) if s.code == 400),
        "{error}"
    );
}
