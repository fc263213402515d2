//! Compiles the public API in `proto/` with protox (pure Rust, no `protoc` needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/connectors/v1/common.proto",
        "proto/connectors/v1/entity.proto",
        "proto/connectors/v1/action.proto",
        "proto/connectors/v1/connection.proto",
        "proto/connectors/v1/event.proto",
        "proto/connectors/v1/tool.proto",
    ];
    let file_descriptors = protox::compile(protos, ["proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("connectors_descriptor.bin"),
        prost::Message::encode_to_vec(&file_descriptors),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Served from tools encoded once at start-up (same wire format); see src/api/tools/listing.rs.
        .extern_path(
            ".connectors.v1.ListToolsResponse",
            "crate::api::tools::ListToolsResponse",
        )
        .compile_fds(file_descriptors)?;
    println!("cargo:rerun-if-changed=proto");
    // The connector spec is embedded by include_dir; new or removed files must refresh it.
    println!("cargo:rerun-if-changed=connector-spec");
    Ok(())
}
