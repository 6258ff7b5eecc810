//! `csrgate crd`: print the CustomResourceDefinition generated from the Rust types.

use std::io::Write;

use csrgate_api::CsrApprovalPolicy;
use kube::CustomResourceExt;

use super::{Error, Outcome};

/// The CRD as YAML, exactly as `crds/csrapprovalpolicies.csrgate.dev.yaml` holds it.
///
/// # Errors
/// Only if serializing fails, which would be a bug in the types.
pub fn crd_yaml() -> Result<String, Error> {
    Ok(serde_saphyr::to_string(&CsrApprovalPolicy::crd())?)
}

/// Prints the CRD.
///
/// # Errors
/// Serializing or writing to stdout failed.
pub fn run() -> Result<Outcome, Error> {
    let yaml = crd_yaml()?;
    std::io::stdout().lock().write_all(yaml.as_bytes())?;
    Ok(Outcome::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMITTED: &str = include_str!("../../../../crds/csrapprovalpolicies.csrgate.dev.yaml");

    #[test]
    fn committed_crd_matches_the_types() {
        let generated = crd_yaml().unwrap();
        pretty_assertions::assert_eq!(
            generated,
            COMMITTED,
            "crds/ is stale: run `cargo run -p csrgate -- crd > crds/csrapprovalpolicies.csrgate.dev.yaml`"
        );
    }

    #[test]
    fn crd_yaml_reads_back_as_the_same_definition() {
        let parsed: serde_json::Value = serde_saphyr::from_str(&crd_yaml().unwrap()).unwrap();
        assert_eq!(
            parsed,
            serde_json::to_value(CsrApprovalPolicy::crd()).unwrap()
        );
    }
}
