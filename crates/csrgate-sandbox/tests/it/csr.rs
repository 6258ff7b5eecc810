//! CertificateSigningRequest rules over the wire: identity, validation, approval, concurrency.

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestStatus,
};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::common::*;

fn approved(reason: &str) -> CertificateSigningRequestCondition {
    CertificateSigningRequestCondition {
        type_: "Approved".into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some("test".into()),
        ..CertificateSigningRequestCondition::default()
    }
}

fn with_condition(
    mut obj: CertificateSigningRequest,
    cond: CertificateSigningRequestCondition,
) -> CertificateSigningRequest {
    obj.status
        .get_or_insert_with(CertificateSigningRequestStatus::default)
        .conditions
        .get_or_insert_with(Vec::new)
        .push(cond);
    obj
}

#[tokio::test]
async fn create_takes_the_requestor_from_the_caller_not_the_body() {
    let env = start().await;
    let jane = client_for(&env.sandbox, Some("jane")).await;
    let mut obj = client_csr("c1");
    obj.spec.username = Some("mallory".into());
    obj.spec.groups = Some(vec!["system:masters".into()]);
    obj.status = Some(CertificateSigningRequestStatus {
        certificate: Some(k8s_openapi::ByteString(b"x".to_vec())),
        conditions: None,
    });
    let created = create_csr(&jane, &obj).await;
    assert_eq!(created.spec.username.as_deref(), Some("jane"));
    assert_eq!(
        created.spec.groups,
        Some(vec![
            "developers".to_string(),
            "system:authenticated".to_string()
        ])
    );
    assert!(
        created.status.is_none(),
        "status is emptied on create: {:?}",
        created.status
    );
    let admin = create_csr(&env.client, &client_csr("c2")).await;
    assert_eq!(admin.spec.username.as_deref(), Some("admin"));
    assert_eq!(
        admin.spec.groups,
        Some(vec![
            "system:masters".to_string(),
            "system:authenticated".to_string()
        ])
    );
}

#[tokio::test]
async fn a_request_that_is_not_a_pem_csr_is_invalid() {
    let env = start().await;
    let api = Api::<CertificateSigningRequest>::all(env.client.clone());
    let obj = csr("bad", "example.com/x", &["client auth"], "not pem");
    let (code, reason, message) = api_error(api.create(&PostParams::default(), &obj).await);
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(
        message.contains("spec.request: Invalid value")
            && message.contains("PEM block type must be CERTIFICATE REQUEST"),
        "{message}"
    );
    assert!(
        api.get_opt("bad").await.unwrap().is_none(),
        "nothing stored"
    );
}

#[tokio::test]
async fn a_request_whose_signature_does_not_verify_is_invalid() {
    let env = start().await;
    let pem = request_pem("jane", &[], &[]);
    // Flip one byte inside the DER signature (the end of the base64 body).
    let mut lines: Vec<String> = pem.lines().map(str::to_string).collect();
    let last = lines.len() - 2;
    let mut body = lines[last].clone().into_bytes();
    let i = body.len() / 2;
    body[i] = if body[i] == b'A' { b'B' } else { b'A' };
    lines[last] = String::from_utf8(body).unwrap();
    let broken = lines.join("\n") + "\n";
    let api = Api::<CertificateSigningRequest>::all(env.client.clone());
    let (code, _, message) = api_error(
        api.create(
            &PostParams::default(),
            &csr("sig", "example.com/x", &["client auth"], &broken),
        )
        .await,
    );
    assert_eq!(code, 422, "{message}");
    assert!(message.contains("spec.request"), "{message}");
}

#[tokio::test]
async fn usages_must_be_given_known_and_unique() {
    let env = start().await;
    let api = Api::<CertificateSigningRequest>::all(env.client.clone());
    let pem = request_pem("jane", &[], &[]);
    let (code, _, message) = api_error(
        api.create(
            &PostParams::default(),
            &csr("u0", "example.com/x", &[], &pem),
        )
        .await,
    );
    assert_eq!(code, 422);
    assert!(message.contains("spec.usages: Required value"), "{message}");
    let (_, _, message) = api_error(
        api.create(
            &PostParams::default(),
            &csr("u1", "example.com/x", &["client auth", "flying"], &pem),
        )
        .await,
    );
    assert!(
        message.contains("spec.usages[1]: Unsupported value: \"flying\""),
        "{message}"
    );
    let (_, _, message) = api_error(
        api.create(
            &PostParams::default(),
            &csr("u2", "example.com/x", &["client auth", "client auth"], &pem),
        )
        .await,
    );
    assert!(
        message.contains("spec.usages[1]: Duplicate value: \"client auth\""),
        "{message}"
    );
}

#[tokio::test]
async fn signer_names_and_expiration_are_checked() {
    let env = start().await;
    let api = Api::<CertificateSigningRequest>::all(env.client.clone());
    let pem = request_pem("jane", &[], &[]);
    for (signer, needle) in [
        ("example.com", "example.com/signer-name"),
        ("", "spec.signerName: Required value"),
        (
            "kubernetes.io/legacy-unknown",
            "the legacy signerName is not allowed via this API version",
        ),
    ] {
        let (code, reason, message) = api_error(
            api.create(
                &PostParams::default(),
                &csr("s", signer, &["client auth"], &pem),
            )
            .await,
        );
        assert_eq!((code, reason.as_str()), (422, "Invalid"), "{signer}");
        assert!(message.contains(needle), "{signer}: {message}");
    }
    let mut short = csr("short", "example.com/x", &["client auth"], &pem);
    short.spec.expiration_seconds = Some(599);
    let (code, _, message) = api_error(api.create(&PostParams::default(), &short).await);
    assert_eq!(code, 422);
    assert!(message.contains("spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 600 seconds (10 minutes)"), "{message}");
    short.spec.expiration_seconds = Some(600);
    assert!(api.create(&PostParams::default(), &short).await.is_ok());
}

#[tokio::test]
async fn system_masters_is_forbidden_for_the_kube_apiserver_client_signer() {
    let env = start().await;
    let api = Api::<CertificateSigningRequest>::all(env.client.clone());
    let pem = request_pem("root", &["system:masters"], &[]);
    let obj = csr(
        "masters",
        "kubernetes.io/kube-apiserver-client",
        &["client auth"],
        &pem,
    );
    let (code, reason, message) = api_error(api.create(&PostParams::default(), &obj).await);
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));
    assert!(message.contains("use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"), "{message}");
    let other = csr("masters2", "example.com/x", &["client auth"], &pem);
    assert!(
        api.create(&PostParams::default(), &other).await.is_ok(),
        "other signers may carry system:masters"
    );
}

#[tokio::test]
async fn generate_name_gives_a_fresh_name_and_a_duplicate_name_already_exists() {
    let env = start().await;
    let api = Api::<CertificateSigningRequest>::all(env.client.clone());
    let mut obj = client_csr("");
    obj.metadata.name = None;
    obj.metadata.generate_name = Some("jane-".into());
    let a = api.create(&PostParams::default(), &obj).await.unwrap();
    let b = api.create(&PostParams::default(), &obj).await.unwrap();
    let (a, b) = (a.metadata.name.unwrap(), b.metadata.name.unwrap());
    assert!(a.starts_with("jane-") && a.len() == 10, "{a}");
    assert_ne!(a, b);
    create_csr(&env.client, &client_csr("dup")).await;
    let (code, reason, message) =
        api_error(api.create(&PostParams::default(), &client_csr("dup")).await);
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(
        message,
        "certificatesigningrequests.certificates.k8s.io \"dup\" already exists"
    );
}

#[tokio::test]
async fn approval_sets_timestamps_and_only_takes_conditions() {
    let env = start().await;
    let api = Api::<CertificateSigningRequest>::all(env.client.clone());
    let created = create_csr(
        &env.client,
        &csr(
            "a",
            "example.com/x",
            &["client auth"],
            &request_pem("jane", &[], &[]),
        ),
    )
    .await;
    let mut obj = with_condition(created.clone(), approved("Test"));
    obj.spec.username = Some("mallory".into());
    obj.metadata.labels = Some([("changed".to_string(), "yes".to_string())].into());
    let stored = api
        .replace_subresource("approval", "a", &PostParams::default(), &obj)
        .await
        .unwrap();
    assert_eq!(
        stored.spec.username.as_deref(),
        Some("admin"),
        "spec is kept"
    );
    let cond = &stored.status.as_ref().unwrap().conditions.as_ref().unwrap()[0];
    assert!(cond.last_update_time.is_some() && cond.last_transition_time.is_some());
    assert_eq!(env.sandbox.faults().writes().len(), 1);
    assert_eq!(
        env.sandbox.faults().writes()[0].added,
        vec!["Approved".to_string()]
    );
}

#[tokio::test]
async fn approved_and_denied_are_exclusive_and_never_removed() {
    let env = start().await;
    let api = Api::<CertificateSigningRequest>::all(env.client.clone());
    let created = create_csr(
        &env.client,
        &csr(
            "x",
            "example.com/x",
            &["client auth"],
            &request_pem("jane", &[], &[]),
        ),
    )
    .await;
    let approved_obj = api
        .replace_subresource(
            "approval",
            "x",
            &PostParams::default(),
            &with_condition(created, approved("A")),
        )
        .await
        .unwrap();
    let denied = CertificateSigningRequestCondition {
        type_: "Denied".into(),
        status: "True".into(),
        ..Default::default()
    };
    let (code, reason, message) = api_error(
        api.replace_subresource(
            "approval",
            "x",
            &PostParams::default(),
            &with_condition(approved_obj.clone(), denied),
        )
        .await,
    );
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(
        message.contains("Approved and Denied conditions are mutually exclusive"),
        "{message}"
    );
    let mut removed = approved_obj.clone();
    removed.status.as_mut().unwrap().conditions = Some(vec![]);
    let (code, _, message) = api_error(
        api.replace_subresource("approval", "x", &PostParams::default(), &removed)
            .await,
    );
    assert_eq!(code, 422);
    assert!(
        message.contains("updates may not remove a condition of type \"Approved\""),
        "{message}"
    );
    let mut false_status = approved_obj;
    false_status
        .status
        .as_mut()
        .unwrap()
        .conditions
        .as_mut()
        .unwrap()[0]
        .status = "False".into();
    let (code, _, message) = api_error(
        api.replace_subresource("approval", "x", &PostParams::default(), &false_status)
            .await,
    );
    assert_eq!(code, 422);
    assert!(
        message.contains("Unsupported value: \"False\""),
        "{message}"
    );
}

#[tokio::test]
async fn approval_through_status_or_the_main_resource_is_refused_or_ignored() {
    let env = start().await;
    let api = Api::<CertificateSigningRequest>::all(env.client.clone());
    let created = create_csr(
        &env.client,
        &csr(
            "s",
            "example.com/x",
            &["client auth"],
            &request_pem("jane", &[], &[]),
        ),
    )
    .await;
    let obj = with_condition(created, approved("A"));
    let (code, _, message) = api_error(api.replace_status("s", &PostParams::default(), &obj).await);
    assert_eq!(code, 422);
    assert!(
        message.contains("updates may not add a condition of type \"Approved\""),
        "{message}"
    );
    let main = api
        .replace("s", &PostParams::default(), &obj)
        .await
        .unwrap();
    assert!(
        main.status.is_none(),
        "a main-resource update keeps status: {:?}",
        main.status
    );
}

#[tokio::test]
async fn a_stale_resource_version_is_a_conflict() {
    let env = start().await;
    let api = Api::<CertificateSigningRequest>::all(env.client.clone());
    let created = create_csr(&env.client, &client_csr("rv")).await;
    let mut first = created.clone();
    first.metadata.labels = Some([("a".to_string(), "1".to_string())].into());
    api.replace("rv", &PostParams::default(), &first)
        .await
        .unwrap();
    let (code, reason, message) = api_error(
        api.replace_subresource(
            "approval",
            "rv",
            &PostParams::default(),
            &with_condition(created, approved("late")),
        )
        .await,
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert!(
        message.contains("the object has been modified"),
        "{message}"
    );
    assert!(env.sandbox.faults().writes().is_empty());
}

#[tokio::test]
async fn approval_can_be_patched_with_merge_and_json_patch() {
    let env = start().await;
    let api = Api::<CertificateSigningRequest>::all(env.client.clone());
    create_csr(
        &env.client,
        &csr(
            "p",
            "example.com/x",
            &["client auth"],
            &request_pem("jane", &[], &[]),
        ),
    )
    .await;
    let merge = json!({"status": {"conditions": [{"type": "Approved", "status": "True", "reason": "Merge"}]}});
    let stored = api
        .patch_subresource(
            "approval",
            "p",
            &PatchParams::default(),
            &Patch::Merge(&merge),
        )
        .await
        .unwrap();
    assert_eq!(
        stored.status.unwrap().conditions.unwrap()[0]
            .reason
            .as_deref(),
        Some("Merge")
    );
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "add", "path": "/status/conditions/-", "value": {"type": "Failed", "status": "True", "reason": "Json"}}
    ]))
    .unwrap();
    let stored = api
        .patch_status("p", &PatchParams::default(), &Patch::Json::<()>(ops))
        .await
        .unwrap();
    assert_eq!(stored.status.unwrap().conditions.unwrap().len(), 2);
}

#[tokio::test]
async fn lists_filter_by_label_and_signer_name() {
    let env = start().await;
    let pem = request_pem("jane", &[], &[]);
    let mut a = csr("a", "example.com/one", &["client auth"], &pem);
    a.metadata.labels = Some([("team".to_string(), "blue".to_string())].into());
    create_csr(&env.client, &a).await;
    create_csr(
        &env.client,
        &csr("b", "example.com/two", &["client auth"], &pem),
    )
    .await;
    let api = Api::<CertificateSigningRequest>::all(env.client.clone());
    let names = |l: kube::api::ObjectList<CertificateSigningRequest>| -> Vec<String> {
        l.items
            .into_iter()
            .filter_map(|o| o.metadata.name)
            .collect()
    };
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("team=blue"))
                .await
                .unwrap()
        ),
        vec!["a"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("spec.signerName=example.com/two"))
                .await
                .unwrap()
        ),
        vec!["b"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("metadata.name=a"))
                .await
                .unwrap()
        ),
        vec!["a"]
    );
    let (code, _, message) = api_error(
        api.list(&ListParams::default().fields("spec.bogus=x"))
            .await,
    );
    assert_eq!(code, 400);
    assert!(
        message.contains("field label not supported: spec.bogus"),
        "{message}"
    );
    let list = api.list(&ListParams::default()).await.unwrap();
    assert!(
        list.metadata
            .resource_version
            .is_some_and(|rv| !rv.is_empty())
    );
}

#[tokio::test]
async fn delete_removes_and_a_second_delete_is_not_found() {
    let env = start().await;
    let api = Api::<CertificateSigningRequest>::all(env.client.clone());
    create_csr(&env.client, &client_csr("d")).await;
    api.delete("d", &Default::default()).await.unwrap();
    let (code, reason, message) = api_error(api.delete("d", &Default::default()).await);
    assert_eq!((code, reason.as_str()), (404, "NotFound"));
    assert_eq!(
        message,
        "certificatesigningrequests.certificates.k8s.io \"d\" not found"
    );
}
