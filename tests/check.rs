//! `switchyard check -c FILE`: every example config passes; broken configs exit 2 and name the
//! key path and line of each error on stderr; `--version`.

mod support;

use support::*;

/// A valid config; tests break one thing in it.
const BASE: &str = r#"[server]
instance_id = "check-1"
threads = 1
grace_period_s = 1

[[listeners]]
name = "web"
protocol = "http"
listen = "127.0.0.1:18080"

[[routes]]
name = "r"
path_prefix = "/"
upstream = "u"

[[upstreams]]
name = "u"
  [[upstreams.groups]]
  name = "g"
  weight = 2
    [[upstreams.groups.servers]]
    address = "127.0.0.1"
    port = 18081
    [[upstreams.groups.servers]]
    address = "127.0.0.1"
    port = 18082
    [[upstreams.groups.servers]]
    address = "127.0.0.1"
    port = 18083
    weight = 3
"#;

/// The 1-based line of the `nth` (0-based) line of `text` containing `needle`.
fn line_of(text: &str, needle: &str, nth: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .nth(nth)
        .unwrap_or_else(|| panic!("{needle:?} (#{nth}) not in config"))
        .0
        + 1
}

/// True if `s` mentions `line N` (not `line N0`...).
fn mentions_line(s: &str, n: usize) -> bool {
    let pat = format!("line {n}");
    s.match_indices(&pat).any(|(i, _)| {
        !s[i + pat.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

/// Runs `check` on `toml` and asserts exit 2 with a stderr line containing every one of `parts`
/// and, if given, `line N`. Returns stderr.
fn assert_rejected(toml: &str, parts: &[&str], line: Option<usize>) -> String {
    let (code, out, err) = check(toml);
    assert_eq!(
        code, 2,
        "expected exit 2 for a broken config\nstdout:\n{out}\nstderr:\n{err}\nconfig:\n{toml}"
    );
    let found = err.lines().find(|l| parts.iter().all(|p| l.contains(p)));
    let Some(l) = found else {
        panic!("no stderr line contains all of {parts:?}\nstderr:\n{err}\nconfig:\n{toml}");
    };
    if let Some(n) = line {
        assert!(
            mentions_line(l, n),
            "error line should say `line {n}`: {l:?}\nstderr:\n{err}\nconfig:\n{toml}"
        );
    }
    err
}

#[test]
fn base_config_is_valid() {
    let (code, out, err) = check(BASE);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(!out.trim().is_empty(), "check prints a summary");
}

#[test]
fn every_example_config_passes_check() {
    let dir = workspace_root().join("conf");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.toml in {}", dir.display());
    let mut failures = Vec::new();
    for f in &files {
        let (code, out, err) = check_file(f);
        if code != 0 {
            failures.push(format!(
                "{} -> exit {code}\nstdout:\n{out}\nstderr:\n{err}",
                f.display()
            ));
        } else {
            assert!(!out.trim().is_empty(), "{}: empty summary", f.display());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn negative_weight_names_the_third_server_and_its_line() {
    let toml = BASE.replace("    weight = 3\n", "    weight = -1\n");
    let n = line_of(&toml, "weight = -1", 0);
    assert_rejected(
        &toml,
        &["upstreams[0].groups[0].servers[2].weight"],
        Some(n),
    );
}

#[test]
fn unknown_key_is_an_error() {
    let toml = BASE.replace("    port = 18082\n", "    port = 18082\n    wieght = 3\n");
    let n = line_of(&toml, "wieght", 0);
    assert_rejected(
        &toml,
        &["upstreams[0].groups[0].servers[1]", "wieght"],
        Some(n),
    );
}

#[test]
fn duplicate_listener_name_is_an_error() {
    let toml = BASE.replace(
        "[[routes]]",
        "[[listeners]]\nname = \"web\"\nprotocol = \"http\"\nlisten = \"127.0.0.1:18090\"\n\n[[routes]]",
    );
    let n = line_of(&toml, "name = \"web\"", 1);
    assert_rejected(&toml, &["listeners[1].name"], Some(n));
}

#[test]
fn route_to_missing_upstream_is_an_error() {
    let toml = BASE.replace("upstream = \"u\"", "upstream = \"nope\"");
    let n = line_of(&toml, "upstream = \"nope\"", 0);
    assert_rejected(&toml, &["routes[0].upstream"], Some(n));
}

#[test]
fn retries_must_be_fewer_than_enabled_servers() {
    // Three servers, one disabled: two enabled, so retries = 2 is too many.
    let toml = BASE
        .replace("upstream = \"u\"\n", "upstream = \"u\"\nretries = 2\n")
        .replace(
            "    port = 18082\n",
            "    port = 18082\n    enabled = false\n",
        );
    let n = line_of(&toml, "retries = 2", 0);
    assert_rejected(&toml, &["routes[0].retries"], Some(n));
    // retries = 1 with two enabled servers is fine.
    let ok = toml.replace("retries = 2", "retries = 1");
    let (code, out, err) = check(&ok);
    assert_eq!(
        code, 0,
        "retries = 1 of 2 enabled\nstdout:\n{out}\nstderr:\n{err}"
    );
}

#[test]
fn bad_cidr_in_allow_is_an_error() {
    let toml = BASE.replace(
        "listen = \"127.0.0.1:18080\"\n",
        "listen = \"127.0.0.1:18080\"\nallow = [\"10.0.0.0/33\"]\n",
    );
    let n = line_of(&toml, "allow =", 0);
    assert_rejected(&toml, &["listeners[0].allow"], Some(n));
}

#[test]
fn hash_on_with_wrr_is_an_error() {
    let toml = BASE.replace(
        "name = \"u\"\n  [[upstreams.groups]]",
        "name = \"u\"\nalgorithm = \"wrr\"\nhash_on = \"header:X-User\"\n  [[upstreams.groups]]",
    );
    let n = line_of(&toml, "hash_on", 0);
    assert_rejected(&toml, &["upstreams[0].hash_on"], Some(n));
}

#[test]
fn more_than_five_allowed_instances_is_an_error() {
    let toml = format!(
        "{BASE}\n[cascade]\nallowed_instances = [\"a\", \"b\", \"c\", \"d\", \"e\", \"f\"]\n"
    );
    let n = line_of(&toml, "allowed_instances", 0);
    assert_rejected(&toml, &["cascade.allowed_instances"], Some(n));
}

#[test]
fn https_listener_without_tls_is_an_error() {
    let toml = BASE.replace("protocol = \"http\"", "protocol = \"https\"");
    assert_rejected(&toml, &["listeners[0]", "tls"], None);
}

#[test]
fn every_error_is_reported_one_per_line() {
    let toml = BASE
        .replace("upstream = \"u\"", "upstream = \"nope\"")
        .replace(
            "[[routes]]",
            "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:18090\"\n\n[[routes]]",
        );
    let err = assert_rejected(&toml, &["routes[0].upstream"], None);
    let line = err
        .lines()
        .find(|l| l.contains("listeners[1].name"))
        .unwrap_or_else(|| panic!("both errors are reported:\n{err}"));
    assert!(
        !line.contains("routes[0].upstream"),
        "one error per line:\n{err}"
    );
}

#[test]
fn version_exits_0() {
    let (code, out, err) = run_cli(&["--version"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("switchyard"), "{out}");
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
}
