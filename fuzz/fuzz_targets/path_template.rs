//! `backend_path` templating: `Template::compile` (with `#var#` from `[variables]`) and
//! `Template::render` (with `{param}` from the route's captures) never panic, and render what
//! they promise.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use switchyard_proxy::rewrite::Template;

#[derive(Debug, Arbitrary)]
struct Input {
    template: String,
    vars: Vec<(String, String)>,
    params: Vec<(String, String)>,
    query: Option<String>,
}

fuzz_target!(|input: Input| {
    let vars: BTreeMap<String, String> = input.vars.into_iter().collect();
    let params: BTreeMap<String, String> = input.params.into_iter().collect();
    let Ok(t) = Template::compile(&input.template, &vars) else {
        return;
    };
    let lookup = |name: &str| params.get(name).map(String::as_str);
    let out = t.render(lookup, input.query.as_deref());

    // A template without markers renders unchanged.
    if !input.template.contains(['#', '{']) {
        let mut want = input.template.clone();
        if let Some(q) = &input.query {
            want.push('?');
            want.push_str(q);
        }
        assert_eq!(out, want);
    }
    // The output is bounded by its parts: no piece is rendered twice over.
    let var_len: usize = vars.values().map(String::len).sum();
    let param_len: usize = params.values().map(String::len).sum::<usize>().max(1);
    let pieces = t.params().count();
    let bound = input.template.len() * (1 + var_len)
        + pieces * param_len
        + input.query.as_ref().map_or(0, |q| q.len() + 1);
    assert!(out.len() <= bound, "{} > {}", out.len(), bound);
    // Every param name of a compiled template is closed (no `}` inside it).
    for p in t.params() {
        assert!(!p.contains('}'), "param {p:?}");
    }
    // Rendering is deterministic.
    assert_eq!(out, t.render(lookup, input.query.as_deref()));
});
