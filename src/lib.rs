//! # raftlb
//!
//! A clustered L4/L7 load balancer: every node forwards traffic by one
//! configuration that the nodes keep identical through Raft.
//!
//! ## Layout and data flow
//!
//! ```text
//! raftlb ctl / gRPC ──► api (ControlService) ──► control::ClusterControl
//!                          follower? forward over the peer port to the leader
//!     raft                 openraft: log + state machine in sled, gRPC peers
//!       state_machine      apply: state::ClusterState::apply_request, once
//!                          per request id; state_store writes changed parts
//!     served::ServedConfig the applied state for readers; its compiler task
//!                          builds a routing::RoutingTable (unchanged pools
//!                          reused) off the apply path, publishes (arc-swap)
//!     proxy::Engine        one listener per frontend, lock-free table reads
//!       ├─ proxy::tcp      L4 relay, per connection
//!       ├─ proxy::relay    L7 HTTP/1.1: httparse heads in a per-connection
//!       │                  buffer, strict framing, raw pooled backend
//!       │                  connections; hands a connection to hyper at the
//!       │                  first request it does not take (HTTP/1.0,
//!       │                  Upgrade, Expect, gRPC, h2 pools)
//!       └─ proxy::http     L7 on hyper: HTTP/2, and all of HTTP/1.1 with
//!                          `http1 = "hyper"`; shares routing and headers
//!          routing         route (table, route_match), balance (pool),
//!                          sticky keys, rate limits, live counters (runtime)
//!          balance         pick a backend: prebuilt, no lock, no allocation
//!     admin                /readyz /status /metrics /
//!     vip::VipRole         the leader's lease; the VIP on the leader
//!                          (bind, netlink, script modes)
//!     vip::bgp             or on every eligible node: an address on an
//!                          interface the process owns, exported by BIRD
//! ```
//!
//! `discovery` is the leader's DNS lookups for `[pool.discovery]` pools,
//! committed as backend changes through Raft. `config` holds the file formats (`node.toml`, `cluster.toml`), `node`
//! wires one node together and handles signals, `ctl` is the operator's
//! client, `demo` runs a cluster with demo backends in one process,
//! `metrics` registers the Prometheus families, `log_limit` keeps
//! repeating warnings to one line per cause, `proto` is the generated
//! gRPC code. Nothing in the hot path waits for Raft: a request loads the
//! current table, routes, picks and forwards. The one lock it takes is the
//! backend connection pool's, held for a push or a pop.

pub mod admin;
pub mod api;
pub mod auth;
pub mod balance;
pub mod config;
pub mod control;
pub mod ctl;
pub mod demo;
pub mod discovery;
pub mod events;
pub mod health;
pub mod latency;
pub mod log_limit;
pub mod metrics;
pub mod node;
pub mod proto;
pub mod proxy;
pub mod raft;
pub mod routing;
pub mod served;
pub mod state;
pub mod tls;
pub mod traffic;
pub mod vip;
