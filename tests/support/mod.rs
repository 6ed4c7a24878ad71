//! Shared helpers for the integration tests. Each test binary uses a different part of them.
#![allow(dead_code)]

pub mod containerd;
pub mod hostile;
pub mod kube;
pub mod podman;
pub mod process;
pub mod provider;
pub mod registry;
pub mod scripted;
pub mod webhook;
