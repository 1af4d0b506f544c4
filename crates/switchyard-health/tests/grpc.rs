//! gRPC health checks (`grpc.health.v1.Health/Check` over h2c) against a real tonic origin.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use grpc_echo::ServingStatus;
use switchyard_health::{
    CheckResult, GrpcProbe, HealthSpec, HttpProbe, ProbeSpec, ServerState, UpstreamHealth,
};

const SLACK: Duration = Duration::from_secs(3);

fn grpc(service: &str) -> HealthSpec {
    HealthSpec {
        active: Some(
            ProbeSpec::grpc(GrpcProbe::service(service))
                .interval(Duration::from_millis(100))
                .timeout(Duration::from_millis(500))
                .thresholds(2, 2),
        ),
        passive: None,
    }
}

#[tokio::test]
async fn not_serving_takes_a_server_out_and_serving_brings_it_back() {
    let origin = grpc_echo::Origin::start("g", None).await.unwrap();
    let cfg = grpc("");
    let pool = pool(&cfg, &[origin.addr]);
    let recorder = Arc::new(Recorder::default());
    let health = UpstreamHealth::with_observer(pool.clone(), &cfg, recorder.clone()).unwrap();
    health.initial_round().await;
    assert!(
        healthy(&pool, origin.addr),
        "SERVING passes the first round"
    );
    let view = health.server(&id(origin.addr)).unwrap();
    assert_eq!(
        view.last_check,
        Some(CheckResult::Pass { status: Some(200) })
    );
    health.start().unwrap();

    origin.set_health("", ServingStatus::NotServing).await;
    let bound = Duration::from_millis(110 * 2 + 500) + SLACK;
    assert!(
        wait_for(bound, || !healthy(&pool, origin.addr))
            .await
            .is_some(),
        "NOT_SERVING did not take the server out within {bound:?}"
    );
    let view = health.server(&id(origin.addr)).unwrap();
    assert_eq!(view.state, ServerState::Unhealthy);
    assert_eq!(
        view.last_check,
        Some(CheckResult::NotServing("NOT_SERVING".into()))
    );
    let reason = view.reason.unwrap();
    assert!(
        reason.contains("gRPC health NOT_SERVING from /grpc.health.v1.Health/Check"),
        "{reason}"
    );

    origin.set_health("", ServingStatus::Serving).await;
    assert!(
        wait_for(bound, || healthy(&pool, origin.addr))
            .await
            .is_some(),
        "SERVING did not bring the server back within {bound:?}"
    );
}

#[tokio::test]
async fn the_service_name_is_sent_and_an_unknown_one_fails() {
    let origin = grpc_echo::Origin::start("g", None).await.unwrap();
    origin
        .set_health("switchyard.test.Echo", ServingStatus::Serving)
        .await;
    let known = grpc("switchyard.test.Echo");
    let pool_known = pool(&known, &[origin.addr]);
    let h = UpstreamHealth::new(pool_known.clone(), &known).unwrap();
    h.initial_round().await;
    assert!(healthy(&pool_known, origin.addr));

    origin
        .set_health("switchyard.test.Echo", ServingStatus::NotServing)
        .await;
    let pool_known = pool(&known, &[origin.addr]);
    let h = UpstreamHealth::new(pool_known.clone(), &known).unwrap();
    h.initial_round().await;
    assert!(
        !healthy(&pool_known, origin.addr),
        "the named service's status is used"
    );
    // The whole server ("") is still SERVING: only the named service is asked about.
    let whole = grpc("");
    let pool_whole = pool(&whole, &[origin.addr]);
    let h = UpstreamHealth::new(pool_whole.clone(), &whole).unwrap();
    h.initial_round().await;
    assert!(healthy(&pool_whole, origin.addr));

    let unknown = grpc("no.such.Service");
    let pool_unknown = pool(&unknown, &[origin.addr]);
    let h = UpstreamHealth::new(pool_unknown.clone(), &unknown).unwrap();
    h.initial_round().await;
    assert!(!healthy(&pool_unknown, origin.addr));
    match h.server(&id(origin.addr)).unwrap().last_check {
        Some(CheckResult::Protocol(m)) => assert!(m.contains("gRPC status 5"), "{m}"),
        other => panic!("expected NOT_FOUND as a protocol failure, got {other:?}"),
    }
}

#[tokio::test]
async fn an_http1_only_server_fails_a_grpc_check() {
    // The HTTP/1 origin of the other tests answers 200 to anything, but not HTTP/2.
    let origin = Origin::start().await;
    let cfg = grpc("");
    let pool = pool(&cfg, &[origin.addr]);
    let h = UpstreamHealth::new(pool.clone(), &cfg).unwrap();
    h.initial_round().await;
    assert!(!healthy(&pool, origin.addr));
    let last = h.server(&id(origin.addr)).unwrap().last_check.unwrap();
    assert_eq!(last.label(), "protocol", "{last:?}");
    // And an HTTP check of the same origin still passes: the probes are independent.
    let http = HealthSpec {
        active: Some(ProbeSpec::http(HttpProbe::get("/"))),
        passive: None,
    };
    let pool = common::pool(&http, &[origin.addr]);
    let h = UpstreamHealth::new(pool.clone(), &http).unwrap();
    h.initial_round().await;
    assert!(healthy(&pool, origin.addr));
}
