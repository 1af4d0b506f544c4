//! Route matching: host (exact, `*.suffix`, any), path (`{param}` patterns or prefixes) and method.
//!
//! Routes are compiled once per configuration and sorted by specificity, so a request takes the
//! first route that matches. Specificity, most specific first:
//!
//! 1. host: exact name, then wildcard (longer suffix first), then any host;
//! 2. path: a pattern without captures, then patterns (more literal segments first), then
//!    prefixes (longer first);
//! 3. method: routes restricted to methods before routes for any method;
//! 4. configuration order.

use std::cmp::Reverse;

use switchyard_config::{PathPattern, PathSegment};

#[derive(Debug, Clone, PartialEq, Eq)]
enum PathMatcher {
    /// A `path` pattern, parsed by the config crate's one path grammar.
    Pattern(PathPattern),
    Prefix(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatcher {
    Any,
    Exact(String),
    /// Stored with its leading dot: `*.example.com` → `.example.com`.
    Suffix(String),
}

impl HostMatcher {
    fn parse(h: &str) -> Self {
        let h = h.to_ascii_lowercase();
        match h.strip_prefix('*') {
            Some(suffix) => HostMatcher::Suffix(suffix.to_string()),
            None => HostMatcher::Exact(h),
        }
    }
    fn matches(&self, host: &str) -> bool {
        match self {
            HostMatcher::Any => true,
            HostMatcher::Exact(e) => e.eq_ignore_ascii_case(host),
            HostMatcher::Suffix(s) => {
                host.len() > s.len()
                    && host.as_bytes()[host.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
            }
        }
    }
    fn rank(&self) -> (u8, usize) {
        match self {
            HostMatcher::Exact(_) => (2, 0),
            HostMatcher::Suffix(s) => (1, s.len()),
            HostMatcher::Any => (0, 0),
        }
    }
}

/// A compiled route's matching rules.
#[derive(Debug, Clone)]
struct Matcher {
    hosts: Vec<HostMatcher>,
    path: PathMatcher,
    methods: Vec<String>,
    order: usize,
    payload: usize,
}

impl Matcher {
    /// Sort key: smaller is more specific.
    fn specificity(&self) -> impl Ord {
        let host = self
            .hosts
            .iter()
            .map(HostMatcher::rank)
            .max()
            .unwrap_or((0, 0));
        let path = match &self.path {
            PathMatcher::Pattern(pattern) => {
                let segments = pattern.segments().len();
                let params = pattern.param_count();
                let literals = segments - params;
                (if params == 0 { 3u8 } else { 2 }, literals, segments)
            }
            PathMatcher::Prefix(p) => (1, p.len(), 0),
        };
        (
            Reverse(host),
            Reverse(path),
            Reverse(!self.methods.is_empty()),
            self.order,
        )
    }
}

/// Captured `{param}` values of a matched path, as byte ranges into the request path (no
/// allocation at match time).
#[derive(Debug, Clone, Default)]
pub struct Params {
    ranges: Vec<(usize, (usize, usize))>,
}

impl Params {
    /// The value of `name` in `path` (the same path the route matched), if captured.
    pub fn get<'p>(
        &self,
        router: &Router,
        route: usize,
        name: &str,
        path: &'p str,
    ) -> Option<&'p str> {
        let names = router.param_names(route)?;
        self.ranges.iter().find_map(|&(i, (a, b))| {
            (names.get(i).map(String::as_str) == Some(name)).then(|| &path[a..b])
        })
    }
}

/// Route definition given to [`Router::new`].
#[derive(Debug, Clone)]
pub struct RouteSpec {
    /// Host patterns; empty = any host.
    pub hosts: Vec<String>,
    /// `path` pattern, if any (see [`PathPattern::parse`]); one that does not parse matches
    /// nothing.
    pub path: Option<String>,
    /// `path_prefix`, if any (neither = prefix `/`).
    pub path_prefix: Option<String>,
    /// Allowed methods; empty = any.
    pub methods: Vec<String>,
    /// What a match returns (e.g. the route's index).
    pub payload: usize,
}

/// The routes of one listener, sorted by specificity.
///
/// ```
/// use switchyard_proxy::router::{Router, RouteSpec};
/// let spec = |hosts: &[&str], path: Option<&str>, prefix: Option<&str>, payload| RouteSpec {
///     hosts: hosts.iter().map(|h| h.to_string()).collect(),
///     path: path.map(String::from),
///     path_prefix: prefix.map(String::from),
///     methods: vec![],
///     payload,
/// };
/// let r = Router::new(vec![
///     spec(&[], None, Some("/"), 0),
///     spec(&[], Some("/users/{id}"), None, 1),
///     spec(&["*.example.com"], None, Some("/"), 2),
///     spec(&["api.example.com"], None, Some("/"), 3),
/// ]);
/// assert_eq!(r.find("other", "/users/7", "GET").map(|m| m.0), Some(1));
/// assert_eq!(r.find("other", "/x", "GET").map(|m| m.0), Some(0));
/// assert_eq!(r.find("www.example.com", "/", "GET").map(|m| m.0), Some(2));
/// assert_eq!(r.find("api.example.com", "/", "GET").map(|m| m.0), Some(3));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Router {
    matchers: Vec<Matcher>,
    param_names: Vec<(usize, Vec<String>)>,
}

impl Router {
    /// Compiles and sorts the routes.
    pub fn new(specs: Vec<RouteSpec>) -> Router {
        let mut param_names = Vec::new();
        let mut matchers: Vec<Matcher> = specs
            .into_iter()
            .enumerate()
            .filter_map(|(order, s)| {
                let path = match (&s.path, &s.path_prefix) {
                    (Some(p), _) => {
                        // Validation rejects a bad pattern; one that gets here matches nothing.
                        let pattern = PathPattern::parse(p).ok()?;
                        let names = pattern.param_names().map(String::from).collect();
                        param_names.push((s.payload, names));
                        PathMatcher::Pattern(pattern)
                    }
                    (None, Some(prefix)) => {
                        PathMatcher::Prefix(prefix.trim_end_matches('/').to_string())
                    }
                    (None, None) => PathMatcher::Prefix(String::new()),
                };
                let hosts = if s.hosts.is_empty() {
                    vec![HostMatcher::Any]
                } else {
                    s.hosts.iter().map(|h| HostMatcher::parse(h)).collect()
                };
                Some(Matcher {
                    hosts,
                    path,
                    methods: s.methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
                    order,
                    payload: s.payload,
                })
            })
            .collect();
        matchers.sort_by_key(|m| m.specificity());
        Router {
            matchers,
            param_names,
        }
    }

    fn param_names(&self, payload: usize) -> Option<&Vec<String>> {
        self.param_names
            .iter()
            .find(|(p, _)| *p == payload)
            .map(|(_, n)| n)
    }

    /// The most specific route for `host` (without port), `path` (without query) and `method`,
    /// with its captured parameters. A route without `methods` takes every method but `TRACE`.
    pub fn find(&self, host: &str, path: &str, method: &str) -> Option<(usize, Params)> {
        for m in &self.matchers {
            if !m.hosts.iter().any(|h| h.matches(host)) {
                continue;
            }
            let method_ok = if m.methods.is_empty() {
                // `TRACE` echoes the request (cookies, credentials) back: only routes that list
                // it get it (NGINX and HAProxy refuse it by default too).
                method != "TRACE"
            } else {
                m.methods.iter().any(|x| x == method)
            };
            if !method_ok {
                continue;
            }
            match &m.path {
                PathMatcher::Prefix(p) => {
                    if path.starts_with(p.as_str())
                        && (path.len() == p.len() || path.as_bytes()[p.len()] == b'/')
                    {
                        return Some((m.payload, Params::default()));
                    }
                }
                PathMatcher::Pattern(pattern) => {
                    if let Some(params) = match_pattern(pattern.segments(), path) {
                        return Some((m.payload, params));
                    }
                }
            }
        }
        None
    }
}

fn match_pattern(segs: &[PathSegment], path: &str) -> Option<Params> {
    let rest = path.strip_prefix('/')?;
    let mut params = Params::default();
    let mut offset = 1;
    let mut parts = rest.split('/');
    let mut param_index = 0;
    for seg in segs {
        let part = parts.next()?;
        match seg {
            PathSegment::Literal(l) => {
                if l != part {
                    return None;
                }
            }
            PathSegment::Param(_) => {
                if part.is_empty() {
                    return None;
                }
                params
                    .ranges
                    .push((param_index, (offset, offset + part.len())));
                param_index += 1;
            }
        }
        offset += part.len() + 1;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(
        hosts: &[&str],
        path: Option<&str>,
        prefix: Option<&str>,
        methods: &[&str],
        payload: usize,
    ) -> RouteSpec {
        RouteSpec {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            path: path.map(String::from),
            path_prefix: prefix.map(String::from),
            methods: methods.iter().map(|m| m.to_string()).collect(),
            payload,
        }
    }

    #[test]
    fn prefix_respects_segment_boundary() {
        let r = Router::new(vec![spec(&[], None, Some("/api"), &[], 0)]);
        assert!(r.find("h", "/api", "GET").is_some());
        assert!(r.find("h", "/api/x", "GET").is_some());
        assert!(r.find("h", "/apix", "GET").is_none());
    }

    #[test]
    fn params_are_captured() {
        let r = Router::new(vec![spec(
            &[],
            Some("/users/{id}/posts/{post}"),
            None,
            &[],
            7,
        )]);
        let path = "/users/42/posts/abc";
        let (route, params) = r.find("h", path, "GET").unwrap();
        assert_eq!(route, 7);
        assert_eq!(params.get(&r, 7, "id", path), Some("42"));
        assert_eq!(params.get(&r, 7, "post", path), Some("abc"));
        assert!(r.find("h", "/users/42/posts", "GET").is_none());
        assert!(r.find("h", "/users//posts/x", "GET").is_none());
    }

    #[test]
    fn methods_and_specificity() {
        let r = Router::new(vec![
            spec(&[], None, Some("/"), &[], 0),
            spec(&[], None, Some("/"), &["POST"], 1),
            spec(&[], Some("/a/b"), None, &[], 2),
            spec(&[], Some("/a/{x}"), None, &[], 3),
            spec(&[], None, Some("/a"), &[], 4),
        ]);
        assert_eq!(r.find("h", "/z", "POST").unwrap().0, 1);
        assert_eq!(r.find("h", "/z", "GET").unwrap().0, 0);
        assert_eq!(r.find("h", "/a/b", "GET").unwrap().0, 2);
        assert_eq!(r.find("h", "/a/c", "GET").unwrap().0, 3);
        assert_eq!(r.find("h", "/a/c/d", "GET").unwrap().0, 4);
    }

    #[test]
    fn trace_only_where_listed() {
        let r = Router::new(vec![
            spec(&[], None, Some("/"), &[], 0),
            spec(&[], None, Some("/t"), &["GET", "TRACE"], 1),
        ]);
        assert!(r.find("h", "/x", "TRACE").is_none());
        assert_eq!(r.find("h", "/x", "GET").unwrap().0, 0);
        assert_eq!(r.find("h", "/t/x", "TRACE").unwrap().0, 1);
    }

    #[test]
    fn a_path_that_does_not_parse_matches_nothing() {
        let r = Router::new(vec![
            spec(&[], Some("/users/id-{id}"), None, &[], 0),
            spec(&[], None, Some("/"), &[], 1),
        ]);
        assert_eq!(r.find("h", "/users/id-{id}", "GET").unwrap().0, 1);
    }

    #[test]
    fn wildcard_hosts() {
        let r = Router::new(vec![spec(&["*.example.com"], None, None, &[], 0)]);
        assert!(r.find("a.example.com", "/", "GET").is_some());
        assert!(r.find("A.Example.COM", "/", "GET").is_some());
        assert!(r.find("example.com", "/", "GET").is_none());
        assert!(r.find("aexample.com", "/", "GET").is_none());
    }
}
