//! Watch streams: backlog then live events, selectors applied to old and new state, bookmarks, timeouts,
//! and an ERROR event with a 410 Expired Status when the start version was compacted or the watcher fell behind.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::events;
use crate::query::{Query, Selector};
use crate::registry::{ResourceDef, store_key};
use crate::server::App;
use crate::status::{ApiError, ApiResult};
use crate::store::{Event, EventType};
use crate::table;

/// How a watch renders and filters.
pub struct WatchSpec {
    /// The watched resource.
    pub def: Arc<ResourceDef>,
    /// Namespace, or all.
    pub namespace: Option<String>,
    /// Label selector.
    pub labels: Selector,
    /// Field selector.
    pub fields: Selector,
    /// Render objects as Tables (kubectl get -w).
    pub table: bool,
    /// Put whole objects into Table rows.
    pub include_object: bool,
}

impl WatchSpec {
    fn matches(&self, obj: &Value) -> bool {
        self.labels.matches_labels(obj) && self.fields.matches_fields(&self.def, obj)
    }

    /// The event to send for a change, after selectors (moves in and out become ADDED and DELETED).
    fn translate(&self, ev: &Event) -> Option<(EventType, Arc<Value>)> {
        let object = Arc::new(events::present(&self.def, &ev.object));
        let now = self.matches(&object);
        let before = ev
            .old
            .as_ref()
            .is_some_and(|o| self.matches(&events::present(&self.def, o)));
        match ev.kind {
            EventType::Added if now => Some((EventType::Added, object)),
            EventType::Modified if now && before => Some((EventType::Modified, object)),
            EventType::Modified if now => Some((EventType::Added, object)),
            EventType::Modified if before => Some((EventType::Deleted, object)),
            EventType::Deleted if before => Some((EventType::Deleted, object)),
            _ => None,
        }
    }
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut text = json!({"type": kind, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}

fn bookmark(def: &ResourceDef, rv: u64, initial_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"kind": def.kind, "apiVersion": def.api_version(), "metadata": meta})
}

/// Start a watch and answer with its stream.
///
/// # Errors
/// 400 for a resourceVersion that is not a number.
pub fn watch(app: Arc<App>, spec: WatchSpec, query: &Query) -> ApiResult<Response> {
    let from = match query.get("resourceVersion") {
        None | Some("" | "0") => None,
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?,
        ),
    };
    let send_initial = query.flag("sendInitialEvents");
    let bookmarks = query.flag("allowWatchBookmarks") && !spec.table;
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs);
    let resume_from = if send_initial { None } else { from };
    let start = app
        .store
        .watch(store_key(&spec.def), spec.namespace.as_deref(), resume_from);
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    let mut closer = app.faults.watch_closer();
    let interval = app.bookmark_interval;
    tokio::spawn(async move {
        let mut headers = true;
        let render = |obj: &Value, headers: &mut bool| -> Value {
            if spec.table {
                let t = table::table(
                    &spec.def,
                    spec.def.printer_columns(),
                    std::slice::from_ref(obj),
                    None,
                    *headers,
                    spec.include_object,
                );
                *headers = false;
                t
            } else {
                obj.clone()
            }
        };
        let mut start = match start {
            Ok(start) => start,
            Err(oldest) => {
                let status = ApiError::gone(from.unwrap_or(0), oldest).to_status();
                let _ = tx.send(Ok(line("ERROR", &status))).await;
                return;
            }
        };
        // A watch from a resourceVersion the store has not reached (etcd restored from a
        // backup) gets nothing up to it, neither events nor a bookmark naming an older
        // version, as kube-apiserver 1.37 answers it (docs/development.md).
        let mut last_rv = start.rv.max(resume_from.unwrap_or(0));
        for ev in &start.backlog {
            let sent = spec.translate(ev);
            if let Some((kind, obj)) = sent
                && tx
                    .send(Ok(line(kind.as_str(), &render(&obj, &mut headers))))
                    .await
                    .is_err()
            {
                return;
            }
        }
        if send_initial && bookmarks {
            let _ = tx
                .send(Ok(line("BOOKMARK", &bookmark(&spec.def, last_rv, true))))
                .await;
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        loop {
            tokio::select! {
                received = start.live.recv() => match received {
                    Ok(ev) => {
                        last_rv = last_rv.max(ev.rv);
                        if resume_from.is_some_and(|from| ev.rv <= from) {
                            continue;
                        }
                        if *ev.resource != *store_key(&spec.def)
                            || spec.namespace.as_deref().is_some_and(|n| n != ev.namespace)
                        {
                            continue;
                        }
                        if let Some((kind, obj)) = spec.translate(&ev)
                            && tx.send(Ok(line(kind.as_str(), &render(&obj, &mut headers)))).await.is_err() {
                                return;
                            }
                    }
                    // A watcher too slow to keep up is closed, as the real API server
                    // closes one whose buffer fills; the client watches again from the
                    // last resourceVersion it saw, which the history still serves (or
                    // answers 410 if compacted), instead of having to list everything.
                    Err(broadcast::error::RecvError::Lagged(_)) => return,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = ticker.tick(), if bookmarks => {
                    if tx.send(Ok(line("BOOKMARK", &bookmark(&spec.def, last_rv, false)))).await.is_err() {
                        return;
                    }
                }
                () = &mut deadline => return,
                _ = closer.changed() => return,
                () = tx.closed() => return,
            }
        }
    });
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("cache-control", "no-cache, private")
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::internal(e.to_string()))
}
