//! pullgate: a validating admission webhook that proves, before a pod exists, that each of its images
//! will pull and run.
//!
//! The request path reads in one direction:
//!
//! ```text
//! server (HTTPS, /validate)
//!   -> admission  (AdmissionReview -> Facts, Verdict -> AdmissionResponse)
//!   -> workload   (Pod | Deployment | ... | CronJob -> pod spec view: containers, pull secrets, scheduling)
//!   -> image      (reference parsing and normalisation)
//!   -> resolve    (every image in parallel, within the admission's budget)
//!        -> platform    (where the pod may land)
//!        -> credentials (pod / ServiceAccount / node pull credentials, as kubelet finds them)
//!        -> cache -> registry (tag -> digest, digest -> platforms, via oci-client)
//!   -> policy::evaluate (pure: facts + registry answers + policies -> verdict)
//!   -> admission  (verdict -> allowed / denied + warnings)
//! ```
//!
//! Only `server`, `registry` and `credentials` touch the network.
//!
//! `check` drives the same engine (`admission::decide`) over manifest files, for CI.

pub mod admission;
pub mod check;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod engine;
pub mod facts;
pub mod image;
pub mod platform;
pub mod policy;
pub mod registry;
pub mod resolve;
pub mod server;
pub mod telemetry;
pub mod wiring;
pub mod workload;
pub mod yaml;
