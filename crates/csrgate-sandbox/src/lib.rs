//! A local Kubernetes API server (work in progress).
