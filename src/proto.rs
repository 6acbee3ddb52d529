//! Code generated from `proto/raftlb/v1/*.proto` by tonic-prost-build.

#[allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]
pub mod v1 {
    tonic::include_proto!("raftlb.v1");

    /// The encoded descriptors of every raftlb service, for gRPC reflection
    /// (so `grpcurl` works without the .proto files).
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("raftlb_descriptor");
}
