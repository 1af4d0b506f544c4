//! Generates the tonic client and server for the echo service from Rust definitions
//! (`tonic_prost_build::manual`), so no `protoc` is needed on the build machine. The messages are
//! plain `prost` structs in `src/pb.rs`; the wire names match `proto/echo.proto`.

use tonic_prost_build::manual::{Builder, Method, Service};

fn method(name: &str, route: &str, client_streaming: bool, server_streaming: bool) -> Method {
    let mut m = Method::builder()
        .name(name)
        .route_name(route)
        .input_type("crate::pb::EchoRequest")
        .output_type("crate::pb::EchoResponse")
        .codec_path("tonic_prost::ProstCodec");
    if client_streaming {
        m = m.client_streaming();
    }
    if server_streaming {
        m = m.server_streaming();
    }
    m.build()
}

fn main() {
    let echo = Service::builder()
        .name("Echo")
        .package("switchyard.test")
        .method(method("unary_echo", "UnaryEcho", false, false))
        .method(method(
            "server_streaming_echo",
            "ServerStreamingEcho",
            false,
            true,
        ))
        .method(method(
            "client_streaming_echo",
            "ClientStreamingEcho",
            true,
            false,
        ))
        .method(method(
            "bidirectional_streaming_echo",
            "BidirectionalStreamingEcho",
            true,
            true,
        ))
        .build();
    Builder::new().compile(&[echo]);
    println!("cargo:rerun-if-changed=build.rs");
}
