//! Per-repository access control: who may pull, push and delete which
//! repositories, by an ordered list of rules over repository patterns.
//!
//! The first rule with a pattern matching the repository decides (the same
//! first-match order as virtual registries); what it does not grant is
//! denied, and so is a repository no rule matches. A policy is compiled
//! once per snapshot from checked settings: groups are expanded into one
//! user table per rule, patterns into an index ([`pattern::PatternIndex`]),
//! so a decision is a few hash lookups however many rules there are.
//!
//! Nothing here knows about requests: [`requirement`] says what an
//! operation needs, `guard` asks [`AccessPolicy::decide`] and answers.

pub mod cache;
mod describe;
pub mod pattern;

use std::collections::{BTreeMap, HashMap};

pub use crate::config::grants::Principal;
use crate::config::{AccessRuleSettings, AccessSettings};
use crate::operation::Operation;

use cache::RuleCache;
use pattern::PatternIndex;

/// Policies with more patterns than this that start with a wildcard (and
/// so are tried for every repository) remember which rule decided.
const CACHE_ABOVE_FLOATING: usize = 8;

/// What a rule grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Action {
    Pull = 0,
    Push = 1,
    Delete = 2,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Pull, Action::Push, Action::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }

    /// What granting this action allows: push and delete include pull,
    /// since clients read manifests and blobs while pushing and resolve
    /// tags before deleting.
    const fn granted_bits(self) -> u8 {
        match self {
            Action::Pull => Action::Pull.bit(),
            Action::Push => Action::Push.bit() | Action::Pull.bit(),
            Action::Delete => Action::Delete.bit() | Action::Pull.bit(),
        }
    }
}

/// What an operation needs from the access rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Outside access control (`/_ping`, `/v1/_ping`).
    Nothing,
    /// `GET /v2/`: only authentication, as the auth scope asks.
    Login,
    /// `GET /v2/_catalog`: answered by the gateway, filtered to what the
    /// client may pull.
    Catalog,
    /// This action on the request's repository.
    Act(Action),
    /// Refused whenever rules are in force: what the classifier calls
    /// `other`, and the legacy `/v1` API, which rules do not cover.
    Refuse,
}

/// The requirement of every operation the gateway classifies.
pub fn requirement(op: Operation) -> Requirement {
    use Operation::*;
    match op {
        Ping => Requirement::Nothing,
        Base => Requirement::Login,
        Catalog => Requirement::Catalog,
        TagsList | ManifestGet | ManifestHead | BlobGet | BlobHead | Referrers => Requirement::Act(Action::Pull),
        ManifestPut | UploadStart | UploadChunk | UploadComplete | UploadStatus | UploadCancel => {
            Requirement::Act(Action::Push)
        }
        ManifestDelete | BlobDelete => Requirement::Act(Action::Delete),
        V1 | Other => Requirement::Refuse,
    }
}

/// The answer for one (user, repository, action).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The rule that decided (index in its block); `None`: no rule matches
    /// the repository, which is a denial.
    pub rule: Option<u32>,
}

/// What the access rules did with a request, for the access log's
/// `access` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verdict {
    /// No rules in force, or not an access decision (`GET /v2/`, ping): `-`.
    #[default]
    NotApplied,
    /// `allow@N`: rule N granted the action.
    Allowed(u32),
    /// `deny@N`: rule N decides the repository and does not grant it.
    Denied(u32),
    /// `deny@none`: no rule matches the repository.
    Unmatched,
    /// `refuse`: not an operation rules can allow (`other`, `/v1`, a
    /// percent escape in the path, upload parameters in a form body).
    Refused,
    /// `strip_mount@N`: upload allowed by rule N, its cross-repository
    /// mount removed (no pull on `from`).
    MountStripped(u32),
    /// `filter`: the catalog, answered with what the client may pull.
    Filtered,
}

impl Verdict {
    pub fn from_decision(d: Decision) -> Verdict {
        match d {
            Decision {
                allowed: true,
                rule: Some(r),
            } => Verdict::Allowed(r),
            Decision {
                allowed: false,
                rule: Some(r),
            } => Verdict::Denied(r),
            Decision { rule: None, .. } => Verdict::Unmatched,
        }
    }

    /// The word of the log field; the rule index, when there is one, is
    /// written after `@` by the log formatter (no `fmt` per line).
    pub fn word(self) -> &'static str {
        match self {
            Verdict::NotApplied => "-",
            Verdict::Allowed(_) => "allow",
            Verdict::Denied(_) | Verdict::Unmatched => "deny",
            Verdict::Refused => "refuse",
            Verdict::MountStripped(_) => "strip_mount",
            Verdict::Filtered => "filter",
        }
    }

    /// `Some(Some(n))`: `@n`; `Some(None)`: `@none`; `None`: nothing.
    pub fn rule(self) -> Option<Option<u32>> {
        match self {
            Verdict::Allowed(r) | Verdict::Denied(r) | Verdict::MountStripped(r) => Some(Some(r)),
            Verdict::Unmatched => Some(None),
            _ => None,
        }
    }
}

/// Who may do what under one rule, groups expanded, as action bits.
#[derive(Debug, Default)]
struct Grants {
    anonymous: u8,
    authenticated: u8,
    users: HashMap<Box<str>, u8>,
}

impl Grants {
    fn new(spec: &AccessRuleSettings, groups: &BTreeMap<String, Vec<String>>) -> Grants {
        let mut g = Grants::default();
        for (action, list) in [
            (Action::Pull, &spec.pull),
            (Action::Push, &spec.push),
            (Action::Delete, &spec.delete),
        ] {
            let bits = action.granted_bits();
            for p in list {
                match p {
                    Principal::Anonymous => g.anonymous |= bits,
                    Principal::Authenticated => g.authenticated |= bits,
                    Principal::User(u) => *g.users.entry(u.as_str().into()).or_default() |= bits,
                    Principal::Group(name) => {
                        for u in groups.get(name).into_iter().flatten() {
                            *g.users.entry(u.as_str().into()).or_default() |= bits;
                        }
                    }
                }
            }
        }
        g
    }

    /// Anonymous grants hold for everyone, authenticated ones for every user.
    fn bits(&self, user: Option<&str>) -> u8 {
        match user {
            None => self.anonymous,
            Some(u) => self.anonymous | self.authenticated | self.users.get(u).copied().unwrap_or(0),
        }
    }
}

/// One compiled rule, with its settings kept for `check` and `route`.
#[derive(Debug)]
pub struct Rule {
    grants: Grants,
    spec: AccessRuleSettings,
}

/// The compiled rules of one `access` block.
#[derive(Debug)]
pub struct AccessPolicy {
    /// `access` or `registries[N].access`, for messages.
    key: String,
    groups: BTreeMap<String, Vec<String>>,
    rules: Vec<Rule>,
    index: PatternIndex,
    cache: Option<RuleCache>,
    /// What anonymous clients may do somewhere.
    anonymous: u8,
}

impl AccessPolicy {
    pub fn new(settings: &AccessSettings) -> AccessPolicy {
        let rules: Vec<Rule> = (settings.rules.iter())
            .map(|spec| Rule {
                grants: Grants::new(spec, &settings.groups),
                spec: spec.clone(),
            })
            .collect();
        let index = PatternIndex::new(rules.iter().map(|r| r.spec.repositories.iter()));
        let cache = (index.floating_len() > CACHE_ABOVE_FLOATING).then(RuleCache::default);
        let anonymous = rules.iter().fold(0, |bits, r| bits | r.grants.anonymous);
        AccessPolicy {
            key: settings.key.clone(),
            groups: settings.groups.clone(),
            rules,
            index,
            cache,
            anonymous,
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rule that decides `repository`.
    pub fn rule_for(&self, repository: &str) -> Option<u32> {
        let Some(cache) = &self.cache else {
            return self.index.first_rule(repository);
        };
        if let Some(known) = cache.get(repository) {
            return known;
        }
        let rule = self.index.first_rule(repository);
        cache.insert(repository, rule);
        rule
    }

    /// Whether `user` (`None`: no credentials) may do `action` on `repository`.
    pub fn decide(&self, user: Option<&str>, repository: &str, action: Action) -> Decision {
        match self.rule_for(repository) {
            None => Decision {
                allowed: false,
                rule: None,
            },
            Some(rule) => Decision {
                allowed: self.rules[rule as usize].grants.bits(user) & action.bit() != 0,
                rule: Some(rule),
            },
        }
    }

    pub fn may_pull(&self, user: Option<&str>, repository: &str) -> bool {
        self.decide(user, repository, Action::Pull).allowed
    }

    /// Whether some rule grants `action` to clients without credentials.
    pub fn anonymous_may_anywhere(&self, action: Action) -> bool {
        self.anonymous & action.bit() != 0
    }

    /// Whether any rule names someone other than `anonymous` (pointless
    /// where nobody authenticates).
    pub fn names_users(&self) -> bool {
        self.rules
            .iter()
            .any(|r| (r.spec.pull.iter().chain(&r.spec.push).chain(&r.spec.delete)).any(|p| *p != Principal::Anonymous))
    }

    /// Every user name the block mentions, with the key it is written at,
    /// to warn about names the htpasswd file lacks.
    pub fn named_users(&self) -> Vec<(String, &str)> {
        let mut out = Vec::new();
        for (name, members) in &self.groups {
            out.extend(
                members
                    .iter()
                    .map(|m| (format!("{}.groups.{name}", self.key), m.as_str())),
            );
        }
        for (i, r) in self.rules.iter().enumerate() {
            for (action, list) in [
                ("pull", &r.spec.pull),
                ("push", &r.spec.push),
                ("delete", &r.spec.delete),
            ] {
                for (j, p) in list.iter().enumerate() {
                    if let Principal::User(u) = p {
                        out.push((format!("{}.rules[{i}].{action}[{j}]", self.key), u.as_str()));
                    }
                }
            }
        }
        out
    }

    /// Rules that never decide because every pattern they have is covered
    /// by a pattern of an earlier rule: `(rule, earlier rules covering it)`.
    pub fn shadowed(&self) -> Vec<(usize, Vec<usize>)> {
        let mut out = Vec::new();
        for j in 1..self.rules.len() {
            let mut by = Vec::new();
            let all_covered = self.index.patterns_of(j as u32).all(|p| {
                let earlier = (0..j).find(|&i| self.index.patterns_of(i as u32).any(|e| e.covers(p)));
                if let Some(i) = earlier {
                    if !by.contains(&i) {
                        by.push(i);
                    }
                }
                earlier.is_some()
            });
            if all_covered {
                out.push((j, by));
            }
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests;
