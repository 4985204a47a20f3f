//! Checking `access` blocks: group references resolve, lists are not empty,
//! group names are names and members are user names. Patterns and
//! principals were parsed (with their line and column) while the YAML was
//! read; what is suspicious but valid (shadowed rules, users missing from
//! the htpasswd file) is warned about by `runtime`, which has the files.
//!

use std::collections::BTreeMap;

use super::Checker;
use crate::config::file::{AccessSection, GatewayFile, Switch};
use crate::config::grants::{Principal, valid_group_name, valid_user_name};
use crate::config::settings::{AccessRuleSettings, AccessSettings, RegistryAccess};

type Groups = BTreeMap<String, Vec<String>>;

impl Checker<'_> {
    /// The gateway-level block and, per registry in file order, the rules it
    /// is under: absent inherits the gateway's block, `off` clears it.
    pub(super) fn access(&mut self, file: &GatewayFile) -> (Option<AccessSettings>, Vec<RegistryAccess>) {
        let gateway = match &file.access {
            Some(Switch::On(section)) => Some(self.access_block("access", section, &Groups::new())),
            Some(Switch::Off) | None => None,
        };
        let inherited = gateway.as_ref().map(|g| g.groups.clone()).unwrap_or_default();
        let registries = file
            .registries
            .iter()
            .enumerate()
            .map(|(i, r)| match &r.access {
                None if gateway.is_some() => RegistryAccess::Gateway,
                None | Some(Switch::Off) => RegistryAccess::Open,
                Some(Switch::On(section)) => {
                    RegistryAccess::Own(self.access_block(&format!("registries[{i}].access"), section, &inherited))
                }
            })
            .collect();
        (gateway, registries)
    }

    fn access_block(&mut self, key: &str, section: &AccessSection, inherited: &Groups) -> AccessSettings {
        let groups = self.groups(key, section, inherited);
        if section.rules.is_empty() {
            self.issue(
                format!("{key}.rules"),
                "at least one rule is required (`access: off` turns access rules off)",
            );
        }
        let rules = (section.rules.iter().enumerate())
            .map(|(i, r)| {
                let rule_key = format!("{key}.rules[{i}]");
                if r.repositories.is_empty() {
                    self.issue(
                        format!("{rule_key}.repositories"),
                        "at least one repository pattern is required (`\"**\"` for every repository)",
                    );
                }
                for (action, list) in [("pull", &r.pull), ("push", &r.push), ("delete", &r.delete)] {
                    self.principals(&rule_key, action, list, &groups);
                }
                AccessRuleSettings {
                    repositories: r.repositories.clone(),
                    pull: r.pull.clone(),
                    push: r.push.clone(),
                    delete: r.delete.clone(),
                }
            })
            .collect();
        AccessSettings {
            key: key.to_owned(),
            groups,
            rules,
        }
    }

    /// The block's groups over the inherited ones; a name defined at both
    /// levels is an error (it would silently mean two things).
    fn groups(&mut self, key: &str, section: &AccessSection, inherited: &Groups) -> Groups {
        let mut groups = inherited.clone();
        for (name, members) in &section.groups {
            let group_key = format!("{key}.groups.{name}");
            if !valid_group_name(name) {
                self.issue(
                    group_key.clone(),
                    format!("invalid group name `{name}`: use letters, digits, `.`, `_` and `-`"),
                );
            }
            if inherited.contains_key(name) {
                self.issue(
                    group_key.clone(),
                    format!("group `{name}` is already defined in access.groups; give this one another name"),
                );
                continue;
            }
            for (j, member) in members.iter().enumerate() {
                if member.starts_with("group:") {
                    self.issue(
                        format!("{group_key}[{j}]"),
                        format!("`{member}`: groups list users of the htpasswd file, not other groups"),
                    );
                } else if !valid_user_name(member) {
                    self.issue(format!("{group_key}[{j}]"), format!("`{member}` is not a user name"));
                }
            }
            let mut sorted = members.clone();
            sorted.sort();
            sorted.dedup();
            groups.insert(name.clone(), sorted);
        }
        groups
    }

    fn principals(&mut self, rule_key: &str, action: &str, list: &[Principal], groups: &Groups) {
        for (j, p) in list.iter().enumerate() {
            let Principal::Group(name) = p else { continue };
            if groups.contains_key(name) {
                continue;
            }
            let known: Vec<&str> = groups.keys().map(String::as_str).collect();
            let known = if known.is_empty() {
                "no groups are defined".to_owned()
            } else {
                format!("defined groups: {}", known.join(", "))
            };
            self.issue(
                format!("{rule_key}.{action}[{j}]"),
                format!("unknown group `{name}` ({known})"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{ConfigIssue, RegistryAccess, Settings, parse};

    const HEAD: &str = "\
listeners:
  - address: \"127.0.0.1:5000\"
upstreams:
  registry:
    url: \"http://127.0.0.1:15000\"
";

    fn check(yaml: &str) -> (Settings, Vec<ConfigIssue>) {
        let text = format!("{HEAD}{yaml}");
        let (settings, mut issues) = parse(&text, Path::new("gw.yaml")).expect("parses");
        crate::config::locate(&text, &mut issues);
        (settings, issues)
    }

    fn messages(issues: &[ConfigIssue]) -> Vec<String> {
        issues.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn blocks_are_inherited_replaced_or_turned_off() {
        let (s, issues) = check(
            "\
access:
  groups: { admins: [alice] }
  rules:
    - repositories: [\"**\"]
      pull: [authenticated]
registries:
  - name: inherits
    hosts: [a.example]
    upstream: registry
  - name: own
    hosts: [b.example]
    upstream: registry
    access:
      groups: { ci: [bot, bot] }
      rules:
        - repositories: [ci/**]
          push: [group:ci, group:admins]
  - name: open
    default: true
    upstream: registry
    access: off
",
        );
        assert!(issues.is_empty(), "{:?}", messages(&issues));
        assert_eq!(s.access.as_ref().unwrap().key, "access");
        assert_eq!(s.registry_access[0], RegistryAccess::Gateway);
        let RegistryAccess::Own(own) = &s.registry_access[1] else {
            panic!("{:?}", s.registry_access[1])
        };
        assert_eq!(own.key, "registries[1].access");
        assert_eq!(own.groups["admins"], vec!["alice"], "gateway groups are visible");
        assert_eq!(own.groups["ci"], vec!["bot"], "members deduplicated");
        assert_eq!(own.rule_key(0), "registries[1].access.rules[0]");
        assert_eq!(s.registry_access[2], RegistryAccess::Open);
    }

    #[test]
    fn no_gateway_block_means_open_registries() {
        let (s, issues) = check("registries:\n  - name: main\n    default: true\n    upstream: registry\n");
        assert!(issues.is_empty());
        assert!(s.access.is_none());
        assert_eq!(s.registry_access, vec![RegistryAccess::Open]);
    }

    #[test]
    fn errors_name_key_and_line() {
        let (_, issues) = check(
            "\
access:
  groups:
    admins: [alice, \"group:ops\"]
    \"bad name\": [bob]
  rules:
    - repositories: []
      pull: [group:admin]
registries:
  - name: main
    default: true
    upstream: registry
    access:
      groups: { admins: [carol] }
      rules: []
",
        );
        let m = messages(&issues);
        let has = |needle: &[&str]| m.iter().any(|l| needle.iter().all(|n| l.contains(n)));
        assert!(has(&["access.groups.admins[1]", "not other groups"]), "{m:?}");
        assert!(has(&["invalid group name `bad name`"]), "{m:?}");
        assert!(
            has(&[
                "access.rules[0].repositories",
                "at least one repository pattern",
                "line 11"
            ]),
            "{m:?}"
        );
        assert!(
            has(&[
                "access.rules[0].pull[0]",
                "unknown group `admin`",
                "defined groups: admins",
                "line 12"
            ]),
            "{m:?}"
        );
        assert!(has(&["registries[0].access.groups.admins", "already defined"]), "{m:?}");
        assert!(has(&["registries[0].access.rules", "at least one rule"]), "{m:?}");
    }

    #[test]
    fn bad_patterns_and_principals_fail_while_reading_with_line_and_column() {
        let text = format!(
            "{HEAD}access:\n  rules:\n    - repositories: [\"Team/*\"]\n      pull: [authenticated]\n\
             registries:\n  - name: main\n    default: true\n    upstream: registry\n"
        );
        let e = parse(&text, Path::new("gw.yaml")).unwrap_err().to_string();
        assert!(e.contains("access.rules[0].repositories[0]"), "{e}");
        assert!(e.contains("lower case") && e.contains("line 8"), "{e}");
        let text = text
            .replace("[\"Team/*\"]", "[\"**\"]")
            .replace("[authenticated]", "[\"role:x\"]");
        let e = parse(&text, Path::new("gw.yaml")).unwrap_err().to_string();
        assert!(
            e.contains("access.rules[0].pull[0]") && e.contains("unknown kind `role:`"),
            "{e}"
        );
    }
}
