//! Compiles the protobuf definitions in `proto/` with a vendored `protoc`,
//! so no system package is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // SAFETY: build scripts are single-threaded; nothing else reads the
        // environment while this runs.
        unsafe { std::env::set_var("PROTOC", protoc) };
    }
    let descriptors =
        std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("raftlb_descriptor.bin");
    tonic_prost_build::configure()
        .file_descriptor_set_path(descriptors)
        .compile_protos(
            &[
                "proto/raftlb/v1/raft.proto",
                "proto/raftlb/v1/control.proto",
            ],
            &["proto"],
        )?;
    Ok(())
}
