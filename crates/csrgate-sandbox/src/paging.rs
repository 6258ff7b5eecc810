//! Chunked lists: `limit` and `continue`, as the real API server serves them.
//!
//! Clients page their lists (kube-rs's watcher asks for 500 objects at a time, `kubectl get`
//! too), so a list of 5,000 Nodes arrives as ten small responses rather than one large one;
//! without paging, a benchmark of the controller's memory would measure a response no real
//! API server sends.
//!
//! The token carries the list's resourceVersion and the last key served, as the real one
//! does (base64 of JSON). One simplification: the real server serves every page from the
//! snapshot at that resourceVersion; here later pages come from the current state, so an
//! object changed between pages arrives in its newer state. A client that watches from the
//! list's resourceVersion sees the change again as an event, so a reflector ends up the same.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::query::Query;
use crate::status::{ApiError, ApiResult};

/// One page of a list.
pub struct Page {
    /// The objects in this page, in key order.
    pub items: Vec<Value>,
    /// The list's resourceVersion: the first page's, on every page.
    pub resource_version: u64,
    /// The token for the next page, when objects remain.
    pub continue_token: Option<String>,
    /// How many objects remain after this page, when objects remain.
    pub remaining_item_count: Option<usize>,
}

/// An object's place in the list order: namespace, then name (the store's key order).
fn key(object: &Value) -> (&str, &str) {
    let meta = &object["metadata"];
    (
        meta["namespace"].as_str().unwrap_or_default(),
        meta["name"].as_str().unwrap_or_default(),
    )
}

fn invalid_token(why: &str) -> ApiError {
    ApiError::bad_request(format!("continue key is not valid: {why}"))
}

/// The page `query` asks for from `items` (already in key order and filtered), listed at
/// resourceVersion `rv`. Without `limit` (or with 0) the whole list is one page.
pub fn page(items: Vec<Value>, rv: u64, query: &Query) -> ApiResult<Page> {
    let limit = match query.get("limit") {
        None | Some("") => 0,
        Some(text) => text.parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!(
                "limit: Invalid value: \"{text}\": must be an integer"
            ))
        })?,
    };
    let (resource_version, start) = match query.get("continue").filter(|t| !t.is_empty()) {
        None => (rv, None),
        Some(token) => {
            let decoded: Value = STANDARD
                .decode(token)
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                .ok_or_else(|| invalid_token("not base64-encoded JSON"))?;
            let rv = decoded["rv"]
                .as_u64()
                .ok_or_else(|| invalid_token("no resourceVersion"))?;
            let start = decoded["start"]
                .as_str()
                .and_then(|s| s.strip_suffix('\0'))
                .and_then(|s| s.split_once('/'))
                .map(|(ns, name)| (ns.to_owned(), name.to_owned()))
                .ok_or_else(|| invalid_token("no start key"))?;
            (rv, Some(start))
        }
    };
    let mut items: Vec<Value> = match &start {
        None => items,
        Some((ns, name)) => items
            .into_iter()
            .filter(|o| key(o) > (ns.as_str(), name.as_str()))
            .collect(),
    };
    let limit = usize::try_from(limit).unwrap_or(0);
    if limit == 0 || items.len() <= limit {
        return Ok(Page {
            items,
            resource_version,
            continue_token: None,
            remaining_item_count: None,
        });
    }
    let remaining = items.split_off(limit);
    let (ns, name) = items.last().map(key).unwrap_or_default();
    let token =
        json!({"v": "meta.k8s.io/v1", "rv": resource_version, "start": format!("{ns}/{name}\0")});
    Ok(Page {
        items,
        resource_version,
        continue_token: Some(STANDARD.encode(token.to_string())),
        remaining_item_count: Some(remaining.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects(names: &[(&str, &str)]) -> Vec<Value> {
        names
            .iter()
            .map(|(ns, name)| json!({"metadata": {"namespace": ns, "name": name}}))
            .collect()
    }

    fn names(page: &Page) -> Vec<&str> {
        page.items.iter().map(|o| key(o).1).collect()
    }

    #[test]
    fn pages_follow_each_other_until_the_list_is_done() {
        let all = objects(&[("", "a"), ("", "b"), ("", "c"), ("", "d"), ("", "e")]);
        let first = page(all.clone(), 7, &Query::parse(Some("limit=2"))).expect("page");
        assert_eq!(names(&first), ["a", "b"]);
        assert_eq!(first.remaining_item_count, Some(3));
        let token = first.continue_token.expect("more pages");
        let second = page(
            all.clone(),
            9,
            &Query::parse(Some(&format!("limit=2&continue={token}"))),
        )
        .expect("page");
        assert_eq!(names(&second), ["c", "d"]);
        assert_eq!(
            second.resource_version, 7,
            "every page reports the first page's version"
        );
        let token = second.continue_token.expect("one more page");
        let last = page(
            all,
            9,
            &Query::parse(Some(&format!("limit=2&continue={token}"))),
        )
        .expect("page");
        assert_eq!(names(&last), ["e"]);
        assert!(last.continue_token.is_none());
        assert!(last.remaining_item_count.is_none());
    }

    #[test]
    fn namespaces_order_before_names_as_in_the_store() {
        let all = objects(&[("a", "z"), ("a-x", "b"), ("b", "a")]);
        let first = page(all.clone(), 1, &Query::parse(Some("limit=1"))).expect("page");
        let token = first.continue_token.expect("more");
        let rest = page(
            all,
            1,
            &Query::parse(Some(&format!("limit=5&continue={token}"))),
        )
        .expect("page");
        assert_eq!(names(&rest), ["b", "a"]);
    }

    #[test]
    fn no_limit_is_one_page_and_bad_input_is_a_bad_request() {
        let all = objects(&[("", "a"), ("", "b")]);
        let whole = page(all.clone(), 3, &Query::parse(Some("limit=0"))).expect("page");
        assert_eq!(names(&whole), ["a", "b"]);
        assert!(whole.continue_token.is_none());
        let error = page(all.clone(), 3, &Query::parse(Some("limit=x")))
            .err()
            .expect("refused");
        assert_eq!(error.code, 400);
        let error = page(all, 3, &Query::parse(Some("continue=bm90IGpzb24=")))
            .err()
            .expect("refused");
        assert_eq!(error.code, 400);
        assert!(
            error.message.contains("continue key is not valid"),
            "{}",
            error.message
        );
    }
}
