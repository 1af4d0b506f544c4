//! What a live `/metrics` exports, by family: the `# TYPE` lines and the sample names, so that a
//! metric name from an expression can be checked against it.

use std::collections::{BTreeMap, BTreeSet};

/// The families and samples of one scrape in the Prometheus text format.
#[derive(Debug, Clone)]
pub struct Exported {
    /// Family name → type (`counter`, `gauge`, `histogram`, `summary`, `untyped`).
    pub types: BTreeMap<String, String>,
    /// Names that carry at least one sample (`x_bucket`, `x_sum`, `x_count` for a histogram).
    pub samples: BTreeSet<String>,
}

impl Exported {
    /// Reads a scrape.
    pub fn parse(text: &str) -> Exported {
        let mut types = BTreeMap::new();
        let mut samples = BTreeSet::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                    types.insert(name.to_string(), kind.to_string());
                }
            } else if !line.is_empty() && !line.starts_with('#') {
                let end = line
                    .find(|c: char| c == '{' || c.is_whitespace())
                    .unwrap_or(line.len());
                samples.insert(line[..end].to_string());
            }
        }
        Exported { types, samples }
    }

    /// Why `name` is not a series this scrape exports, or `None` if it is. A histogram's
    /// `_bucket`/`_sum`/`_count` resolve to the histogram family (a summary's `_sum`/`_count`
    /// to the summary); the bare name of a histogram or summary is not a series.
    pub fn missing(&self, name: &str) -> Option<String> {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                match self.types.get(base).map(String::as_str) {
                    Some("histogram") if self.samples.contains(name) => return None,
                    Some("summary") if suffix != "_bucket" && self.samples.contains(name) => {
                        return None
                    }
                    Some(kind @ ("histogram" | "summary")) => {
                        return Some(format!("{name}: the {kind} {base} has no such samples"))
                    }
                    _ => {}
                }
            }
        }
        match self.types.get(name).map(String::as_str) {
            Some(kind @ ("histogram" | "summary")) => Some(format!(
                "{name} is a {kind}: use {name}_bucket, {name}_sum or {name}_count"
            )),
            Some(_) if self.samples.contains(name) => None,
            Some(_) => Some(format!(
                "{name}: declared but without samples in this scrape"
            )),
            None if self.samples.contains(name) => None,
            None => Some(format!("{name}: not exported")),
        }
    }
}

/// Every problem of `exprs` against `exported`: `(expression, reason)`, empty when every name
/// is a real series.
pub fn unknown_names(exprs: &[String], exported: &Exported) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    for expr in exprs {
        for name in super::promql::metric_names(expr) {
            if let Some(why) = exported.missing(&name) {
                problems.push((expr.clone(), why));
            }
        }
    }
    problems
}
