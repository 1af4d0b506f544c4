//! The origin and client talk to each other directly (no proxy): every call shape, steering
//! metadata, trailers and health. The proxy tests rely on all of this.

use grpc_echo::pb::EchoRequest;
use grpc_echo::{client, Origin, ServingStatus};
use tokio_stream::StreamExt;
use tonic::Code;

fn req(message: &str, payload: &[u8]) -> EchoRequest {
    EchoRequest {
        message: message.into(),
        payload: payload.to_vec(),
        count: 0,
    }
}

#[tokio::test]
async fn every_call_shape_over_h2c() {
    let origin = Origin::start("a", None).await.unwrap();
    let mut c = client::h2c(origin.addr).await.unwrap();

    let mut timed = tonic::Request::new(req("one", b"\x00\x01"));
    timed.set_timeout(std::time::Duration::from_secs(5));
    let r = c.unary_echo(timed).await.unwrap();
    assert_eq!(
        origin.stats.last_grpc_timeout().as_deref(),
        Some("5000000u")
    );
    assert_eq!(r.metadata().get("x-origin").unwrap(), "a");
    assert_eq!(r.get_ref().payload, b"\x00\x01");

    let mut s = c
        .server_streaming_echo(EchoRequest {
            count: 5,
            ..req("s", b"p")
        })
        .await
        .unwrap()
        .into_inner();
    let mut seqs = Vec::new();
    while let Some(m) = s.next().await {
        seqs.push(m.unwrap().seq);
    }
    assert_eq!(seqs, vec![0, 1, 2, 3, 4]);

    let out = tokio_stream::iter((0..10).map(|i| req(&i.to_string(), &[i as u8])));
    let r = c.client_streaming_echo(out).await.unwrap().into_inner();
    assert_eq!(r.message, "0,1,2,3,4,5,6,7,8,9");
    assert_eq!(r.seq, 10);

    let out = tokio_stream::iter((0..10).map(|i| req(&i.to_string(), b"")));
    let mut s = c
        .bidirectional_streaming_echo(out)
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(m) = s.next().await {
        got.push(m.unwrap().message);
    }
    assert_eq!(got.len(), 10);
    assert_eq!(origin.calls(), 4);
}

#[tokio::test]
async fn failures_and_trailers_are_steered_by_metadata() {
    let origin = Origin::start("a", None).await.unwrap();
    let mut c = client::h2c(origin.addr).await.unwrap();
    let mut r = tonic::Request::new(req("x", b""));
    r.metadata_mut().insert("x-fail-code", "7".parse().unwrap());
    r.metadata_mut()
        .insert("x-fail-message", "nope".parse().unwrap());
    r.metadata_mut().insert("x-trailer", "t1".parse().unwrap());
    let err = c.unary_echo(r).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(err.message(), "nope");
    assert_eq!(err.metadata().get("x-trailer-echo").unwrap(), "t1");

    let mut r = tonic::Request::new(EchoRequest {
        count: 2,
        ..req("x", b"")
    });
    r.metadata_mut().insert("x-trailer", "t2".parse().unwrap());
    let mut s = c.server_streaming_echo(r).await.unwrap().into_inner();
    let mut n = 0;
    while let Some(m) = s.next().await {
        match m {
            Ok(_) => n += 1,
            Err(e) => panic!("stream failed: {e}"),
        }
    }
    assert_eq!(n, 2);
    let trailers = s.trailers().await.unwrap().unwrap();
    assert_eq!(trailers.get("x-trailer-echo").unwrap(), "t2");
}

#[tokio::test]
async fn health_follows_the_switch() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let origin = Origin::start("a", None).await.unwrap();
    let mut h = HealthClient::new(client::h2c_channel(origin.addr).await.unwrap());
    let check = HealthCheckRequest {
        service: String::new(),
    };
    let s = h.check(check.clone()).await.unwrap().into_inner().status;
    assert_eq!(s, ServingStatus::Serving as i32);
    origin.set_health("", ServingStatus::NotServing).await;
    let s = h.check(check).await.unwrap().into_inner().status;
    assert_eq!(s, ServingStatus::NotServing as i32);
}
