//! The CEL environment: the variable table (`object`, `x509`, `node`, `variables`) in one place.
//!
//! Building a CEL context with every standard and Kubernetes function costs tens of
//! microseconds, more than a whole decision may take, so one root context is built per
//! process and every CSR gets a cheap child scope holding its three variables. Policies then
//! add a second child scope for `variables`. The request is parsed and converted once per CSR,
//! whatever the number of policies.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Node;
use kube::core::cel::KubeCelExt;
use kube::core::cel::cel::{self, Context, ExecutionError, FunctionContext, Value};
use regex::Regex;

use crate::request::ParsedRequest;

/// The CSR as the API serves it.
pub const OBJECT: &str = "object";
/// The parsed request.
pub const X509: &str = "x509";
/// The Node of a `system:node:<name>` requestor, or null.
pub const NODE: &str = "node";
/// The policy's `spec.variables`.
pub const VARIABLES: &str = "variables";
/// Every top-level identifier an expression may use.
pub const ROOT_VARIABLES: [&str; 4] = [OBJECT, X509, NODE, VARIABLES];

/// The fields of the `x509` variable, for compile-time checks of `x509.<field>`.
pub const X509_FIELDS: [&str; 9] = [
    "commonName",
    "organizations",
    "organizationalUnits",
    "dnsNames",
    "ipAddresses",
    "emailAddresses",
    "uris",
    "publicKey",
    "extensions",
];
/// The fields of `x509.publicKey`.
pub const PUBLIC_KEY_FIELDS: [&str; 3] = ["algorithm", "size", "curve"];

/// The requestor prefix that names a node; the rest is the Node's name.
pub const NODE_USER_PREFIX: &str = "system:node:";

/// Most distinct regular expressions kept compiled; past that the cache starts over, so a
/// policy building patterns from request data cannot grow memory without bound.
const REGEX_CACHE_ENTRIES: usize = 1024;
/// Largest compiled program one pattern may produce (bytes), bounding compile time and memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The process-wide root context with the standard CEL functions, the Kubernetes libraries
/// (kube-cel: strings, lists, sets, regex, url, ip/cidr, quantity, ...) and a `matches` that
/// does not recompile its pattern on every call.
pub(crate) fn root_context() -> &'static Context<'static> {
    static ROOT: OnceLock<Context<'static>> = OnceLock::new();
    ROOT.get_or_init(|| {
        let mut context = Context::default().with_all();
        context.add_function("matches", cached_matches);
        context
    })
}

/// `string.matches(pattern)` with the compiled pattern kept in [`regex_cache`].
fn cached_matches(
    ftx: &FunctionContext,
    cel::extractors::This(this): cel::extractors::This<Arc<String>>,
    pattern: Arc<String>,
) -> Result<bool, ExecutionError> {
    let regex = compiled_regex(&pattern).map_err(|e| ftx.error(e))?;
    Ok(regex.is_match(&this))
}

fn regex_cache() -> &'static RwLock<HashMap<String, Arc<Regex>>> {
    static CACHE: OnceLock<RwLock<HashMap<String, Arc<Regex>>>> = OnceLock::new();
    CACHE.get_or_init(|| RwLock::new(HashMap::new()))
}

/// Compiles `pattern` once and returns the shared compiled form.
///
/// # Errors
/// The pattern is not a valid regular expression, or compiles past the size limit.
pub(crate) fn compiled_regex(pattern: &str) -> Result<Arc<Regex>, String> {
    if let Ok(cache) = regex_cache().read()
        && let Some(regex) = cache.get(pattern)
    {
        return Ok(Arc::clone(regex));
    }
    let regex = regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map(Arc::new)
        .map_err(|e| format!("'{pattern}' is not a valid regular expression: {e}"))?;
    // A poisoned lock only means another thread panicked mid-insert; the map is still usable.
    let mut cache = regex_cache()
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if cache.len() >= REGEX_CACHE_ENTRIES {
        cache.clear();
    }
    cache.insert(pattern.to_owned(), Arc::clone(&regex));
    Ok(regex)
}

/// Whether a function name is known to the root context, for compile-time checks.
///
/// The cel crate offers no way to list its functions, so this asks the interpreter: calling an
/// unknown name fails with "undeclared reference" before any argument is looked at.
pub(crate) fn is_known_function(name: &str) -> bool {
    static KNOWN: OnceLock<RwLock<HashMap<String, bool>>> = OnceLock::new();
    let known = KNOWN.get_or_init(|| RwLock::new(HashMap::new()));
    if let Ok(map) = known.read()
        && let Some(found) = map.get(name)
    {
        return *found;
    }
    let call = cel::common::ast::IdedExpr {
        id: 1,
        expr: cel::common::ast::Expr::Call(cel::common::ast::CallExpr {
            func_name: name.to_owned(),
            target: None,
            args: Vec::new(),
        }),
    };
    let found = match std::panic::catch_unwind(|| root_context().resolve(&call)) {
        Ok(Err(ExecutionError::UndeclaredReference(missing))) => missing.as_str() != name,
        _ => true,
    };
    if let Ok(mut map) = known.write() {
        map.insert(name.to_owned(), found);
    }
    found
}

/// The variables one CSR exposes to every policy (`object`, `x509`, `node`), converted once
/// and shared by all policies evaluated for it, with the field paths those policies read
/// bound as their own identifiers (see `compile::flatten`).
pub struct CsrScope {
    context: Context<'static>,
}

impl CsrScope {
    /// Converts the CSR, its parsed request and the requestor's Node into CEL values, and
    /// binds every field path that `policies` read.
    pub fn new<'a>(
        csr: &CertificateSigningRequest,
        request: &ParsedRequest,
        node: Option<&Node>,
        policies: impl IntoIterator<Item = &'a crate::CompiledPolicy>,
    ) -> Self {
        // Serializing these API types cannot fail (no maps with non-string keys, no
        // non-finite floats); should it ever, the variable is null and rules reading it fail.
        let object = cel::to_value(csr).unwrap_or(Value::Null);
        let x509 = cel::to_value(request).unwrap_or(Value::Null);
        let node = node
            .and_then(|n| cel::to_value(n).ok())
            .unwrap_or(Value::Null);
        let mut context = root_context().new_inner_scope();
        let mut bound: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for policy in policies {
            for path in policy.field_paths() {
                if !bound.insert(path) {
                    continue;
                }
                let mut segments = path.split('.');
                let root = match segments.next() {
                    Some(OBJECT) => &object,
                    Some(X509) => &x509,
                    Some(NODE) => &node,
                    _ => continue,
                };
                if let Some(value) = select_path(root, segments) {
                    context.add_variable_from_value(path_identifier(path), value.clone());
                }
            }
        }
        context.add_variable_from_value(OBJECT, object);
        context.add_variable_from_value(X509, x509);
        context.add_variable_from_value(NODE, node);
        Self { context }
    }

    /// The child of the root context holding `object`, `x509`, `node` and the bound paths.
    pub(crate) fn context(&self) -> &Context<'static> {
        &self.context
    }
}

/// Follows map keys from `value`; `None` when a step is missing or not a map.
fn select_path<'v>(value: &'v Value, segments: std::str::Split<'_, char>) -> Option<&'v Value> {
    let mut current = value;
    for segment in segments {
        let Value::Map(map) = current else {
            return None;
        };
        current = map
            .map
            .get(&cel::objects::Key::String(Arc::new(segment.to_owned())))?;
    }
    Some(current)
}

/// The interned identifiers of flattened field paths, both ways.
#[derive(Default)]
struct PathNames {
    by_path: HashMap<String, String>,
    paths: Vec<String>,
}

fn path_names() -> &'static RwLock<PathNames> {
    static NAMES: OnceLock<RwLock<PathNames>> = OnceLock::new();
    NAMES.get_or_init(Default::default)
}

/// The identifier a flattened field path (`object.spec.username`, `variables.nodeIPs`) is
/// bound under: `@p<n>`, one per distinct path in the process.
///
/// Why short names: the interpreter finds variables by comparing names along the scope chain
/// and formats `<target>.<method>` for every method call on an identifier, so long dotted
/// names that share prefixes cost string comparisons and copies on every evaluation. `@`
/// cannot start a CEL identifier, so these never clash with user names.
pub(crate) fn path_identifier(path: &str) -> String {
    if let Ok(names) = path_names().read()
        && let Some(name) = names.by_path.get(path)
    {
        return name.clone();
    }
    let mut names = path_names()
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(name) = names.by_path.get(path) {
        return name.clone();
    }
    let name = format!("@p{}", names.paths.len());
    names.paths.push(path.to_owned());
    names.by_path.insert(path.to_owned(), name.clone());
    name
}

/// An interpreter message with every `@p<n>` identifier replaced by the path it stands for,
/// so an auditor reads `object.spec.nope`, not an internal name.
pub(crate) fn describe(message: &str) -> String {
    if !message.contains("@p") {
        return message.to_owned();
    }
    let Ok(names) = path_names().read() else {
        return message.to_owned();
    };
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("@p") {
        out.push_str(&rest[..at]);
        let digits: String = rest[at + 2..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        match digits
            .parse::<usize>()
            .ok()
            .and_then(|n| names.paths.get(n))
        {
            Some(path) => out.push_str(path),
            None => out.push_str(&rest[at..at + 2 + digits.len()]),
        }
        rest = &rest[at + 2 + digits.len()..];
    }
    out.push_str(rest);
    out
}

/// The Node name a requestor speaks for, if it is a node (`system:node:<name>`).
pub fn node_name(username: &str) -> Option<&str> {
    username
        .strip_prefix(NODE_USER_PREFIX)
        .filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_functions_include_standard_and_kubernetes_libraries() {
        for name in [
            "size",
            "matches",
            "startsWith",
            "isIP",
            "cidr",
            "url",
            "quantity",
            "lowerAscii",
            "find",
        ] {
            assert!(is_known_function(name), "{name} should be known");
        }
        assert!(!is_known_function("noSuchFunction"));
    }

    #[test]
    fn matches_reuses_the_compiled_pattern() {
        let first = compiled_regex("^a+$").unwrap();
        let second = compiled_regex("^a+$").unwrap();
        assert!(Arc::ptr_eq(&first, &second));
    }

    #[test]
    fn invalid_patterns_are_errors_not_panics() {
        assert!(
            compiled_regex("(")
                .unwrap_err()
                .contains("not a valid regular expression")
        );
    }

    #[test]
    fn path_identifiers_are_stable_and_read_back_as_paths() {
        let a = path_identifier("object.spec.username");
        assert_eq!(a, path_identifier("object.spec.username"));
        assert_ne!(a, path_identifier("object.spec.groups"));
        assert_eq!(
            describe(&format!("Undeclared reference to '{a}'")),
            "Undeclared reference to 'object.spec.username'"
        );
        assert_eq!(describe("no identifiers here"), "no identifiers here");
    }

    #[test]
    fn node_name_needs_the_prefix_and_a_name() {
        assert_eq!(node_name("system:node:worker-1"), Some("worker-1"));
        assert_eq!(node_name("system:node:"), None);
        assert_eq!(node_name("jane"), None);
    }
}
