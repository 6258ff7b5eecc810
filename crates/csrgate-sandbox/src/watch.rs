//! Watch streams: backlog then live events, selectors applied to old and new state, bookmarks, timeouts,
//! and an ERROR event with a 410 Expired Status when the start version was compacted or the watcher fell behind.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};

use crate::events;
use crate::query::{Query, Selector};
use crate::registry::{ResourceDef, store_key};
use crate::server::App;
use crate::status::{ApiError, ApiResult};
use crate::store::{Event, EventType, WatchStart};
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

/// What a watch request asks for.
struct Options {
    /// The resourceVersion to watch from (absent, empty or `0`: the current state first).
    from: Option<u64>,
    /// `sendInitialEvents`: the current state first even with a resourceVersion.
    send_initial: bool,
    /// `allowWatchBookmarks` (never for Tables, as kubectl's watches do not take them).
    bookmarks: bool,
    /// `timeoutSeconds`, default 30 minutes.
    timeout: Duration,
}

impl Options {
    fn parse(query: &Query, table: bool) -> ApiResult<Self> {
        let from =
            match query.get("resourceVersion") {
                None | Some("" | "0") => None,
                Some(rv) => Some(rv.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!("invalid resource version: {rv}"))
                })?),
            };
        Ok(Self {
            from,
            send_initial: query.flag("sendInitialEvents"),
            bookmarks: query.flag("allowWatchBookmarks") && !table,
            timeout: query
                .get("timeoutSeconds")
                .and_then(|t| t.parse::<u64>().ok())
                .map_or(Duration::from_secs(1800), Duration::from_secs),
        })
    }

    /// The resourceVersion events must be newer than, unless the current state is sent first.
    fn resume_from(&self) -> Option<u64> {
        if self.send_initial { None } else { self.from }
    }
}

/// The sending side of one watch: objects rendered (as Tables when asked) into event lines.
struct Out {
    spec: WatchSpec,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
    /// Whether the next Table still carries its column definitions (only the first does).
    headers: bool,
}

impl Out {
    /// Send one event; `false` when the client is gone.
    async fn send(&mut self, kind: &str, obj: &Value) -> bool {
        let rendered = if self.spec.table {
            let t = table::table(
                &self.spec.def,
                self.spec.def.printer_columns(),
                std::slice::from_ref(obj),
                None,
                self.headers,
                self.spec.include_object,
            );
            self.headers = false;
            t
        } else {
            obj.clone()
        };
        self.raw(kind, &rendered).await
    }

    async fn raw(&self, kind: &str, obj: &Value) -> bool {
        self.tx.send(Ok(line(kind, obj))).await.is_ok()
    }

    async fn bookmark(&self, rv: u64, initial_end: bool) -> bool {
        self.raw("BOOKMARK", &bookmark(&self.spec.def, rv, initial_end))
            .await
    }
}

/// Start a watch and answer with its stream.
///
/// # Errors
/// 400 for a resourceVersion that is not a number.
pub fn watch(app: Arc<App>, spec: WatchSpec, query: &Query) -> ApiResult<Response> {
    let options = Options::parse(query, spec.table)?;
    let start = app.store.watch(
        store_key(&spec.def),
        spec.namespace.as_deref(),
        options.resume_from(),
    );
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    let out = Out {
        spec,
        tx,
        headers: true,
    };
    let closer = app.faults.watch_closer();
    tokio::spawn(stream(out, start, options, closer, app.bookmark_interval));
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("cache-control", "no-cache, private")
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// The events of one watch: a 410 ERROR when its start was compacted, else the backlog, the
/// initial-events-end bookmark when asked, then live events.
async fn stream(
    mut out: Out,
    start: Result<WatchStart, u64>,
    options: Options,
    closer: watch::Receiver<u64>,
    interval: Duration,
) {
    let start = match start {
        Ok(start) => start,
        Err(oldest) => {
            let status = ApiError::gone(options.from.unwrap_or(0), oldest).to_status();
            out.raw("ERROR", &status).await;
            return;
        }
    };
    // A watch from a resourceVersion the store has not reached (etcd restored from a
    // backup) gets nothing up to it, neither events nor a bookmark naming an older
    // version, as kube-apiserver 1.37 answers it (docs/development.md).
    let last_rv = start.rv.max(options.resume_from().unwrap_or(0));
    for ev in &start.backlog {
        if let Some((kind, obj)) = out.spec.translate(ev)
            && !out.send(kind.as_str(), &obj).await
        {
            return;
        }
    }
    if options.send_initial && options.bookmarks {
        out.bookmark(last_rv, true).await;
    }
    follow(out, start.live, &options, closer, interval, last_rv).await;
}

/// Live events until the timeout, the client leaves, the watch is closed or falls behind.
async fn follow(
    mut out: Out,
    mut live: broadcast::Receiver<Arc<Event>>,
    options: &Options,
    mut closer: watch::Receiver<u64>,
    interval: Duration,
    mut last_rv: u64,
) {
    let deadline = tokio::time::sleep(options.timeout);
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    let resume_from = options.resume_from();
    loop {
        tokio::select! {
            received = live.recv() => match received {
                Ok(ev) => {
                    last_rv = last_rv.max(ev.rv);
                    if resume_from.is_some_and(|from| ev.rv <= from)
                        || *ev.resource != *store_key(&out.spec.def)
                        || out.spec.namespace.as_deref().is_some_and(|n| n != ev.namespace)
                    {
                        continue;
                    }
                    if let Some((kind, obj)) = out.spec.translate(&ev)
                        && !out.send(kind.as_str(), &obj).await
                    {
                        return;
                    }
                }
                // A watcher too slow to keep up is closed, as the real API server
                // closes one whose buffer fills; the client watches again from the
                // last resourceVersion it saw, which the history still serves (or
                // answers 410 if compacted), instead of having to list everything.
                Err(broadcast::error::RecvError::Lagged(_) | broadcast::error::RecvError::Closed) => return,
            },
            _ = ticker.tick(), if options.bookmarks => {
                if !out.bookmark(last_rv, false).await {
                    return;
                }
            }
            () = &mut deadline => return,
            _ = closer.changed() => return,
            () = out.tx.closed() => return,
        }
    }
}
