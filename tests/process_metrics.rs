//! `switchyard_build_info`, the standard `process_*` series and the per-server EWMA gauge on the
//! real binary's `/metrics`, with plausible values: the version is the binary's own, resident
//! memory and open descriptors are above zero and within what `/proc` says, the start time is
//! the moment the process started, and a delayed origin's latency estimate is about its delay.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_info_process_series_and_ewma_are_exported() {
    let before_start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let slow = Origin::start("slow");
    slow.set_delay(Duration::from_millis(80));
    let cfg = format!(
        "{}[metrics]\nlisten = \"{}\"\n\n{}\
         [[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"u\"\n\n{}",
        server_section("procmetrics"),
        free_addr(),
        listener_section("web", &free_addr()),
        upstream_section("u", &[&slow]),
    );
    let gw = Gateway::start(&cfg);
    let c = client();
    for i in 0..3 {
        assert_eq!(get(&c, &gw.url(&format!("/x/{i}"))).await.status, 200);
    }
    let after_requests = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();

    let text = gw.metrics_text().await;
    let samples = parse_metrics(&text);
    let one = |name: &str| -> f64 {
        let found = metric_find(&samples, name, &[]);
        assert_eq!(found.len(), 1, "exactly one {name} series:\n{text}");
        found[0].value
    };

    // Build information: the version the binary reports on its command line, value 1.
    let (code, version_out, _) = run_cli(&["--version"]);
    assert_eq!(code, 0);
    let version = version_out.split_whitespace().nth(1).unwrap().to_string();
    let info = metric_find(&samples, "switchyard_build_info", &[("version", &version)]);
    assert_eq!(info.len(), 1, "build_info with version {version}:\n{text}");
    assert_eq!(info[0].value, 1.0);
    assert!(
        info[0].labels.get("commit").is_some_and(|c| !c.is_empty()),
        "build_info has a commit label:\n{text}"
    );

    // The process collector, checked against /proc of the gateway's own pid.
    let pid = gw.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let vm_rss_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    let rss = one("process_resident_memory_bytes");
    assert!(
        rss > 1_000_000.0 && rss < 16.0 * vm_rss_kib * 1024.0,
        "process_resident_memory_bytes {rss} vs VmRSS {vm_rss_kib} KiB"
    );
    assert!(one("process_virtual_memory_bytes") >= rss);
    let fds = one("process_open_fds");
    let fds_now = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as f64;
    // Listeners, epoll, the log file, the origin's pooled connection, stdio: more than 3.
    assert!(
        fds > 3.0 && fds < fds_now + 64.0,
        "process_open_fds {fds} (now {fds_now})"
    );
    assert!(one("process_max_fds") >= fds);
    let start = one("process_start_time_seconds");
    assert!(
        start >= before_start.floor() - 2.0 && start <= after_requests + 1.0,
        "process_start_time_seconds {start} outside [{before_start}, {after_requests}]"
    );
    assert!(
        one("process_threads") >= 2.0,
        "Pingora runs several threads"
    );
    let cpu = one("process_cpu_seconds_total");
    assert!(
        (0.0..60.0).contains(&cpu),
        "process_cpu_seconds_total {cpu}"
    );

    // EWMA latency of the 80 ms origin: about 80 ms (peak EWMA takes the peak; decays 10 s).
    let server = format!("g/127.0.0.1:{}", slow.port());
    let ewma = metric_find(
        &samples,
        "switchyard_backend_ewma_seconds",
        &[("upstream", "u"), ("server", &server)],
    );
    assert_eq!(ewma.len(), 1, "ewma series for {server}:\n{text}");
    assert!(
        ewma[0].value > 0.04 && ewma[0].value < 2.0,
        "ewma of an 80 ms origin: {}",
        ewma[0].value
    );
}
