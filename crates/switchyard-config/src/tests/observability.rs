//! `[access_log]` and `[tracing]`.

use super::*;

#[test]
fn access_log_and_tracing_defaults() {
    let cfg = parse_str("").unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.access_log.is_none() && cfg.tracing.is_none());
    let cfg = parse_str("[access_log]\n[tracing]\n").unwrap_or_else(|e| panic!("{e}"));
    let log = cfg.access_log.unwrap_or_else(|| panic!("access_log"));
    assert_eq!(log.path, "-");
    assert!(log.is_stdout());
    assert_eq!(log.format, AccessLogFormat::Json);
    let t = cfg.tracing.unwrap_or_else(|| panic!("tracing"));
    assert_eq!(t.otlp_endpoint, "http://127.0.0.1:4318/v1/traces");
    assert_eq!(t.service_name, "switchyard");
    assert_eq!(t.sample_ratio, 1.0);
    let cfg = parse_str("[access_log]\npath = \"/var/log/a.log\"\nformat = \"combined\"\n")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cfg.access_log.map(|l| l.format),
        Some(AccessLogFormat::Combined)
    );
}

#[test]
fn access_log_and_tracing_rules() {
    let text = "[access_log]\npath = \"x\"\nformat = \"common\"\n";
    assert_error(text, "access_log.format", "format");
    let text = "[access_log]\npath = \" \"\n";
    assert_error(text, "access_log.path", "path");
    let errs = errors("[access_log]\nbuffer = 1\n");
    assert!(errs[0].message.contains("buffer"), "{:?}", errs);
    let text =
        "[tracing]\nsample_ratio = 1.5\notlp_endpoint = \"localhost:4318\"\nservice_name = \"\"\n";
    assert_error(text, "tracing.sample_ratio", "sample_ratio");
    assert_error(text, "tracing.otlp_endpoint", "otlp_endpoint");
    assert_error(text, "tracing.service_name", "service_name");
    let ok = parse_str("[tracing]\notlp_endpoint = \"https://collector:4318/v1/traces\"\n");
    assert!(ok.is_ok(), "https endpoints are accepted: {ok:?}");
    let text =
        "[tracing]\notlp_endpoint = \"http://collector:4318/v1/traces\"\nca_file = \"ca.pem\"\n";
    assert_error(text, "tracing.ca_file", "ca_file");
    let text = "[tracing]\notlp_endpoint = \"ftp://collector/v1/traces\"\n";
    assert_error(text, "tracing.otlp_endpoint", "otlp_endpoint");
    let text = "[tracing]\notlp_endpoint = \"http://:4318/v1/traces\"\n";
    assert_error(text, "tracing.otlp_endpoint", "otlp_endpoint");
    let ok = parse_str(
        "[tracing]\notlp_endpoint = \"http://[::1]:4318/v1/traces\"\nsample_ratio = 0.0\n",
    );
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn access_log_path_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("gw.toml");
    std::fs::write(&file, "[access_log]\npath = \"access.log\"\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let cfg = load_file(&file).unwrap_or_else(|e| panic!("{e}"));
    let path = cfg.access_log.map(|l| l.path).unwrap_or_default();
    assert_eq!(std::path::Path::new(&path), dir.path().join("access.log"));
    std::fs::write(&file, "[access_log]\npath = \"-\"\n").unwrap_or_else(|e| panic!("{e}"));
    let cfg = load_file(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.access_log.map(|l| l.path).as_deref(), Some("-"));
    std::fs::write(&file, "[access_log]\npath = \"nodir/access.log\"\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let errs = load_file(&file).err().map(|e| e.errors).unwrap_or_default();
    assert!(
        errs.iter()
            .any(|e| e.path == "access_log.path" && e.message.contains("nodir")),
        "{errs:?}"
    );
}
