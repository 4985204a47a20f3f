//! Unit tests of the access module; `rule`, `policy` and `example` are
//! shared with `describe`'s tests.

use super::*;

/// A rule as written: patterns and principals of pull, push, delete.
pub(crate) fn rule(pats: &[&str], pull: &[&str], push: &[&str], delete: &[&str]) -> AccessRuleSettings {
    let p = |list: &[&str]| list.iter().map(|s| s.parse().unwrap()).collect::<Vec<Principal>>();
    AccessRuleSettings {
        repositories: pats.iter().map(|s| s.parse().unwrap()).collect(),
        pull: p(pull),
        push: p(push),
        delete: p(delete),
    }
}

pub(crate) fn policy(groups: &[(&str, &[&str])], rules: Vec<AccessRuleSettings>) -> AccessPolicy {
    AccessPolicy::new(&AccessSettings {
        key: "access".into(),
        groups: (groups.iter())
            .map(|(g, m)| (g.to_string(), m.iter().map(|s| s.to_string()).collect()))
            .collect(),
        rules,
    })
}

/// "CI may push to ci/**, developers pull everything, only admins
/// delete, anyone may pull library/*" (the README example).
pub(crate) fn example() -> AccessPolicy {
    policy(
        &[
            ("admins", &["alice"]),
            ("developers", &["bob", "carol"]),
            ("ci", &["ci-bot"]),
        ],
        vec![
            rule(&["library/*"], &["anonymous"], &[], &["group:admins"]),
            rule(&["ci/**"], &["group:developers"], &["group:ci"], &["group:admins"]),
            rule(&["**"], &["group:developers"], &[], &["group:admins"]),
        ],
    )
}

fn may(p: &AccessPolicy, user: Option<&str>, repo: &str, action: Action) -> bool {
    p.decide(user, repo, action).allowed
}

#[test]
fn the_readme_example_decides_as_it_reads() {
    use Action::*;
    let p = example();
    assert!(may(&p, None, "library/alpine", Pull), "anyone pulls library/*");
    assert!(
        may(&p, Some("bob"), "library/alpine", Pull),
        "anonymous grants hold for users too"
    );
    assert!(!may(&p, None, "library/alpine", Push));
    assert!(!may(&p, None, "library/a/b", Pull), "`*` stays in one component");
    assert!(may(&p, Some("ci-bot"), "ci/app/x", Push));
    assert!(may(&p, Some("ci-bot"), "ci/app/x", Pull), "push includes pull");
    assert!(!may(&p, Some("ci-bot"), "team/app", Push), "CI pushes to ci/** only");
    assert!(!may(&p, Some("ci-bot"), "team/app", Pull));
    assert!(may(&p, Some("bob"), "team/app", Pull));
    assert!(!may(&p, Some("bob"), "team/app", Push));
    assert!(!may(&p, Some("bob"), "ci/app", Delete));
    assert!(may(&p, Some("alice"), "ci/app", Delete));
    assert!(may(&p, Some("alice"), "team/app", Pull), "delete includes pull");
    assert!(
        !may(&p, Some("mallory"), "team/app", Pull),
        "users in no group get nothing"
    );
    assert_eq!(p.decide(Some("bob"), "ci/x", Push).rule, Some(1));
    assert!(p.anonymous_may_anywhere(Pull) && !p.anonymous_may_anywhere(Push));
}

#[test]
fn first_match_decides_and_no_match_denies() {
    let p = policy(
        &[],
        vec![
            rule(&["secret/**"], &[], &[], &[]),
            rule(&["team-a/**"], &["authenticated"], &["dave"], &[]),
        ],
    );
    let denied = |rule| Decision { allowed: false, rule };
    assert_eq!(
        p.decide(Some("dave"), "secret/x", Action::Pull),
        denied(Some(0)),
        "a rule without grants denies"
    );
    assert_eq!(p.decide(Some("dave"), "other/x", Action::Pull), denied(None));
    assert!(p.decide(Some("dave"), "team-a/x", Action::Push).allowed);
    assert!(!p.decide(Some("erin"), "team-a/x", Action::Push).allowed);
    assert!(!p.decide(None, "team-a/x", Action::Pull).allowed);
}

#[test]
fn every_operation_has_a_requirement() {
    use Requirement::*;
    for op in Operation::ALL {
        let expected = match op.as_str() {
            "ping" => Nothing,
            "base" => Login,
            "catalog" => Catalog,
            "tags_list" | "manifest_get" | "manifest_head" | "blob_get" | "blob_head" | "referrers" => {
                Act(Action::Pull)
            }
            "manifest_put" | "upload_start" | "upload_chunk" | "upload_complete" | "upload_status"
            | "upload_cancel" => Act(Action::Push),
            "manifest_delete" | "blob_delete" => Act(Action::Delete),
            "v1" | "other" => Refuse,
            name => panic!("operation {name} has no expected requirement"),
        };
        assert_eq!(requirement(op), expected, "{}", op.as_str());
    }
}

#[test]
fn a_thousand_rules_answer_through_the_index() {
    let mut rules: Vec<AccessRuleSettings> = (0..1000)
        .map(|i| {
            rule(
                &[format!("team-{i}/**").as_str()],
                &["authenticated"],
                &[format!("u{i}").as_str()],
                &[],
            )
        })
        .collect();
    rules.push(rule(&["**"], &["anonymous"], &[], &[]));
    let p = policy(&[], rules);
    assert_eq!(p.decide(Some("u999"), "team-999/app", Action::Push).rule, Some(999));
    assert!(p.decide(Some("u999"), "team-999/app", Action::Push).allowed);
    assert!(!p.decide(Some("u998"), "team-999/app", Action::Push).allowed);
    assert_eq!(p.decide(None, "elsewhere", Action::Pull).rule, Some(1000));
    assert!(p.cache.is_none(), "one pattern starts with a wildcard: no cache needed");
}

#[test]
fn many_floating_patterns_are_cached_with_the_same_answers() {
    let rules = (0..20)
        .map(|i| rule(&[format!("*-{i}").as_str()], &["authenticated"], &[], &[]))
        .collect();
    let p = policy(&[], rules);
    assert!(p.cache.is_some());
    for _ in 0..2 {
        assert_eq!(p.decide(Some("x"), "app-17", Action::Pull).rule, Some(17));
        assert_eq!(p.decide(Some("x"), "app-99", Action::Pull).rule, None);
    }
    assert_eq!(p.cache.as_ref().unwrap().len(), 2);
}

#[test]
fn shadowed_rules_are_found() {
    let p = policy(
        &[],
        vec![
            rule(&["team-a/**"], &["authenticated"], &[], &[]),
            rule(&["team-a/x", "team-a/y/*"], &["anonymous"], &[], &[]),
            rule(&["library/*", "ci/**"], &[], &[], &[]),
            rule(&["**"], &[], &[], &[]),
            rule(&["library/alpine"], &[], &[], &[]),
            rule(&["zzz"], &[], &[], &[]),
        ],
    );
    assert_eq!(p.shadowed(), vec![(1, vec![0]), (4, vec![2]), (5, vec![3])]);
}

#[test]
fn named_users_carry_their_keys() {
    let p = example();
    assert!(p.named_users().contains(&("access.groups.ci".to_owned(), "ci-bot")));
    assert!(p.names_users());
    let open = policy(&[], vec![rule(&["**"], &["anonymous"], &[], &[])]);
    assert!(!open.names_users());
}
