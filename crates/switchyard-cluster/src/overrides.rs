//! Fleet-wide admin changes: `<prefix>/overrides/<upstream>/<server>` keys hold JSON
//! `{"enabled": bool, "weight": N}` (either or both) for the servers `server` addresses
//! (`host:port`, or `group/host:port` for one group). They are applied on top of every composed
//! configuration, so they survive reloads and pushes until cleared
//! (`DELETE /api/upstreams/{upstream}/servers/{host:port}/override`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use switchyard_config::Config;
use switchyard_proxy::ServerOverride;

/// The JSON value of an override key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideValue {
    /// `enable` / `disable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `drain` (0) / `weight N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

impl OverrideValue {
    /// This value with `change` added (a later change of the same kind replaces the earlier).
    ///
    /// ```
    /// use switchyard_cluster::overrides::OverrideValue;
    /// use switchyard_proxy::ServerOverride;
    /// let v = OverrideValue::default().with(ServerOverride::Enabled(false)).with(ServerOverride::Weight(0));
    /// assert_eq!(serde_json::to_string(&v).unwrap(), r#"{"enabled":false,"weight":0}"#);
    /// ```
    pub fn with(mut self, change: ServerOverride) -> Self {
        match change {
            ServerOverride::Enabled(e) => self.enabled = Some(e),
            ServerOverride::Weight(w) => self.weight = Some(w),
        }
        self
    }
}

/// Applies `overrides` ((upstream, server) → JSON) to the servers of `cfg`; returns one message
/// per override that was ignored (invalid, or addressing nothing at the moment).
pub fn apply(cfg: &mut Config, overrides: &BTreeMap<(String, String), String>) -> Vec<String> {
    let mut problems = Vec::new();
    for ((upstream, server), json) in overrides {
        let what = format!("override {upstream}/{server}");
        let value: OverrideValue = match crate::json_value::parse(&what, json) {
            Ok(v) => v,
            Err(problem) => {
                problems.push(problem);
                continue;
            }
        };
        let Some(up) = cfg.upstreams.iter_mut().find(|u| &u.name == upstream) else {
            problems.push(format!(
                "{what}: no upstream {upstream} (kept until cleared)"
            ));
            continue;
        };
        let up_port = up.port;
        let mut matched = 0;
        for g in &mut up.groups {
            for s in &mut g.servers {
                let hp = s.host_port(s.effective_port(up_port));
                if hp == *server || format!("{}/{hp}", g.name) == *server {
                    if let Some(e) = value.enabled {
                        s.enabled = e;
                    }
                    if let Some(w) = value.weight {
                        s.weight = Some(w);
                    }
                    matched += 1;
                }
            }
        }
        if matched == 0 {
            problems.push(format!(
                "{what}: upstream {upstream} has no server {server} (kept until cleared)"
            ));
        }
    }
    problems
}

impl crate::json_value::Weighted for OverrideValue {
    fn weight(&self) -> Option<u32> {
        self.weight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_to_every_group_or_one() {
        let text = "[[upstreams]]\nname = \"api\"\n\
                    [[upstreams.groups]]\nname = \"a\"\nservers = [{ address = \"127.0.0.1\", port = 9 }]\n\
                    [[upstreams.groups]]\nname = \"b\"\nservers = [{ address = \"127.0.0.1\", port = 10 }]\n";
        let mut cfg = match switchyard_config::parse_str(text) {
            Ok(c) => c,
            Err(e) => panic!("{e:?}"),
        };
        let mut o = BTreeMap::new();
        o.insert(
            ("api".to_string(), "127.0.0.1:9".to_string()),
            r#"{"weight":0}"#.to_string(),
        );
        o.insert(
            ("api".to_string(), "b/127.0.0.1:10".to_string()),
            r#"{"enabled":false}"#.to_string(),
        );
        o.insert(
            ("api".to_string(), "a/127.0.0.1:10".to_string()),
            r#"{"enabled":false}"#.to_string(),
        );
        let problems = apply(&mut cfg, &o);
        assert_eq!(problems.len(), 1, "{problems:?}");
        let g = &cfg.upstreams[0].groups;
        assert_eq!(
            (g[0].servers[0].weight, g[0].servers[0].enabled),
            (Some(0), true)
        );
        assert_eq!(
            (g[1].servers[0].weight, g[1].servers[0].enabled),
            (None, false)
        );
    }
}
