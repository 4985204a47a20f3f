use super::*;

fn rule(hosts: &[&str], regex: Option<&str>, ports: &[u16], default: bool) -> HostRule {
    HostRule {
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        host_regex: regex.map(str::to_owned),
        ports: ports.to_vec(),
        default,
    }
}

#[test]
fn patterns_too_large_together_are_an_error_not_a_panic() {
    let rule = |p: &str| HostRule {
        hosts: vec![],
        host_regex: Some(p.to_owned()),
        ports: vec![],
        default: false,
    };
    let err = HostRouter::new(vec![rule(r"\w{200}"), rule(r"\w{200}x")]).unwrap_err();
    assert_eq!(err.0, 1);
    assert!(err.1.to_string().contains("together"), "{}", err.1);
}

#[test]
fn hosts_normalise() {
    assert_eq!(normalize_host("Registry.Corp:5000"), "registry.corp");
    assert_eq!(normalize_host("registry.corp."), "registry.corp");
    assert_eq!(normalize_host("[::1]:5000"), "::1");
    assert_eq!(normalize_host("[::1]"), "::1");
    assert_eq!(normalize_host("::1"), "::1");
    assert_eq!(normalize_host("127.0.0.1:80"), "127.0.0.1");
}

#[test]
fn first_rule_in_file_wins() {
    let r = HostRouter::new(vec![
        rule(&[], Some(r".*\.corp"), &[], false),
        rule(&["registry.corp", "legacy.corp"], None, &[], false),
        rule(&["mirror.corp"], None, &[5000], false),
        rule(&[], None, &[], true),
    ])
    .unwrap();
    assert_eq!(r.select(Some("registry.corp"), Some(443)), Some((0, Why::Regex)));
    assert_eq!(r.select(Some("other.example"), Some(443)), Some((3, Why::Default)));
    assert_eq!(r.select(None, Some(443)), Some((3, Why::Default)));
}

#[test]
fn exact_names_ports_case_and_ipv6() {
    let r = HostRouter::new(vec![
        rule(&["mirror.corp"], None, &[5000], false),
        rule(&["registry.corp", "::1"], None, &[], false),
        rule(&[], Some(r"mirror\.corp"), &[], false),
        rule(&[], Some(r"(a|b)\.corp"), &[], false),
    ])
    .unwrap();
    assert_eq!(r.select(Some("MIRROR.corp.:5000"), Some(5000)), Some((0, Why::Host)));
    assert_eq!(
        r.select(Some("mirror.corp"), Some(443)),
        Some((2, Why::Regex)),
        "port limits rule 0"
    );
    assert_eq!(r.select(Some("[::1]:5000"), Some(5000)), Some((1, Why::Host)));
    assert_eq!(r.select(Some("b.corp"), None), Some((3, Why::Regex)));
    assert_eq!(r.select(Some("xb.corp"), None), None, "regexes are anchored");
    assert_eq!(r.select(Some("nowhere"), None), None, "no default: no registry");
}

#[test]
fn shadowed_rules_are_found() {
    let r = HostRouter::new(vec![
        rule(&["a.corp"], None, &[], false),
        rule(&[], Some(r".*\.corp"), &[], false),
        rule(&["a.corp"], None, &[], false),
        rule(&["b.corp"], None, &[], false),
        rule(&[], Some(r".*\.corp"), &[], false),
        rule(&["c.example"], None, &[], false),
    ])
    .unwrap();
    assert_eq!(r.shadowed(), vec![(2, 0), (3, 1), (4, 1)]);
}

#[test]
fn bad_regex_names_the_rule() {
    let e = HostRouter::new(vec![rule(&[], Some("("), &[], false)]).unwrap_err();
    assert_eq!(e.0, 0);
    assert!(e.1.to_string().contains("`(`"));
}
