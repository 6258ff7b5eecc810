//! The CEL environment: the variable table (`object`, `x509`, `node`, `subjectNode`,
//! `variables`) in one place.
//!
//! Building a CEL context with every standard and Kubernetes function costs tens of
//! microseconds, more than a whole decision may take, so one root context is built per
//! process and every CSR gets a cheap child scope holding what its policies read of it (the
//! flattened field paths, and `object`, `x509`, `node` only where read whole). Policies then
//! add a second child scope for `variables`. The request is parsed and converted once per CSR,
//! whatever the number of policies, and an expression several policies share is evaluated
//! once per CSR.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Node;
use kube::core::cel::KubeCelExt;
use kube::core::cel::cel::{self, Context, ExecutionError, FunctionContext, Value};

use crate::pick::{Want, fill_from, pick};
use crate::request::ParsedRequest;

/// The CSR as the API serves it.
pub const OBJECT: &str = "object";
/// The parsed request.
pub const X509: &str = "x509";
/// The Node of a `system:node:<name>` requestor, or null.
pub const NODE: &str = "node";
/// The Node named by the request's CN when it is `system:node:<name>`, or null.
pub const SUBJECT_NODE: &str = "subjectNode";
/// The policy's `spec.variables`.
pub const VARIABLES: &str = "variables";
/// Every top-level identifier an expression may use.
pub const ROOT_VARIABLES: [&str; 6] = [OBJECT, X509, NODE, SUBJECT_NODE, VARIABLES, AUTHORIZER];
pub use crate::authorizer::AUTHORIZER;

/// The fields of the `x509` variable, for compile-time checks of `x509.<field>`: the fields
/// [`ParsedRequest`] serializes, which a test checks.
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
/// The fields of `x509.publicKey`: the fields [`crate::PublicKeyInfo`] serializes, which a
/// test checks.
pub const PUBLIC_KEY_FIELDS: [&str; 3] = ["algorithm", "size", "curve"];

/// Whether a field path under `object` (the CSR) or `node` can ever resolve, by the
/// Kubernetes API schema of the type (k8s-openapi's, for the Kubernetes version csrgate is
/// built against): `Ok` when it can, or when the schema stops saying (a map such as
/// `metadata.labels` takes any key), `Err` with the first unknown field and the known ones.
///
/// # Errors
/// A field of the path is not in the schema at that point.
pub(crate) fn check_schema_path(path: &str) -> Result<(), String> {
    // Lazily built statics because they are immutable once built (the schemas of the types
    // csrgate is compiled against): no engine or policy state lives in them.
    static OBJECT_SCHEMA: OnceLock<serde_json::Value> = OnceLock::new();
    static NODE_SCHEMA: OnceLock<serde_json::Value> = OnceLock::new();
    fn inline<T: schemars::JsonSchema>() -> serde_json::Value {
        let generator = schemars::generate::SchemaSettings::draft2020_12()
            .with(|s| s.inline_subschemas = true)
            .into_generator();
        generator.into_root_schema_for::<T>().to_value()
    }
    let mut fields = path.split('.');
    let root = fields.next().unwrap_or_default();
    let mut schema = match root {
        OBJECT => OBJECT_SCHEMA.get_or_init(inline::<CertificateSigningRequest>),
        NODE | SUBJECT_NODE => NODE_SCHEMA.get_or_init(inline::<Node>),
        _ => return Ok(()),
    };
    let mut walked = root.to_owned();
    for field in fields {
        if let Some(properties) = schema.get("properties").and_then(|p| p.as_object()) {
            match properties.get(field) {
                Some(next) => schema = next,
                None => {
                    let mut known: Vec<&str> = properties.keys().map(String::as_str).collect();
                    known.sort_unstable();
                    return Err(format!(
                        "{walked} has no field {field} (fields: {})",
                        known.join(", ")
                    ));
                }
            }
        } else if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
            schema = values;
        } else {
            // A list, a scalar, or a free-form object: selecting into it is the
            // interpreter's business.
            return Ok(());
        }
        walked.push('.');
        walked.push_str(field);
    }
    Ok(())
}

/// The requestor prefix that names a node; the rest is the Node's name.
pub const NODE_USER_PREFIX: &str = "system:node:";

/// The process-wide root context with the standard CEL functions, the Kubernetes libraries
/// (kube-cel: strings, lists, sets, regex, url, ip/cidr, quantity, ...), a `matches` that
/// does not recompile its pattern on every call, and the metered, checked functions of
/// [`crate::functions`] in place of the originals they bound.
///
/// A lazily built static because it is immutable once built (functions only, no variables,
/// no cache): every engine and every decision reads the same one.
pub(crate) fn root_context() -> &'static Context<'static> {
    static ROOT: OnceLock<Context<'static>> = OnceLock::new();
    ROOT.get_or_init(|| {
        let mut context = Context::default().with_all();
        crate::functions::register(&mut context);
        crate::authorizer::register(&mut context);
        context.add_function("matches", cached_matches);
        context
    })
}

/// `string.matches(pattern)` with the pattern compiled once: a constant one with its policy,
/// a computed one in the engine's bounded cache (see [`crate::patterns`]).
fn cached_matches(
    ftx: &FunctionContext,
    cel::extractors::This(this): cel::extractors::This<Arc<String>>,
    pattern: Arc<String>,
) -> Result<bool, ExecutionError> {
    // A match is linear in the input (the regex crate guarantees it), charged as a scan.
    crate::budget::charge(
        "matches",
        crate::budget::size_units(&Value::String(Arc::clone(&this))).saturating_add(1),
    )?;
    let regex = crate::patterns::lookup(&pattern).map_err(|e| ftx.error(e))?;
    Ok(regex.is_match(&this))
}

/// Every function the root context has, by the name a call uses (`size`, `sets.contains`),
/// sorted; compile-time checks refuse a call to any other. The cel crate offers no way to
/// list a context's functions, so they are declared here, and a test checks that each is
/// callable and that this list is sorted (`@`-prefixed internal functions are left out:
/// policies cannot name them).
pub(crate) const FUNCTIONS: &[&str] = &[
    "add",
    "allowed",
    "asApproximateFloat",
    "asInteger",
    "base64.decode",
    "base64.encode",
    "bytes",
    "charAt",
    "check",
    "cidr",
    "compareTo",
    "contains",
    "containsCIDR",
    "containsIP",
    "distinct",
    "double",
    "duration",
    "endsWith",
    "error",
    "errored",
    "family",
    "find",
    "findAll",
    "first",
    "flatten",
    "format",
    "format.byte",
    "format.date",
    "format.datetime",
    "format.dns1035Label",
    "format.dns1035LabelPrefix",
    "format.dns1123Label",
    "format.dns1123LabelPrefix",
    "format.dns1123Subdomain",
    "format.dns1123SubdomainPrefix",
    "format.labelValue",
    "format.named",
    "format.qualifiedName",
    "format.uri",
    "format.uuid",
    "getDate",
    "getDayOfMonth",
    "getDayOfWeek",
    "getDayOfYear",
    "getEscapedPath",
    "getFullYear",
    "getHost",
    "getHostname",
    "getHours",
    "getMilliseconds",
    "getMinutes",
    "getMonth",
    "getPort",
    "getQuery",
    "getScheme",
    "getSeconds",
    "group",
    "hasValue",
    "indexOf",
    "int",
    "ip",
    "ip.isCanonical",
    "isCIDR",
    "isCIDRv4",
    "isCIDRv6",
    "isGlobalUnicast",
    "isGreaterThan",
    "isIP",
    "isIPv4",
    "isIPv6",
    "isInteger",
    "isLessThan",
    "isLinkLocalMulticast",
    "isLinkLocalUnicast",
    "isLoopback",
    "isQuantity",
    "isSemver",
    "isSorted",
    "isURL",
    "isUnspecified",
    "join",
    "jsonpatch.escapeKey",
    "last",
    "lastIndexOf",
    "lists.range",
    "lowerAscii",
    "major",
    "masked",
    "matches",
    "math.abs",
    "math.bitAnd",
    "math.bitNot",
    "math.bitOr",
    "math.bitShiftLeft",
    "math.bitShiftRight",
    "math.bitXor",
    "math.ceil",
    "math.floor",
    "math.greatest",
    "math.isFinite",
    "math.isInf",
    "math.isNaN",
    "math.least",
    "math.round",
    "math.sign",
    "math.sqrt",
    "math.trunc",
    "max",
    "min",
    "minor",
    "name",
    "namespace",
    "optional.none",
    "optional.of",
    "optional.ofNonZeroValue",
    "or",
    "orValue",
    "patch",
    "path",
    "prefixLength",
    "quantity",
    "reason",
    "replace",
    "resource",
    "reverse",
    "semver",
    "sets.contains",
    "sets.equivalent",
    "sets.intersects",
    "sign",
    "size",
    "slice",
    "sort",
    "split",
    "startsWith",
    "string",
    "strings.quote",
    "sub",
    "subresource",
    "substring",
    "sum",
    "timestamp",
    "trim",
    "uint",
    "upperAscii",
    "url",
    "validate",
    "value",
];

/// Whether a function name is one of [`FUNCTIONS`], for compile-time checks.
pub(crate) fn is_known_function(name: &str) -> bool {
    FUNCTIONS.binary_search(&name).is_ok()
}

/// The root variables (`object`, `x509`, `node`) an expression reads whole, rather than
/// through a flattened field path, so [`CsrScope`] converts a whole object only when read so.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Roots(u8);

impl Roots {
    fn bit(name: &str) -> u8 {
        match name {
            OBJECT => 1,
            X509 => 2,
            NODE => 4,
            SUBJECT_NODE => 8,
            // Never converted (its functions are bound instead); recorded so that
            // `CompiledPolicy::reads_authorizer` can say a policy asks it.
            AUTHORIZER => 16,
            _ => 0,
        }
    }

    /// Records that `name` is read whole; other names are ignored.
    pub(crate) fn insert(&mut self, name: &str) {
        self.0 |= Self::bit(name);
    }

    /// Whether `name` is read whole.
    pub(crate) fn contains(self, name: &str) -> bool {
        self.0 & Self::bit(name) != 0
    }

    /// Both sets.
    #[must_use]
    pub(crate) fn union(self, other: Roots) -> Roots {
        Roots(self.0 | other.0)
    }
}

pub(crate) use crate::paths::BoundPath;

/// The variables one CSR exposes to every policy (`object`, `x509`, `node`), converted once
/// and shared by all policies evaluated for it, with the field paths those policies read
/// bound as their own identifiers (see `compile::flatten`).
///
/// Only what the policies read is converted: the field paths they read (see [`pick`]), and
/// a whole `object`, `x509` or `node` only when an expression reads it whole. An identifier
/// no expression reads cannot change any result, and a path absent from the CSR is left
/// unbound either way, so reading it stays an evaluation error.
///
/// It also remembers the result of every expression that depends on the CSR alone (it reads
/// no `variables`), by its source text: policies often share expressions (an `is-node`
/// matchCondition, a CN check), and evaluating the same text over the same values gives the
/// same result, or the same error, so each is evaluated once per CSR, whatever the number of
/// policies holding it.
pub struct CsrScope {
    context: Context<'static>,
    /// Results by [`CompiledExpression::shared_key`](crate::compile::CompiledExpression),
    /// with the source they are the result of (fingerprints can collide; sources cannot).
    results: Mutex<HashMap<u64, SharedResult, Fingerprints>>,
}

/// A remembered result, with the source it is the result of.
type SharedResult = (Arc<str>, Result<Value, String>);

/// Hashes a [`CompiledExpression::shared_key`](crate::compile::CompiledExpression), already
/// a SipHash of the source, as itself: hashing it again would cost more than the lookup.
type Fingerprints = std::hash::BuildHasherDefault<Fingerprint>;

/// See [`Fingerprints`].
#[derive(Default)]
struct Fingerprint(u64);

impl std::hash::Hasher for Fingerprint {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used for `u64` keys; fold anything else in, for completeness.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl CsrScope {
    /// Converts what `policies` read of the CSR, its parsed request, the requestor's Node
    /// (`node`) and the Node its CN names (`subjectNode`) into CEL values, and binds every
    /// field path they read.
    pub fn new<'a>(
        csr: &CertificateSigningRequest,
        request: &ParsedRequest,
        node: Option<&Node>,
        subject_node: Option<&Node>,
        policies: impl IntoIterator<Item = &'a crate::CompiledPolicy>,
    ) -> Self {
        // Policies mostly read the same few paths: keep each once, by its interning number.
        let mut paths: Vec<&BoundPath> = Vec::new();
        let mut seen: Vec<u64> = Vec::new();
        let mut roots = Roots::default();
        for policy in policies {
            let Some(rules) = policy.rules() else {
                continue;
            };
            roots = roots.union(rules.roots);
            for path in &rules.scope_paths {
                let (word, bit) = (path.index / 64, 1u64 << (path.index % 64));
                if seen.len() <= word {
                    seen.resize(word + 1, 0);
                }
                if seen[word] & bit == 0 {
                    seen[word] |= bit;
                    paths.push(path);
                }
            }
        }

        let mut context = root_context().new_inner_scope();
        bind_root(&mut context, OBJECT, Some(csr), &paths, roots);
        bind_root(&mut context, X509, Some(request), &paths, roots);
        bind_root(&mut context, NODE, node, &paths, roots);
        bind_root(&mut context, SUBJECT_NODE, subject_node, &paths, roots);
        Self {
            context,
            results: Mutex::default(),
        }
    }

    /// The remembered result of the expression with this key and source, if any.
    pub(crate) fn recall(&self, key: u64, source: &Arc<str>) -> Option<Result<Value, String>> {
        // A poisoned lock only means a panic elsewhere mid-insert; the map is still usable.
        let results = self
            .results
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match results.get(&key) {
            Some((known, result)) if Arc::ptr_eq(known, source) || **known == **source => {
                Some(result.clone())
            }
            _ => None,
        }
    }

    /// Remembers the result of the expression with this key and source; on a fingerprint
    /// collision the first one stays.
    pub(crate) fn remember(&self, key: u64, source: &Arc<str>, result: &Result<Value, String>) {
        self.results
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(key)
            .or_insert_with(|| (Arc::clone(source), result.clone()));
    }

    /// Binds the `authorizer` variable, whose checks go to `reviews`.
    pub(crate) fn bind_authorizer(&mut self, reviews: &Arc<crate::authorizer::Reviews>) {
        self.context
            .add_variable_from_value(AUTHORIZER, reviews.variable());
    }

    /// The child of the root context holding the bound paths and whichever of `object`,
    /// `x509` and `node` are read whole.
    pub(crate) fn context(&self) -> &Context<'static> {
        &self.context
    }
}

/// Converts what is read of one root variable (`value`, or null when absent) and binds its
/// paths, and the root itself when it is read whole.
fn bind_root<T: serde::Serialize>(
    context: &mut Context<'static>,
    root: &str,
    value: Option<&T>,
    paths: &[&BoundPath],
    roots: Roots,
) {
    let whole = roots.contains(root);
    let mut want = Want::default();
    let mut mine: Vec<&BoundPath> = Vec::new();
    for path in paths {
        if let Some(rest) = path
            .path
            .strip_prefix(root)
            .and_then(|rest| rest.strip_prefix('.'))
        {
            want.add(rest.split('.'), mine.len());
            mine.push(path);
        }
    }
    if !whole && mine.is_empty() {
        return;
    }
    let mut found: Vec<Option<Value>> = vec![None; mine.len()];
    // Serializing these types cannot fail (no maps with non-string keys, no non-finite
    // floats); should it ever, the variable is null and rules reading it fail. A shape the
    // picking cannot reproduce is converted whole instead.
    let full = |found: &mut [Option<Value>]| {
        let converted = value
            .and_then(|v| cel::to_value(v).ok())
            .unwrap_or(Value::Null);
        found.fill(None);
        fill_from(&want, &converted, found);
        converted
    };
    let converted = if whole {
        Some(full(&mut found))
    } else {
        if let Some(Err(_)) = value.map(|v| pick(v, &want, &mut found)) {
            full(&mut found);
        }
        None
    };
    for (path, value) in mine.into_iter().zip(found) {
        if let Some(value) = value {
            context.add_variable_from_value(path.identifier.as_str(), value);
        }
    }
    if let Some(converted) = converted {
        context.add_variable_from_value(root, converted);
    }
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
    fn the_declared_functions_are_sorted_and_each_is_callable_in_the_root_context() {
        assert!(
            FUNCTIONS.windows(2).all(|w| w[0] < w[1]),
            "sorted, no duplicates"
        );
        let call = |name: &str| cel::common::ast::IdedExpr {
            id: 1,
            expr: cel::common::ast::Expr::Call(cel::common::ast::CallExpr {
                func_name: name.to_owned(),
                target: None,
                args: Vec::new(),
            }),
        };
        // Calling with no arguments: an unknown name fails as an undeclared reference before
        // any argument is looked at; a known one fails (or panics) on its arguments. The
        // panic is caught here, in the test, only to tell the two apart.
        let undeclared = |name: &str| {
            matches!(
                std::panic::catch_unwind(|| root_context().resolve(&call(name))),
                Ok(Err(ExecutionError::UndeclaredReference(missing))) if missing.as_str() == name
            )
        };
        let missing: Vec<&str> = FUNCTIONS
            .iter()
            .copied()
            .filter(|n| undeclared(n))
            .collect();
        assert!(
            missing.is_empty(),
            "declared but not in the root context: {missing:?}"
        );
        assert!(undeclared("noSuchFunction"));
    }

    #[test]
    fn the_x509_field_lists_are_the_fields_of_the_parsed_request() {
        use crate::fixtures::{CsrBuilder, with_engine};
        let csr = CsrBuilder::new().build();
        let parsed = with_engine(|engine| engine.parse_request(&csr.spec.request.0));
        let value = serde_json::to_value(parsed.as_ref().as_ref().unwrap()).unwrap();
        let keys = |value: &serde_json::Value| {
            let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
            keys.sort();
            keys
        };
        let sorted = |fields: &[&str]| {
            let mut fields: Vec<String> = fields.iter().map(|f| (*f).to_owned()).collect();
            fields.sort();
            fields
        };
        assert_eq!(keys(&value), sorted(&X509_FIELDS));
        assert_eq!(keys(&value["publicKey"]), sorted(&PUBLIC_KEY_FIELDS));
    }

    #[test]
    fn subject_node_name_is_the_node_a_system_node_cn_names() {
        use crate::fixtures::CsrBuilder;
        let engine = crate::Engine::new();
        let client = CsrBuilder::new().request("worker-1-client.csr").build();
        assert_eq!(
            engine.subject_node_name(&client).as_deref(),
            Some("worker-1")
        );
        assert_eq!(engine.subject_node_name(&CsrBuilder::new().build()), None);
        let junk = CsrBuilder::new().raw_request(b"junk").build();
        assert_eq!(engine.subject_node_name(&junk), None);
    }

    #[test]
    fn node_name_needs_the_prefix_and_a_name() {
        assert_eq!(node_name("system:node:worker-1"), Some("worker-1"));
        assert_eq!(node_name("system:node:"), None);
        assert_eq!(node_name("jane"), None);
    }
}
