//! raftlb: a clustered L4/L7 load balancer.
pub mod balance;
pub mod config;
pub mod metrics;
pub mod routing;
pub mod state;
