//! Rules in words: one line per rule for `registry-gateway check`, and the
//! reasoning behind one decision for `registry-gateway route --user`.

use std::fmt::Write;

use super::{AccessPolicy, Action, Decision, Principal};

impl AccessPolicy {
    /// `rules[1] ci/**: pull group:developers; push group:ci; delete group:admins`,
    /// one per rule, then the groups.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            let patterns: Vec<&str> = r.spec.repositories.iter().map(|g| g.text.as_str()).collect();
            let mut line = format!("rules[{i}] {}:", patterns.join(", "));
            let mut any = false;
            for (action, list) in [
                ("pull", &r.spec.pull),
                ("push", &r.spec.push),
                ("delete", &r.spec.delete),
            ] {
                if list.is_empty() {
                    continue;
                }
                let names: Vec<String> = list.iter().map(ToString::to_string).collect();
                let _ = write!(line, "{} {action} {}", if any { ";" } else { "" }, names.join(", "));
                any = true;
            }
            if !any {
                line.push_str(" nothing (denies)");
            }
            out.push(line);
        }
        for (name, members) in &self.groups {
            out.push(format!("group:{name} = {}", members.join(", ")));
        }
        out
    }

    /// Which rule decides `action` on `repository` for `user` and why, as
    /// lines for `route`; the caller adds what the client gets (401/403).
    pub fn explain(&self, user: Option<&str>, repository: &str, action: Action) -> (Decision, String) {
        let decision = self.decide(user, repository, action);
        let who = user.map_or_else(|| "a client without credentials".to_owned(), |u| format!("user {u}"));
        let mut out = String::new();
        let Some(rule) = decision.rule else {
            let _ = write!(
                out,
                "access: no rule of {} matches `{repository}`: {who} may not {}",
                self.key,
                action.as_str()
            );
            return (decision, out);
        };
        let spec = &self.rules[rule as usize].spec;
        let pattern = self
            .index
            .matching_pattern(rule, repository)
            .map_or("?", |p| p.as_str());
        let _ = writeln!(
            out,
            "access: {}.rules[{rule}] decides `{repository}`: its pattern `{pattern}` is the first to match",
            self.key
        );
        // The lists that grant the action: pull is also granted by push and delete.
        let mut lists: Vec<(&str, &[Principal])> = vec![(action.as_str(), self.list(spec, action))];
        if action == Action::Pull {
            lists.push(("push", spec.push.as_slice()));
            lists.push(("delete", spec.delete.as_slice()));
        }
        for (name, list) in &lists {
            if !list.is_empty() || *name == action.as_str() {
                let _ = writeln!(out, "  {name}: {}", self.principals_text(list));
            }
        }
        let reason = lists
            .iter()
            .find_map(|(name, list)| list.iter().find(|p| self.holds(p, user)).map(|p| (*name, p)));
        match reason {
            Some((via, p)) => {
                let through = if via == action.as_str() {
                    String::new()
                } else {
                    format!(" through {via} ({via} includes pull)")
                };
                let _ = write!(
                    out,
                    "{who} may {} {repository}: {}{through}",
                    action.as_str(),
                    self.why(p)
                );
            }
            None => {
                let _ = write!(
                    out,
                    "{who} may not {} {repository}: rules[{rule}] does not grant it",
                    action.as_str()
                );
            }
        }
        (decision, out)
    }

    fn list<'s>(&self, spec: &'s crate::config::AccessRuleSettings, action: Action) -> &'s [Principal] {
        match action {
            Action::Pull => &spec.pull,
            Action::Push => &spec.push,
            Action::Delete => &spec.delete,
        }
    }

    /// `group:ci (bot, bot2), alice`; `nobody` for an empty list.
    fn principals_text(&self, list: &[Principal]) -> String {
        if list.is_empty() {
            return "nobody".to_owned();
        }
        let parts: Vec<String> = list
            .iter()
            .map(|p| match p {
                Principal::Group(g) => {
                    let members = self.groups.get(g).map_or(String::new(), |m| m.join(", "));
                    format!("group:{g} ({members})")
                }
                other => other.to_string(),
            })
            .collect();
        parts.join(", ")
    }

    fn holds(&self, p: &Principal, user: Option<&str>) -> bool {
        match (p, user) {
            (Principal::Anonymous, _) => true,
            (Principal::Authenticated, Some(_)) => true,
            (Principal::User(u), Some(name)) => u == name,
            (Principal::Group(g), Some(name)) => self.groups.get(g).is_some_and(|m| m.iter().any(|x| x == name)),
            _ => false,
        }
    }

    fn why(&self, p: &Principal) -> String {
        match p {
            Principal::Anonymous => "granted to anonymous (everyone)".to_owned(),
            Principal::Authenticated => "granted to every authenticated user".to_owned(),
            Principal::User(_) => "named in the rule".to_owned(),
            Principal::Group(g) => format!("member of group:{g}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::example;
    use super::*;

    #[test]
    fn rules_read_back_for_check() {
        let lines = example().describe();
        assert_eq!(lines[0], "rules[0] library/*: pull anonymous; delete group:admins");
        assert_eq!(
            lines[1],
            "rules[1] ci/**: pull group:developers; push group:ci; delete group:admins"
        );
        assert!(lines.contains(&"group:developers = bob, carol".to_owned()), "{lines:?}");
    }

    #[test]
    fn explanations_name_rule_pattern_and_reason() {
        let p = example();
        let (d, text) = p.explain(Some("alice"), "team/app", Action::Pull);
        assert!(d.allowed, "{text}");
        assert!(text.contains("access.rules[2] decides `team/app`"), "{text}");
        assert!(text.contains("pattern `**`"), "{text}");
        assert!(
            text.contains("member of group:admins through delete (delete includes pull)"),
            "{text}"
        );
        let (d, text) = p.explain(Some("bob"), "ci/app", Action::Push);
        assert!(!d.allowed);
        assert!(text.contains("push: group:ci (ci-bot)"), "{text}");
        assert!(
            text.ends_with("user bob may not push ci/app: rules[1] does not grant it"),
            "{text}"
        );
        let (d, text) = p.explain(None, "library/alpine", Action::Pull);
        assert!(d.allowed && text.contains("granted to anonymous"), "{text}");
    }
}
