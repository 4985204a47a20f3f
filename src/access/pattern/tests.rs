//! Matching, containment and the index, checked against a linear scan.

use super::*;

fn pat(s: &str) -> RepoPattern {
    RepoPattern::new(&s.parse().unwrap())
}

#[test]
fn stars_stay_in_their_component_and_double_stars_cross() {
    let cases = [
        ("library/*", "library/alpine", true),
        ("library/*", "library/a/b", false),
        ("library/*", "library", false),
        ("team-a/**", "team-a/app", true),
        ("team-a/**", "team-a/x/y/z", true),
        ("team-a/**", "team-a", true),
        ("team-a/**", "team-ab/app", false),
        ("**", "anything/at/all", true),
        ("**/cache", "cache", true),
        ("**/cache", "a/b/cache", true),
        ("**/cache", "a/cache/b", false),
        ("a/**/b", "a/b", true),
        ("a/**/b", "a/x/y/b", true),
        ("a/**/b", "a/x/y/c", false),
        ("a/**/b/**/c", "a/1/b/2/b/3/c", true),
        ("*", "alpine", true),
        ("*", "library/alpine", false),
        ("lib*-dev", "libfoo-dev", true),
        ("lib*-dev", "lib-dev", true),
        ("lib*-dev", "libdev", false),
        ("*-open", "r003-open", true),
        ("*-open", "r003-shut", false),
        ("a*b*c", "aXbYbZc", true),
        ("a*b*c", "acb", false),
        ("x/**/*-test", "x/a/b/foo-test", true),
    ];
    for (p, repo, want) in cases {
        assert_eq!(pat(p).matches(repo), want, "{p} ~ {repo}");
    }
}

#[test]
fn deep_names_spill_off_the_stack() {
    let deep = (0..20).map(|i| format!("s{i}")).collect::<Vec<_>>().join("/");
    assert!(pat("s0/**/s19").matches(&deep));
    assert!(!pat("s0/**/s18").matches(&deep));
    assert_eq!(Parts::of(&deep).as_slice().len(), 20);
}

#[test]
fn covers_is_sound() {
    let yes = [
        ("**", "team-a/**"),
        ("**", "*"),
        ("team-a/**", "team-a/x/**"),
        ("team-a/**", "team-a/*"),
        ("team-a/**", "team-a"),
        ("library/*", "library/alpine"),
        ("library/*", "library/al*"),
        ("*", "lib*-dev"),
        ("lib*", "lib*-dev"),
        ("**/cache", "a/**/cache"),
        ("a/**", "a/**/**"),
    ];
    for (a, b) in yes {
        assert!(pat(a).covers(&pat(b)), "{a} should cover {b}");
    }
    let no = [
        ("team-a/*", "team-a/**"),
        ("library/*", "library"),
        ("team-a/**", "team-ab/**"),
        ("lib*-dev", "lib*"),
        ("*", "**"),
        ("a/*", "*/b"),
        ("*/b", "a/*"),
    ];
    for (a, b) in no {
        assert!(!pat(a).covers(&pat(b)), "{a} must not cover {b}");
    }
}

/// The index gives the same answer as trying every rule in order.
#[test]
fn index_agrees_with_a_linear_scan() {
    let rules: Vec<Vec<RepoGlob>> = [
        &["library/alpine"][..],
        &["team-3/**"],
        &["*-open", "ci/**"],
        &["library/*"],
        &["**/cache"],
        &["team-*/**"],
        &["team-3/app"],
        &["**"],
    ]
    .iter()
    .map(|r| r.iter().map(|p| p.parse().unwrap()).collect())
    .collect();
    let index = PatternIndex::new(rules.iter().map(|r| r.iter()));
    let linear = |repo: &str| {
        rules
            .iter()
            .position(|r| r.iter().any(|g| RepoPattern::new(g).matches(repo)))
            .map(|i| i as u32)
    };
    for repo in [
        "library/alpine",
        "library/busybox",
        "library/a/b",
        "team-3/app",
        "team-3",
        "team-4/app",
        "r001-open",
        "ci/x/y",
        "a/b/cache",
        "cache",
        "zzz",
        "team-3/x/cache",
    ] {
        assert_eq!(index.first_rule(repo), linear(repo), "{repo}");
    }
    assert_eq!(index.floating_len(), 4, "*-open, **/cache, team-*/**, **");
}

#[test]
fn no_rule_no_answer() {
    let rules: Vec<Vec<RepoGlob>> = vec![vec!["team-a/**".parse().unwrap()]];
    let index = PatternIndex::new(rules.iter().map(|r| r.iter()));
    assert_eq!(index.first_rule("team-b/app"), None);
    assert_eq!(index.first_rule("team-a/app"), Some(0));
}
