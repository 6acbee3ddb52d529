//! Code generated from `proto/raftlb/v1/*.proto` by tonic-prost-build.

#[allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]
pub mod v1 {
    tonic::include_proto!("raftlb.v1");
}
