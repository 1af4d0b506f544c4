//! The echo service's messages (`proto/echo.proto`) and its generated tonic client and server.

/// One request of any call shape.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoRequest {
    /// Echoed back in `EchoResponse::message`.
    #[prost(string, tag = "1")]
    pub message: String,
    /// Echoed back byte for byte.
    #[prost(bytes = "vec", tag = "2")]
    pub payload: Vec<u8>,
    /// `ServerStreamingEcho`: how many responses to send (0 = 1).
    #[prost(uint32, tag = "3")]
    pub count: u32,
}

/// One response of any call shape.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoResponse {
    /// The request's message (client streaming: every message joined by `,`).
    #[prost(string, tag = "1")]
    pub message: String,
    /// The request's payload (client streaming: every payload concatenated).
    #[prost(bytes = "vec", tag = "2")]
    pub payload: Vec<u8>,
    /// The label of the origin that answered.
    #[prost(string, tag = "3")]
    pub server: String,
    /// The position of this response in its stream (0-based).
    #[prost(uint32, tag = "4")]
    pub seq: u32,
}

include!(concat!(env!("OUT_DIR"), "/switchyard.test.Echo.rs"));
