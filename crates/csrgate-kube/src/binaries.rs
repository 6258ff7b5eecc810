//! Where the binaries that `make kube` builds are found.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The control-plane binaries and the kubectl of the same Kubernetes release.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// etcd, at the version the Kubernetes release is tested with.
    pub etcd: PathBuf,
    /// kube-apiserver.
    pub kube_apiserver: PathBuf,
    /// kube-controller-manager.
    pub kube_controller_manager: PathBuf,
    /// kubectl of the same release (kubectl supports one minor version of skew).
    pub kubectl: PathBuf,
}

impl Binaries {
    /// The folder `CSRGATE_KUBE_BIN` names, else `target/kube/bin` of the repository.
    #[must_use]
    pub fn default_dir() -> PathBuf {
        std::env::var_os("CSRGATE_KUBE_BIN").map_or_else(
            || crate::repository_root().join("target/kube/bin"),
            PathBuf::from,
        )
    }

    /// Finds every binary in `dir`.
    ///
    /// # Errors
    /// [`Error::BinaryMissing`] naming the first that is absent, with the command that
    /// builds it.
    pub fn in_dir(dir: &Path) -> Result<Self> {
        let find = |binary: &'static str| {
            let path = dir.join(binary);
            if path.is_file() {
                Ok(path)
            } else {
                Err(Error::BinaryMissing { binary, path })
            }
        };
        Ok(Self {
            etcd: find("etcd")?,
            kube_apiserver: find("kube-apiserver")?,
            kube_controller_manager: find("kube-controller-manager")?,
            kubectl: find("kubectl")?,
        })
    }

    /// [`Binaries::in_dir`] of [`Binaries::default_dir`].
    ///
    /// # Errors
    /// As [`Binaries::in_dir`].
    pub fn locate() -> Result<Self> {
        Self::in_dir(&Self::default_dir())
    }
}
