//! A versioned in-memory object store: one global resourceVersion counter, a bounded event history, 410 on compaction.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::broadcast;

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed.
    Deleted,
}

impl EventType {
    /// The watch event `type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, as kept in the history and sent to watchers.
#[derive(Debug, Clone)]
pub struct Event {
    /// resourceVersion of the change.
    pub rv: u64,
    /// Store key of the resource (`registry::store_key`).
    pub resource: Arc<str>,
    /// Namespace, empty for cluster-scoped objects.
    pub namespace: String,
    /// Kind of change.
    pub kind: EventType,
    /// The object before the change (modified, deleted).
    pub old: Option<Arc<Value>>,
    /// The object after the change (for deletes: the last state, with the delete's resourceVersion).
    pub object: Arc<Value>,
}

type ObjectKey = (Arc<str>, String, String);

struct Inner {
    objects: BTreeMap<ObjectKey, Value>,
    rv: u64,
    history: VecDeque<Arc<Event>>,
    /// Every event with rv <= compacted is gone from the history.
    compacted: u64,
    capacity: usize,
}

/// The store shared by all handlers.
pub struct Store {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<Event>>,
}

/// Why a store write failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// Create of an existing key.
    AlreadyExists,
    /// Update or delete of a missing key.
    NotFound,
    /// The precondition resourceVersion is not the current one.
    Conflict,
}

/// Where a watch starts.
pub struct WatchStart {
    /// Events to send first (history after the start, or synthetic ADDED for current objects).
    pub backlog: Vec<Arc<Event>>,
    /// Live events after the backlog.
    pub live: broadcast::Receiver<Arc<Event>>,
    /// Current resourceVersion when the watch started.
    pub rv: u64,
}

/// The current `metadata.resourceVersion` of an object, parsed.
pub fn object_rv(obj: &Value) -> Option<u64> {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

fn set_rv(obj: &mut Value, rv: u64) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
}

impl Store {
    /// An empty store keeping at most `capacity` events of history.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(4096);
        Self {
            inner: Mutex::new(Inner {
                objects: BTreeMap::new(),
                rv: 1,
                history: VecDeque::new(),
                compacted: 1,
                capacity: capacity.max(1),
            }),
            tx,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means a panic elsewhere; the data is still consistent per write.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn record(&self, inner: &mut Inner, event: Event) {
        let event = Arc::new(event);
        inner.history.push_back(event.clone());
        while inner.history.len() > inner.capacity {
            if let Some(old) = inner.history.pop_front() {
                inner.compacted = old.rv;
            }
        }
        // No receiver is fine.
        let _ = self.tx.send(event);
    }

    /// The current global resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    /// One object.
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&(Arc::from(resource), namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Every object of a resource, in one namespace or all (`None`), with the list resourceVersion.
    pub fn list(&self, resource: &str, namespace: Option<&str>) -> (Vec<Value>, u64) {
        let inner = self.lock();
        let items = inner
            .objects
            .iter()
            .filter(|((r, ns, _), _)| &**r == resource && namespace.is_none_or(|n| n == ns))
            .map(|(_, v)| v.clone())
            .collect();
        (items, inner.rv)
    }

    /// Store a new object; sets its resourceVersion.
    pub fn create(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        mut obj: Value,
    ) -> Result<Value, StoreError> {
        let mut inner = self.lock();
        let key: ObjectKey = (Arc::from(resource), namespace.to_string(), name.to_string());
        if inner.objects.contains_key(&key) {
            return Err(StoreError::AlreadyExists);
        }
        inner.rv += 1;
        let rv = inner.rv;
        set_rv(&mut obj, rv);
        inner.objects.insert(key.clone(), obj.clone());
        let event = Event {
            rv,
            resource: key.0.clone(),
            namespace: namespace.to_string(),
            kind: EventType::Added,
            old: None,
            object: Arc::new(obj.clone()),
        };
        self.record(&mut inner, event);
        Ok(obj)
    }

    /// Read-modify-write one object atomically. `change` gets the current object and returns the new one
    /// (or `Ok(None)` to leave it as is); a `metadata.resourceVersion` in the new object that differs from the
    /// current one is a conflict. Returns the stored object.
    pub fn update<E>(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        change: impl FnOnce(&Value) -> Result<Option<Value>, E>,
    ) -> Result<Result<Value, StoreError>, E> {
        let mut inner = self.lock();
        let key: ObjectKey = (Arc::from(resource), namespace.to_string(), name.to_string());
        let Some(current) = inner.objects.get(&key).cloned() else {
            return Ok(Err(StoreError::NotFound));
        };
        let Some(mut next) = change(&current)? else {
            return Ok(Ok(current));
        };
        if let Some(rv) = next
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            && !rv.is_empty()
            && Some(rv)
                != current
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
        {
            return Ok(Err(StoreError::Conflict));
        }
        set_rv(&mut next, object_rv(&current).unwrap_or(0));
        if next == current {
            // A no-op write keeps the resourceVersion, as the real server does.
            return Ok(Ok(current));
        }
        inner.rv += 1;
        let rv = inner.rv;
        set_rv(&mut next, rv);
        inner.objects.insert(key.clone(), next.clone());
        let event = Event {
            rv,
            resource: key.0.clone(),
            namespace: namespace.to_string(),
            kind: EventType::Modified,
            old: Some(Arc::new(current)),
            object: Arc::new(next.clone()),
        };
        self.record(&mut inner, event);
        Ok(Ok(next))
    }

    /// Remove an object, if `precondition_rv` (when given) is its current resourceVersion.
    pub fn delete(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        precondition_rv: Option<&str>,
    ) -> Result<Value, StoreError> {
        let mut inner = self.lock();
        let key: ObjectKey = (Arc::from(resource), namespace.to_string(), name.to_string());
        let Some(current) = inner.objects.get(&key) else {
            return Err(StoreError::NotFound);
        };
        if let Some(rv) = precondition_rv
            && Some(rv)
                != current
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
        {
            return Err(StoreError::Conflict);
        }
        let Some(mut gone) = inner.objects.remove(&key) else {
            return Err(StoreError::NotFound);
        };
        let old = Arc::new(gone.clone());
        inner.rv += 1;
        let rv = inner.rv;
        set_rv(&mut gone, rv);
        let event = Event {
            rv,
            resource: key.0.clone(),
            namespace: namespace.to_string(),
            kind: EventType::Deleted,
            old: Some(old),
            object: Arc::new(gone.clone()),
        };
        self.record(&mut inner, event);
        Ok(gone)
    }

    /// Start a watch: `from = None` means "current state, then changes" (synthetic ADDED events),
    /// `Some(rv)` means "changes after rv", which fails with the oldest kept version when rv was compacted.
    pub fn watch(
        &self,
        resource: &str,
        namespace: Option<&str>,
        from: Option<u64>,
    ) -> Result<WatchStart, u64> {
        let inner = self.lock();
        let live = self.tx.subscribe();
        let in_scope = |r: &str, ns: &str| r == resource && namespace.is_none_or(|n| n == ns);
        let backlog = match from {
            None => inner
                .objects
                .iter()
                .filter(|((r, ns, _), _)| in_scope(r, ns))
                .map(|((r, ns, _), v)| {
                    Arc::new(Event {
                        rv: object_rv(v).unwrap_or(0),
                        resource: r.clone(),
                        namespace: ns.clone(),
                        kind: EventType::Added,
                        old: None,
                        object: Arc::new(v.clone()),
                    })
                })
                .collect(),
            Some(rv) => {
                if rv < inner.compacted {
                    return Err(inner.compacted);
                }
                inner
                    .history
                    .iter()
                    .filter(|e| e.rv > rv && in_scope(&e.resource, &e.namespace))
                    .cloned()
                    .collect()
            }
        };
        Ok(WatchStart {
            backlog,
            live,
            rv: inner.rv,
        })
    }

    /// Forget the whole history: any watch from an older resourceVersion gets 410 Gone.
    pub fn compact(&self) {
        let mut inner = self.lock();
        inner.history.clear();
        inner.compacted = inner.rv;
    }

    /// A copy of every object and the resourceVersion, for [`restore`](Self::restore).
    pub fn snapshot(&self) -> Snapshot {
        let inner = self.lock();
        Snapshot {
            objects: inner.objects.clone(),
            rv: inner.rv,
        }
    }

    /// Puts the objects and resourceVersion of `snapshot` back, as restoring etcd from a
    /// backup does: clients that saw later resourceVersions are now ahead of the store, and a
    /// watch from one of them gets nothing until the store catches up (kube-apiserver 1.37
    /// answers such a watch with an empty stream; docs/development.md). The history goes too.
    pub fn restore(&self, snapshot: &Snapshot) {
        let mut inner = self.lock();
        inner.objects = snapshot.objects.clone();
        inner.rv = snapshot.rv;
        inner.history.clear();
        inner.compacted = snapshot.rv;
    }
}

/// The objects and resourceVersion of a [`Store`] at one moment.
#[derive(Clone)]
pub struct Snapshot {
    objects: BTreeMap<ObjectKey, Value>,
    rv: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(name: &str) -> Value {
        json!({"metadata": {"name": name}})
    }

    #[test]
    fn resource_versions_increase_across_resources() {
        let store = Store::new(10);
        let a = store
            .create("a", "", "x", obj("x"))
            .ok()
            .and_then(|o| object_rv(&o));
        let b = store
            .create("b", "", "x", obj("x"))
            .ok()
            .and_then(|o| object_rv(&o));
        assert!(a < b, "{a:?} < {b:?}");
    }

    #[test]
    fn a_watch_from_a_version_older_than_the_history_is_refused() {
        let store = Store::new(2);
        for i in 0..5 {
            let _ = store.create("a", "", &format!("o{i}"), obj("o"));
        }
        assert!(store.watch("a", None, Some(2)).is_err());
        assert_eq!(
            store
                .watch("a", None, Some(5))
                .map(|w| w.backlog.len())
                .ok(),
            Some(1)
        );
    }

    #[test]
    fn a_restore_puts_objects_and_resource_version_back() {
        let store = Store::new(10);
        let _ = store.create("a", "", "x", obj("x"));
        let snapshot = store.snapshot();
        let before = store.current_rv();
        let _ = store.create("a", "", "y", obj("y"));
        store.restore(&snapshot);
        assert_eq!(store.current_rv(), before);
        assert!(store.get("a", "", "y").is_none());
        assert!(store.get("a", "", "x").is_some());
        // A watcher that saw `y` is ahead of the store now: nothing to send it.
        let watch = store.watch("a", None, Some(before + 1)).ok();
        assert_eq!(watch.map(|w| w.backlog.len()), Some(0));
    }

    #[test]
    fn a_stale_resource_version_conflicts() {
        let store = Store::new(10);
        let _ = store.create("a", "", "x", obj("x"));
        let res = store.update::<()>("a", "", "x", |_| {
            Ok(Some(
                json!({"metadata": {"name": "x", "resourceVersion": "1"}}),
            ))
        });
        assert_eq!(res, Ok(Err(StoreError::Conflict)));
    }
}
