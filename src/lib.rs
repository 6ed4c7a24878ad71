//! pullgate: a validating admission webhook that proves, before a pod exists, that each of its images
//! will pull and run.
//!
//! Modules depend on each other in one direction, the way the data flows (`tests/layout.rs` checks it):
//!
//! ```text
//! image, platform, workload -> facts -> { policy | credentials -> registry } -> resolve -> engine
//!                                                                       wiring -> engine
//! engine, wiring -> { admission, check, audit } -> server -> main
//! ```
//!
//! - [`facts`] holds the plain data every part shares; [`policy`] decides on it alone (no I/O).
//! - [`registry`], [`credentials`] and [`server`] are the only modules that touch the network.
//! - [`engine::decide`] is the one pipeline; [`admission`] (serve) and [`check`] both call it, with a
//!   resolver that [`wiring`] assembles from [`config::Settings`]; [`audit`] runs it over a live
//!   cluster's workloads.
//! - [`fuzz`] exposes each parser (and the whole admission decision) to the fuzzers.

pub mod admission;
pub mod audit;
pub mod check;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod engine;
pub mod facts;
pub mod fuzz;
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
