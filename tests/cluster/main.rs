//! Integration tests: real `raftlb` processes and real backends on
//! 127.0.0.x loopback addresses.

mod acme;
mod backend_tls;
mod certificate_files;
mod control_api;
mod control_plane;
mod discovery;
mod ecmp;
mod failover;
mod first_hour;
mod fixture;
mod health;
mod http2_grpc;
mod http2_limits;
mod http_forwarding;
mod https;
mod kubernetes_example;
mod lifecycle;
mod malformed;
mod mutual_tls;
mod netns_drills;
mod netns_fence;
mod raft_cluster;
mod readme_commands;
mod request_rules;
mod smuggling;
mod status_page;
mod sticky;
mod streaming;
mod tcp_forwarding;
mod traffic;
mod vip_modes;
mod websocket;
