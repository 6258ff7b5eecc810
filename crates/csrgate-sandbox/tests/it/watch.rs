//! Watches: ordering, selectors, bookmarks, timeouts, 410 Gone after compaction, and kube-rs's watcher.

use std::time::Duration;

use csrgate_sandbox::SandboxConfig;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, ListParams, Patch, PatchParams, WatchEvent, WatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use crate::common::*;

async fn next_event(
    stream: &mut (
             impl futures::Stream<Item = Result<WatchEvent<CertificateSigningRequest>, kube::Error>>
             + Unpin
         ),
) -> WatchEvent<CertificateSigningRequest> {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("an event within 5s")
        .expect("stream open")
        .expect("event decodes")
}

#[tokio::test]
async fn a_watch_from_a_list_version_sees_later_changes_in_order() {
    let env = start().await;
    let api = Api::<CertificateSigningRequest>::all(env.client.clone());
    create_csr(&env.client, &client_csr("before")).await;
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    create_csr(&env.client, &client_csr("after")).await;
    api.patch(
        "after",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
    )
    .await
    .unwrap();
    api.delete("after", &Default::default()).await.unwrap();
    let kinds: Vec<String> = [
        next_event(&mut stream).await,
        next_event(&mut stream).await,
        next_event(&mut stream).await,
    ]
    .into_iter()
    .map(|e| match e {
        WatchEvent::Added(o) => format!("ADDED {}", o.metadata.name.unwrap_or_default()),
        WatchEvent::Modified(o) => format!("MODIFIED {}", o.metadata.name.unwrap_or_default()),
        WatchEvent::Deleted(o) => format!("DELETED {}", o.metadata.name.unwrap_or_default()),
        other => format!("{other:?}"),
    })
    .collect();
    assert_eq!(
        kinds,
        vec!["ADDED after", "MODIFIED after", "DELETED after"]
    );
}

#[tokio::test]
async fn a_watch_from_a_compacted_version_gets_410_expired() {
    let env = start().await;
    let api = Api::<CertificateSigningRequest>::all(env.client.clone());
    create_csr(&env.client, &client_csr("a")).await;
    env.sandbox.faults().compact();
    create_csr(&env.client, &client_csr("b")).await;
    let mut stream = api
        .watch(&WatchParams::default(), "2")
        .await
        .unwrap()
        .boxed();
    match next_event(&mut stream).await {
        WatchEvent::Error(status) => {
            assert_eq!(status.code, 410);
            assert_eq!(status.reason, "Expired");
            assert!(
                status.message.starts_with("too old resource version: 2"),
                "{}",
                status.message
            );
        }
        other => panic!("expected a 410 error event, got {other:?}"),
    }
}

#[tokio::test]
async fn a_bounded_history_expires_old_versions_on_its_own() {
    let env = start_with(SandboxConfig {
        history_limit: 3,
        ..SandboxConfig::default()
    })
    .await;
    let api = Api::<CertificateSigningRequest>::all(env.client.clone());
    let first = create_csr(&env.client, &client_csr("h0"))
        .await
        .metadata
        .resource_version
        .unwrap();
    for i in 1..6 {
        create_csr(&env.client, &client_csr(&format!("h{i}"))).await;
    }
    let mut stream = api
        .watch(&WatchParams::default(), &first)
        .await
        .unwrap()
        .boxed();
    assert!(matches!(next_event(&mut stream).await, WatchEvent::Error(s) if s.code == 410));
}

#[tokio::test]
async fn bookmarks_are_sent_when_allowed() {
    let env = start_with(SandboxConfig {
        bookmark_interval: Duration::from_millis(100),
        ..SandboxConfig::default()
    })
    .await;
    let api = Api::<CertificateSigningRequest>::all(env.client.clone());
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(
            &WatchParams {
                bookmarks: true,
                ..WatchParams::default()
            },
            &rv,
        )
        .await
        .unwrap()
        .boxed();
    assert!(
        matches!(next_event(&mut stream).await, WatchEvent::Bookmark(b) if b.metadata.resource_version == rv)
    );
}

#[tokio::test]
async fn a_watch_ends_after_its_timeout() {
    let env = start().await;
    let api = Api::<CertificateSigningRequest>::all(env.client.clone());
    let stream = api
        .watch(&WatchParams::default().timeout(1), "0")
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(4), stream.try_collect::<Vec<_>>()).await;
    assert!(ended.is_ok(), "the watch should end after timeoutSeconds=1");
}

#[tokio::test]
async fn an_object_leaving_a_label_selector_is_seen_as_deleted() {
    let env = start().await;
    let api = Api::<CertificateSigningRequest>::all(env.client.clone());
    let mut obj = client_csr("sel");
    obj.metadata.labels = Some([("team".to_string(), "blue".to_string())].into());
    let created = create_csr(&env.client, &obj).await;
    let rv = created.metadata.resource_version.unwrap();
    let mut stream = api
        .watch(&WatchParams::default().labels("team=blue"), &rv)
        .await
        .unwrap()
        .boxed();
    api.patch(
        "sel",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"team": "red"}}})),
    )
    .await
    .unwrap();
    assert!(
        matches!(next_event(&mut stream).await, WatchEvent::Deleted(o) if o.metadata.name.as_deref() == Some("sel"))
    );
}

#[tokio::test]
async fn the_kube_runtime_watcher_recovers_after_compaction_and_closed_watches() {
    let env = start().await;
    let api = Api::<CertificateSigningRequest>::all(env.client.clone());
    create_csr(&env.client, &client_csr("w1")).await;
    let mut names = watcher(api, watcher::Config::default())
        .applied_objects()
        .boxed();
    let first = tokio::time::timeout(Duration::from_secs(5), names.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.metadata.name.as_deref(), Some("w1"));
    env.sandbox.faults().compact();
    env.sandbox.faults().restart();
    create_csr(&env.client, &client_csr("w2")).await;
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match names.try_next().await {
                Ok(Some(o)) if o.metadata.name.as_deref() == Some("w2") => return true,
                Ok(Some(_)) | Err(_) => {}
                Ok(None) => return false,
            }
        }
    })
    .await;
    assert_eq!(
        seen,
        Ok(true),
        "the watcher sees objects created after the compaction"
    );
}

#[tokio::test]
async fn the_kube_runtime_watcher_works_with_streaming_lists() {
    let env = start().await;
    let api = Api::<CertificateSigningRequest>::all(env.client.clone());
    create_csr(&env.client, &client_csr("s1")).await;
    let mut objects = watcher(api, watcher::Config::default().streaming_lists())
        .applied_objects()
        .boxed();
    let first = tokio::time::timeout(Duration::from_secs(5), objects.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.metadata.name.as_deref(), Some("s1"));
    create_csr(&env.client, &client_csr("s2")).await;
    let second = tokio::time::timeout(Duration::from_secs(5), objects.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(second.metadata.name.as_deref(), Some("s2"));
}
