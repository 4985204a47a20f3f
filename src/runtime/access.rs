//! Settings → compiled access policies, one per `access` block (a block
//! inherited by several registries is compiled once and shared, with its
//! rule cache), and the warnings `check` prints about them.
//!

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::access::{AccessPolicy, Action};
use crate::auth::AuthScope;
use crate::config::{RegistryAccess, Settings, line_of};
use crate::vhost::VirtualRegistry;

/// The policy a registry is under.
pub(super) fn for_registry(choice: &RegistryAccess, gateway: &Option<Arc<AccessPolicy>>) -> Option<Arc<AccessPolicy>> {
    match choice {
        RegistryAccess::Open => None,
        RegistryAccess::Gateway => gateway.clone(),
        RegistryAccess::Own(s) => Some(Arc::new(AccessPolicy::new(s))),
    }
}

/// `key (line N)`, or the key alone when the line is unknown.
fn at(settings: &Settings, key: &str) -> String {
    match line_of(&settings.text, key) {
        Some(line) => format!("{key} (line {line})"),
        None => key.to_owned(),
    }
}

/// Valid but suspicious access settings, one line each.
pub(super) fn warn(settings: &Settings, registries: &[Arc<VirtualRegistry>], warnings: &mut Vec<String>) {
    let mut seen_blocks = BTreeSet::new();
    let mut seen_users = BTreeSet::new();
    for (i, r) in registries.iter().enumerate() {
        let Some(policy) = &r.access else { continue };
        let block = policy.key().to_owned();
        // Per block: rules that never decide.
        if seen_blocks.insert(block.clone()) {
            for (rule, by) in policy.shadowed() {
                let by: Vec<String> = by.iter().map(|b| format!("rules[{b}]")).collect();
                warnings.push(format!(
                    "{}: never decides: every repository it names is taken by {} first",
                    at(settings, &format!("{block}.rules[{rule}]")),
                    by.join(", ")
                ));
            }
        }
        let auth = r.routes.v2.auth.as_ref();
        match auth {
            // Rules naming users where nobody logs in.
            None if policy.names_users() => warnings.push(format!(
                "registries[{i}] (`{}`): /v2 has no auth block, so every client is anonymous and only \
                 `anonymous` grants of {} apply",
                r.name, block
            )),
            None => {}
            Some(a) => {
                // Users the htpasswd file does not have (yet): a typo, or added later.
                let table = a.users.table();
                for (key, user) in policy.named_users() {
                    if !table.contains(user) && seen_users.insert((key.clone(), a.users.path().to_owned())) {
                        warnings.push(format!(
                            "{}: user `{user}` is not in {}; it gets access once it is added",
                            at(settings, &key),
                            a.users.path().display()
                        ));
                    }
                }
                if a.scope == AuthScope::Writes && !Action::ALL.iter().any(|&x| policy.anonymous_may_anywhere(x)) {
                    warnings.push(format!(
                        "registries[{i}] (`{}`): auth scope `writes` lets clients without credentials reach /v2/, \
                         but no rule of {block} grants `anonymous` anything",
                        r.name
                    ));
                }
            }
        }
        if r.routes.v1.is_some() {
            warnings.push(format!(
                "registries[{i}].routes.v1: legacy /v1 requests are refused while access rules are in force"
            ));
        }
    }
    for (name, members) in settings.access.iter().flat_map(|a| a.groups.iter()) {
        if members.is_empty() {
            warnings.push(format!(
                "{}: group `{name}` has no members",
                at(settings, &format!("access.groups.{name}"))
            ));
        }
    }
}
