//! `backend_path` templates: `#var#` from `[variables]` (substituted when the config is built) and
//! `{param}` from the route's path captures (substituted per request).

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Param(String),
}

/// A compiled `backend_path`.
///
/// ```
/// use std::collections::BTreeMap;
/// use switchyard_proxy::rewrite::Template;
/// let vars = BTreeMap::from([("stage".to_string(), "v1".to_string())]);
/// let t = Template::compile("/#stage#/users/{userId}", &vars).unwrap();
/// assert_eq!(t.render(|name| (name == "userId").then_some("42"), Some("a=1")), "/v1/users/42?a=1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    /// Compiles `template`, substituting `#var#` now. Errors name an unknown variable.
    pub fn compile(template: &str, vars: &BTreeMap<String, String>) -> Result<Template, String> {
        let mut with_vars = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(start) = rest.find('#') {
            with_vars.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            let end = after
                .find('#')
                .ok_or_else(|| format!("unclosed `#` in `{template}`"))?;
            let name = &after[..end];
            let value = vars
                .get(name)
                .ok_or_else(|| format!("unknown variable `#{name}#`"))?;
            with_vars.push_str(value);
            rest = &after[end + 1..];
        }
        with_vars.push_str(rest);

        let mut pieces = Vec::new();
        let mut rest = with_vars.as_str();
        while let Some(start) = rest.find('{') {
            if start > 0 {
                pieces.push(Piece::Literal(rest[..start].to_string()));
            }
            let after = &rest[start + 1..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` in `{template}`"))?;
            pieces.push(Piece::Param(after[..end].to_string()));
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Literal(rest.to_string()));
        }
        Ok(Template { pieces })
    }

    /// Names of the `{param}`s the template uses.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Param(n) => Some(n.as_str()),
            Piece::Literal(_) => None,
        })
    }

    /// Renders the path, appending `query` when present. A missing parameter renders empty.
    pub fn render<'a>(
        &self,
        param: impl Fn(&str) -> Option<&'a str>,
        query: Option<&str>,
    ) -> String {
        let mut out = String::with_capacity(64);
        for p in &self.pieces {
            match p {
                Piece::Literal(l) => out.push_str(l),
                Piece::Param(n) => out.push_str(param(n).unwrap_or("")),
            }
        }
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        out
    }
}
