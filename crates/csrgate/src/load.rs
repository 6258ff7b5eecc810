//! Reading YAML inputs (policies, CSR manifests, Nodes, PEM requests) from files and
//! directories, with errors that name the file, the document and the field.

use std::fmt;
use std::path::{Path, PathBuf};

use csrgate_api::CsrApprovalPolicy;
use csrgate_policy::rbac::RbacObject;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Node;
use serde::de::DeserializeOwned;

/// Where one document came from: a file, and its position when the file holds several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The file.
    pub path: PathBuf,
    /// 1-based document number, when the file holds more than one.
    pub document: Option<usize>,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.document {
            Some(n) => write!(f, "{} (document {n})", self.path.display()),
            None => write!(f, "{}", self.path.display()),
        }
    }
}

/// Why an input could not be read. Each message starts with the file it is about.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file or directory could not be read.
    #[error("{}: cannot read", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML.
    #[error("{}: not valid YAML: {message}", path.display())]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The parser's error, with its line and column, on one line.
        message: String,
    },
    /// A document does not have the expected shape.
    #[error("{document}: {field}: {message}")]
    Field {
        /// The document.
        document: Source,
        /// The field path (`spec.validations[0].bogus`), or `.` for the whole document.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A document is of another kind than expected.
    #[error("{document}: kind is {found:?}, expected {expected}")]
    WrongKind {
        /// The document.
        document: Source,
        /// The kind found.
        found: String,
        /// The kinds accepted.
        expected: &'static str,
    },
    /// A path named on the command line holds no input.
    #[error("{}: no YAML files found", path.display())]
    Empty {
        /// The path.
        path: PathBuf,
    },
}

/// A document and where it came from.
#[derive(Debug, Clone)]
pub struct Loaded<T> {
    /// Where it came from.
    pub source: Source,
    /// The value.
    pub value: T,
}

/// Expands files and directories (recursively, `*.yaml` / `*.yml`, sorted) into files.
///
/// # Errors
/// A path that cannot be read, or a directory without YAML files.
pub fn yaml_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, LoadError> {
    let mut files = Vec::new();
    for path in paths {
        let before = files.len();
        collect(path, &mut files)?;
        if files.len() == before {
            return Err(LoadError::Empty { path: path.clone() });
        }
    }
    Ok(files)
}

fn collect(path: &Path, files: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let read_error = |source| LoadError::Read {
        path: path.to_owned(),
        source,
    };
    let metadata = std::fs::metadata(path).map_err(read_error)?;
    if !metadata.is_dir() {
        files.push(path.to_owned());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(read_error)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(read_error)?;
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            collect(&entry, files)?;
        } else if is_yaml(&entry) && !is_kustomization(&entry) {
            files.push(entry);
        }
    }
    Ok(())
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

fn is_kustomization(path: &Path) -> bool {
    path.file_stem().and_then(|s| s.to_str()) == Some("kustomization")
}

/// Reads a file as text.
///
/// # Errors
/// The file cannot be read or is not UTF-8.
pub fn read_text(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Every YAML document of a file, as JSON values; `List` documents (as `kubectl get -o yaml`
/// prints them) are flattened into their items.
///
/// # Errors
/// The file cannot be read or is not YAML.
pub fn documents(path: &Path) -> Result<Vec<Loaded<serde_json::Value>>, LoadError> {
    let text = read_text(path)?;
    let values: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&text).map_err(|error| LoadError::Yaml {
            path: path.to_owned(),
            message: first_line(&error.to_string()),
        })?;
    let values: Vec<serde_json::Value> = values.into_iter().filter(|v| !v.is_null()).collect();
    let several = values.len() > 1;
    let mut documents = Vec::new();
    for (i, value) in values.into_iter().enumerate() {
        let source = Source {
            path: path.to_owned(),
            document: several.then_some(i + 1),
        };
        if value.get("kind").and_then(|k| k.as_str()) == Some("List") {
            let items = value
                .get("items")
                .and_then(|items| items.as_array())
                .cloned()
                .unwrap_or_default();
            documents.extend(items.into_iter().enumerate().map(|(j, item)| Loaded {
                source: Source {
                    path: path.to_owned(),
                    document: Some(j + 1),
                },
                value: item,
            }));
        } else {
            documents.push(Loaded { source, value });
        }
    }
    Ok(documents)
}

/// The parser's message without its source snippet (which follows on later lines).
fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or(message);
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}

/// The `kind` of a document, or empty.
pub fn kind_of(value: &serde_json::Value) -> &str {
    value.get("kind").and_then(|k| k.as_str()).unwrap_or("")
}

/// Converts one document into `T`, naming the field that does not fit.
///
/// # Errors
/// The document does not deserialize as `T`.
pub fn typed<T: DeserializeOwned>(
    document: Loaded<serde_json::Value>,
) -> Result<Loaded<T>, LoadError> {
    match serde_path_to_error::deserialize::<_, T>(document.value) {
        Ok(value) => Ok(Loaded {
            source: document.source,
            value,
        }),
        Err(error) => Err(LoadError::Field {
            document: document.source,
            field: error.path().to_string(),
            message: error.into_inner().to_string(),
        }),
    }
}

fn of_kind<T: DeserializeOwned>(
    paths: &[PathBuf],
    kind: &'static str,
    api_version: &'static str,
) -> Result<Vec<Loaded<T>>, LoadError> {
    let mut loaded = Vec::new();
    for file in yaml_files(paths)? {
        for document in documents(&file)? {
            let found = kind_of(&document.value);
            if found != kind {
                return Err(LoadError::WrongKind {
                    document: document.source,
                    found: found.to_owned(),
                    expected: kind,
                });
            }
            let version = document
                .value
                .get("apiVersion")
                .and_then(|v| v.as_str())
                .unwrap_or("");
            if version != api_version {
                return Err(LoadError::Field {
                    document: document.source,
                    field: "apiVersion".into(),
                    message: format!("is {version:?}, expected {api_version}"),
                });
            }
            loaded.push(typed(document)?);
        }
    }
    Ok(loaded)
}

/// Loads `CsrApprovalPolicy` documents from files and directories.
///
/// # Errors
/// Unreadable files, other kinds, unknown or malformed fields.
pub fn policies(paths: &[PathBuf]) -> Result<Vec<Loaded<CsrApprovalPolicy>>, LoadError> {
    let mut loaded: Vec<Loaded<CsrApprovalPolicy>> =
        of_kind(paths, "CsrApprovalPolicy", "csrgate.dev/v1alpha1")?;
    for policy in &mut loaded {
        if policy
            .value
            .metadata
            .name
            .as_deref()
            .unwrap_or("")
            .is_empty()
        {
            return Err(LoadError::Field {
                document: policy.source.clone(),
                field: "metadata.name".into(),
                message: "is required".into(),
            });
        }
        // Files in Git carry no generation; number them as the API server would on create.
        policy.value.metadata.generation.get_or_insert(1);
    }
    Ok(loaded)
}

/// Loads CertificateSigningRequest manifests (`kubectl get csr -o yaml` output included).
///
/// # Errors
/// Unreadable files, other kinds, malformed fields.
pub fn csrs(paths: &[PathBuf]) -> Result<Vec<Loaded<CertificateSigningRequest>>, LoadError> {
    of_kind(paths, "CertificateSigningRequest", "certificates.k8s.io/v1")
}

/// Loads Node manifests.
///
/// # Errors
/// Unreadable files, other kinds, malformed fields.
pub fn nodes(paths: &[PathBuf]) -> Result<Vec<Loaded<Node>>, LoadError> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    of_kind(paths, "Node", "v1")
}

/// The kinds `--rbac` reads.
pub const RBAC_KINDS: &str = "Role, ClusterRole, RoleBinding or ClusterRoleBinding";

/// Loads RBAC manifests (`rbac.authorization.k8s.io/v1` Role, ClusterRole, RoleBinding,
/// ClusterRoleBinding) for the `authorizer` variable offline.
///
/// # Errors
/// Unreadable files, other kinds or API versions, malformed fields.
pub fn rbac(paths: &[PathBuf]) -> Result<Vec<RbacObject>, LoadError> {
    const API_VERSION: &str = "rbac.authorization.k8s.io/v1";
    let mut objects = Vec::new();
    for file in yaml_files(paths)? {
        for document in documents(&file)? {
            let kind = kind_of(&document.value).to_owned();
            if !matches!(
                kind.as_str(),
                "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding"
            ) {
                return Err(LoadError::WrongKind {
                    document: document.source,
                    found: kind,
                    expected: RBAC_KINDS,
                });
            }
            let version = document.value.get("apiVersion").and_then(|v| v.as_str());
            if version != Some(API_VERSION) {
                return Err(LoadError::Field {
                    document: document.source,
                    field: "apiVersion".into(),
                    message: format!("is {:?}, expected {API_VERSION}", version.unwrap_or("")),
                });
            }
            objects.push(match kind.as_str() {
                "Role" => RbacObject::Role(typed(document)?.value),
                "ClusterRole" => RbacObject::ClusterRole(typed(document)?.value),
                "RoleBinding" => RbacObject::RoleBinding(typed(document)?.value),
                _ => RbacObject::ClusterRoleBinding(typed(document)?.value),
            });
        }
    }
    Ok(objects)
}

/// The authorizer for the `authorizer` variable offline: RBAC from `paths`, or, when none
/// are given, one whose every check errors with `missing` (never an approval).
///
/// # Errors
/// As [`rbac`].
pub fn authorizer(
    paths: &[PathBuf],
    missing: &str,
) -> Result<std::sync::Arc<dyn csrgate_policy::Authorizer>, LoadError> {
    if paths.is_empty() {
        return Ok(std::sync::Arc::new(csrgate_policy::Unavailable::new(
            missing,
        )));
    }
    Ok(std::sync::Arc::new(
        csrgate_policy::rbac::RbacAuthorizer::new(rbac(paths)?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn unknown_policy_fields_are_named_with_their_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "p.yaml",
            "apiVersion: csrgate.dev/v1alpha1\nkind: CsrApprovalPolicy\nmetadata: {name: p}\nspec:\n  signerNames: [a.io/b]\n  validations:\n    - {name: v, expression: 'true', bogus: 1}\n",
        );
        let err = policies(std::slice::from_ref(&file))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "{}: spec.validations[0].bogus: unknown field `bogus`",
                file.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn other_kinds_are_refused_with_their_document_number() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "p.yaml",
            "apiVersion: csrgate.dev/v1alpha1\nkind: CsrApprovalPolicy\nmetadata: {name: p}\nspec: {signerNames: [a.io/b], validations: [{name: v, expression: 'true'}]}\n---\napiVersion: v1\nkind: ConfigMap\n",
        );
        let err = policies(&[file]).unwrap_err().to_string();
        assert!(
            err.ends_with("p.yaml (document 2): kind is \"ConfigMap\", expected CsrApprovalPolicy"),
            "{err}"
        );
    }

    #[test]
    fn invalid_yaml_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "bad.yaml", "a: [unclosed\n");
        let err = policies(&[file]).unwrap_err();
        assert!(matches!(err, LoadError::Yaml { .. }));
        assert!(
            err.to_string()
                .ends_with("bad.yaml: not valid YAML: line 1 column 4: unclosed bracket '['"),
            "{err}"
        );
    }

    #[test]
    fn directories_are_read_recursively_and_kustomizations_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        write(dir.path(), "kustomization.yaml", "resources: []\n");
        write(dir.path(), "README.md", "not yaml");
        let policy = "apiVersion: csrgate.dev/v1alpha1\nkind: CsrApprovalPolicy\nmetadata: {name: NAME}\nspec: {signerNames: [a.io/b], validations: [{name: v, expression: 'true'}]}\n";
        write(
            &dir.path().join("sub"),
            "b.yml",
            &policy.replace("NAME", "b"),
        );
        write(dir.path(), "a.yaml", &policy.replace("NAME", "a"));
        let loaded = policies(&[dir.path().to_owned()]).unwrap();
        let names: Vec<_> = loaded
            .iter()
            .map(|p| p.value.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(loaded[0].value.metadata.generation, Some(1));
    }

    #[test]
    fn lists_from_kubectl_are_flattened() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "nodes.yaml",
            "apiVersion: v1\nkind: List\nitems:\n  - {apiVersion: v1, kind: Node, metadata: {name: a}}\n  - {apiVersion: v1, kind: Node, metadata: {name: b}}\n",
        );
        assert_eq!(nodes(&[file]).unwrap().len(), 2);
    }
}
