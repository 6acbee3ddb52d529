//! # raftlb
//!
//! A clustered L4/L7 load balancer: every node forwards traffic by one
//! shared, versioned configuration.
//!
//! ## Layout and data flow
//!
//! ```text
//! cluster.toml / control API ──► state::Command
//!     state::ClusterState::dispatch      validate, then change (state/)
//!     served::ServedConfig::apply        compile and publish
//!     routing::RoutingTable              immutable, behind arc-swap (routing/)
//!     proxy::Engine                      one listener per frontend (proxy/)
//!       ├─ proxy::tcp                    L4 relay, per connection
//!       └─ proxy::http                   L7 on hyper, per request
//!          balance::Balancer             pick a backend, lock-free (balance/)
//!     admin                              /readyz /status /metrics /
//! ```
//!
//! `config` holds the file formats (`node.toml`, `cluster.toml`), `node`
//! wires one node together and handles signals, `demo` runs a node with
//! demo backends, `metrics` registers the Prometheus families. Nothing in
//! the hot path takes a lock: a request loads the current table, routes,
//! picks and forwards.

pub mod admin;
pub mod api;
pub mod balance;
pub mod config;
pub mod control;
pub mod ctl;
pub mod demo;
pub mod metrics;
pub mod node;
pub mod proto;
pub mod proxy;
pub mod raft;
pub mod routing;
pub mod served;
pub mod state;
