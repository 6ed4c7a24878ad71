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
//!   -> policy::evaluate (pure: facts + policies -> verdict)
//!   -> admission  (verdict -> allowed / denied + warnings)
//! ```
//!
//! Only `server` touches the network in this part of the pipeline.

pub mod admission;
pub mod cli;
pub mod config;
pub mod image;
pub mod policy;
pub mod server;
pub mod telemetry;
pub mod workload;
