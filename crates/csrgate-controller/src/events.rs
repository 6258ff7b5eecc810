//! Kubernetes Events about decisions (on the CSR) and compile errors (on the policy).
//!
//! Events of cluster-scoped objects go to the `default` namespace, as kube-runtime's
//! `Recorder` puts them; the deployment's RBAC grants `events.k8s.io` create there.
//!
//! Why not kube-runtime's `Recorder`: it keeps every event it published for six minutes to
//! turn repeats into a series, and scans that whole cache under a write lock on every
//! publish. A burst of 10,000 decisions made that cache the controller's largest memory
//! user and its scan quadratic, for no gain: csrgate already reports each decision, hold
//! and audit verdict once per CSR and policy generation, so its events never repeat.

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::{Client, Resource};
use tracing::warn;

/// The namespace events about cluster-scoped objects are written to.
const EVENT_NAMESPACE: &str = "default";
/// The longest note the API server accepts (events.k8s.io/v1 validation: 1 KiB).
const NOTE_LIMIT: usize = 1024;

/// Whether an event reports routine work or something a person should look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// A decision that went as configured.
    Normal,
    /// A denial, a hold, an invalid policy.
    Warning,
}

/// Writes events as one controller instance (`reportingController` / `reportingInstance`).
#[derive(Clone)]
pub struct Publisher {
    events: Api<Event>,
    controller: String,
    instance: String,
}

impl Publisher {
    /// A publisher reporting as `controller`, instance `instance` (the pod name when known).
    pub fn new(client: Client, controller: String, instance: Option<String>) -> Self {
        let instance = instance.unwrap_or_else(|| controller.clone());
        Self {
            events: Api::namespaced(client, EVENT_NAMESPACE),
            controller,
            instance,
        }
    }

    /// Publishes one event about `object`; a failure is logged and counted, never fatal,
    /// since the condition (not the event) is the record of a decision.
    pub async fn publish<K>(
        &self,
        metrics: &crate::Metrics,
        object: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) where
        K: Resource<DynamicType = ()>,
    {
        let regarding = object.object_ref(&());
        let now = Timestamp::now();
        let event = Event {
            metadata: ObjectMeta {
                // Unique per object and instant, as the API server's own recorders name them.
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(&self.controller),
                    now.as_nanosecond()
                )),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding),
            type_: Some(
                match type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_owned(),
            ),
            reason: Some(reason.to_owned()),
            action: Some(action.to_owned()),
            note: Some(truncate(note, NOTE_LIMIT)),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        };
        if let Err(error) = self.events.create(&PostParams::default(), &event).await {
            metrics.api_error(crate::metrics::ApiCall::CreateEvent);
            warn!(%error, reason, "could not publish event");
        }
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

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncation_keeps_char_boundaries_and_marks_the_cut() {
        let text = "é".repeat(600);
        let cut = truncate(text, 1024);
        assert!(cut.len() <= 1024);
        assert!(cut.ends_with("..."));
        assert_eq!(truncate("short".into(), 1024), "short");
    }
}
