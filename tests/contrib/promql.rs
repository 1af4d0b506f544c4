//! The metric names a PromQL expression reads, by a small tokenizer: not a full PromQL parser,
//! but enough for dashboards and rules. It skips string literals, label matchers (`{...}`),
//! ranges and subqueries (`[...]`), the label lists of `by`/`without`/`on`/`ignoring`/
//! `group_left`/`group_right`, function and aggregation names (an identifier followed by `(`),
//! keywords and operators, numbers and durations, and Grafana variables (`$x`, `${x}`,
//! `[$__rate_interval]`). Grafana's `label_values(metric, label)` drops its last argument, a label.

/// Identifiers that are PromQL keywords, never metric names.
const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "atan2",
    "inf",
    "nan",
    "Inf",
    "NaN",
    // Aggregation operators: `sum by (x) (...)` puts a clause between the name and its `(`.
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Keywords followed by a parenthesised label list (optional after `group_left`/`group_right`).
const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Every metric name `expr` reads, in order of appearance, without duplicates.
pub fn metric_names(expr: &str) -> Vec<String> {
    let expr = strip_label_values_label(expr);
    let chars: Vec<char> = expr.chars().collect();
    let mut names: Vec<String> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => i = skip_string(&chars, i),
            '{' => i = skip_until(&chars, i, '}'),
            '[' => i = skip_until(&chars, i, ']'),
            '#' => i = skip_until(&chars, i, '\n'),
            '$' => {
                i += 1;
                if chars.get(i) == Some(&'{') {
                    i = skip_until(&chars, i, '}');
                } else {
                    while i < chars.len() && is_ident_char(chars[i]) {
                        i += 1;
                    }
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                // A number or duration (`0.99`, `1e3`, `5m`): digits with letters attached.
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if is_ident_start(c) => {
                let start = i;
                while i < chars.len() && is_ident_char(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = next_non_space(&chars, i);
                if LABEL_LIST_KEYWORDS.contains(&word.as_str()) {
                    if let Some(j) = next.filter(|&j| chars[j] == '(') {
                        i = skip_until(&chars, j, ')');
                    }
                } else if KEYWORDS.contains(&word.as_str()) || next.is_some_and(|j| chars[j] == '(')
                {
                    // A keyword, or a function / aggregation name.
                } else if !names.contains(&word) {
                    names.push(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// `label_values(m{...}, label)` → `label_values(m{...})`: the last argument is a label name.
fn strip_label_values_label(expr: &str) -> String {
    let trimmed = expr.trim();
    match trimmed.strip_prefix("label_values(") {
        Some(inner) => match (inner.rfind(','), inner.rfind('}')) {
            (Some(comma), close) if close.is_none_or(|c| c < comma) => {
                format!("label_values({})", &inner[..comma])
            }
            _ => trimmed.to_string(),
        },
        None => trimmed.to_string(),
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn next_non_space(chars: &[char], mut i: usize) -> Option<usize> {
    while i < chars.len() && chars[i].is_whitespace() {
        i += 1;
    }
    (i < chars.len()).then_some(i)
}

/// The index after the string literal starting at `start` (backslash escapes honoured, except in
/// raw backtick strings).
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if quote != '`' => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// The index after the `close` matching the opener at `start`, skipping string literals inside
/// (label values may hold `}` or `)`); nested openers of the same kind are counted.
fn skip_until(chars: &[char], start: usize, close: char) -> usize {
    let open = chars[start];
    let mut depth = 0usize;
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => {
                i = skip_string(chars, i);
                continue;
            }
            c if c == close => {
                depth = depth.saturating_sub(1);
                if depth == 0 || close == '\n' {
                    return i + 1;
                }
            }
            c if c == open => depth += 1,
            _ => {}
        }
        i += 1;
    }
    i
}
