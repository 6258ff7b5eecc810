//! Kubernetes Events about decisions (on the CSR) and compile errors (on the policy).
//!
//! Events of cluster-scoped objects go to the `default` namespace (kube-runtime's
//! `Recorder`); the deployment's RBAC grants `events.k8s.io` create and patch there.

use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder};
use tracing::warn;

/// Publishes one event about `object`; a failure is logged and counted, never fatal, since
/// the condition (not the event) is the record of a decision.
pub async fn publish<K>(
    recorder: &Recorder,
    metrics: &crate::Metrics,
    object: &K,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) where
    K: Resource<DynamicType = ()>,
{
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(truncate(note, 1000)),
        action: action.to_owned(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, &object.object_ref(&())).await {
        metrics.api_error("create_event");
        warn!(%error, reason, "could not publish event");
    }
}

fn truncate(mut text: String, limit: usize) -> String {
    if text.len() > limit {
        let mut cut = limit.saturating_sub(3);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}
