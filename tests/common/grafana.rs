//! Grafana dashboards as the tests read them: every panel's queries,
//! with Grafana's variables replaced by fixed values.

use std::collections::HashSet;

/// Grafana's built-in and dashboard variables, as the test sets them.
pub fn grafana_variable(name: &str) -> Option<&'static str> {
    Some(match name {
        "registry" => ".*",
        "__rate_interval" => "15s",
        "__interval" => "1s",
        "__interval_ms" => "1000",
        "__range" => "5m",
        "__range_s" => "300",
        "__range_ms" => "300000",
        _ => return None,
    })
}

/// `expr` with Grafana's `$name`, `${name}`, `${name:format}` and
/// `[[name]]` replaced; `Err` names a variable the test does not know.
pub fn substitute_variables(expr: &str) -> Result<String, String> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::new();
    let mut rest = expr;
    while let Some(i) = rest.find(['$', '[']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let (name, len) = if let Some(braced) = tail.strip_prefix("${") {
            let end = braced.find('}').ok_or_else(|| format!("unclosed ${{ in {expr}"))?;
            (braced[..end].split(':').next().unwrap(), end + 3)
        } else if let Some(bracketed) = tail.strip_prefix("[[") {
            let end = bracketed.find("]]").ok_or_else(|| format!("unclosed [[ in {expr}"))?;
            (&bracketed[..end], end + 4)
        } else if tail.starts_with('$') {
            let n = tail[1..].find(|c: char| !is_ident(c)).unwrap_or(tail.len() - 1);
            (&tail[1..1 + n], n + 1)
        } else {
            ("", 1)
        };
        if name.is_empty() {
            out.push_str(&tail[..1]);
            rest = &tail[1..];
            continue;
        }
        let value = grafana_variable(name).ok_or_else(|| format!("unknown Grafana variable ${name} in {expr}"))?;
        out.push_str(value);
        rest = &tail[len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The gateway metric names an expression reads.
pub fn metric_names(expr: &str) -> Vec<String> {
    let re = regex::Regex::new(r"\bregistry_gateway_[A-Za-z0-9_]+").unwrap();
    let mut names: Vec<String> = re.find_iter(expr).map(|m| m.as_str().to_string()).collect();
    names.sort();
    names.dedup();
    names
}

/// One query of one panel.
pub struct PanelTarget {
    /// `#id title`
    pub panel: String,
    pub ref_id: String,
    pub expr: String,
}

/// Every target of every panel, panels nested in (collapsed) rows
/// included. Panel ids must be unique.
pub fn panel_targets(dashboard: &serde_json::Value) -> Vec<PanelTarget> {
    fn walk(panels: &[serde_json::Value], ids: &mut HashSet<i64>, out: &mut Vec<PanelTarget>) {
        for p in panels {
            let id = p["id"].as_i64().unwrap_or_else(|| panic!("panel without an id: {p}"));
            assert!(ids.insert(id), "panel id {id} is used twice");
            let panel = format!("#{id} {}", p["title"].as_str().unwrap_or("?"));
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{panel}: target without expr: {t}"));
                out.push(PanelTarget {
                    panel: panel.clone(),
                    ref_id: t["refId"].as_str().unwrap_or("?").to_string(),
                    expr: expr.to_string(),
                });
            }
            walk(p["panels"].as_array().map_or(&[], Vec::as_slice), ids, out);
        }
    }
    let mut out = Vec::new();
    let panels = dashboard["panels"].as_array().expect("dashboard has panels");
    walk(panels, &mut HashSet::new(), &mut out);
    out
}
