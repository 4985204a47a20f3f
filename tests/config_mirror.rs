//! `registry-gateway check` on mirror settings: upstream credentials, `ns`
//! maps, `push` and cache blocks. Errors name the file, key, value and
//! line; no secret ever appears in `check`'s output.

mod common;

use common::*;

const SECRET: &str = "s3cr3t-never-printed";

/// A valid mirror config; `{dir}` is the config's own folder.
fn mirror_yaml(upstream_extra: &str, registry_extra: &str) -> String {
    format!(
        "\
listeners:
  - address: \"127.0.0.1:5000\"
upstreams:
  hub:
    url: \"http://127.0.0.1:15000\"
{upstream_extra}  basic:
    url: \"http://127.0.0.1:15001\"
registries:
  - name: mirror
    default: true
    upstream: hub
{registry_extra}"
    )
}

#[track_caller]
fn assert_no_secret(stdout: &str, stderr: &str) {
    assert!(
        !stdout.contains(SECRET) && !stderr.contains(SECRET),
        "the secret was printed:\n{stdout}\n{stderr}"
    );
}

#[test]
fn a_valid_mirror_is_described_without_its_secret() {
    let creds = "    credentials: {username: mirror, password_file: hub.secret}\n";
    let registry = "    ns: {docker.io: hub, ghcr.io: basic}\n    ns_in_path: true\n    push: deny\n    cache: {dir: cache, max_size: 2GiB, tag_ttl: 1m}\n";
    let file = write_config(&mirror_yaml(creds, registry));
    let dir = file.path.parent().unwrap();
    std::fs::write(dir.join("hub.secret"), format!("{SECRET}\n")).unwrap();
    let out = run_check(&file.path);
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "check refused a valid mirror:\n{stdout}\n{stderr}"
    );
    assert_no_secret(&stdout, &stderr);
    for needle in [
        "gateway login: logs in as mirror (password from file",
        "hub.secret, 20 bytes)",
        "anonymous tokens",
        "ns docker.io, index.docker.io, registry-1.docker.io -> hub",
        "ns ghcr.io -> basic",
        "push: deny",
        "max 2147483648 bytes",
    ] {
        assert!(stdout.contains(needle), "summary lacks {needle:?}:\n{stdout}");
    }
    assert!(
        dir.join("cache/blobs/sha256").is_dir(),
        "the cache directory was not prepared"
    );
}

#[test]
fn credential_errors_name_the_key_and_never_the_secret() {
    let cases: [(&str, &[&str]); 5] = [
        (
            "    credentials: {username: mirror}\n",
            &["upstreams.hub.credentials", "needs `password_file` or `password_env`"],
        ),
        (
            "    credentials: {username: mirror, password_file: a, password_env: B}\n",
            &["upstreams.hub.credentials", "not both"],
        ),
        (
            "    credentials: {username: \"a:b\", password_env: HOME}\n",
            &["upstreams.hub.credentials.username", "`a:b`"],
        ),
        (
            "    credentials: {username: mirror, password_env: REGISTRY_GATEWAY_TEST_UNSET_VAR}\n",
            &[
                "upstreams.hub.credentials",
                "environment variable REGISTRY_GATEWAY_TEST_UNSET_VAR is not set",
            ],
        ),
        (
            "    credentials: {username: mirror, password_file: missing.secret}\n",
            &["upstreams.hub.credentials", "cannot read", "missing.secret"],
        ),
    ];
    for (extra, needles) in cases {
        assert_check_fails(&mirror_yaml(extra, ""), needles);
    }
    let stderr = assert_check_fails(
        &mirror_yaml(
            &format!(
                "    forward_authorization: true\n    credentials: {{username: mirror, password_env: HOME}}\n    tls: {{ca: \"{SECRET}\"}}\n"
            ),
            "",
        ),
        &[
            "upstreams.hub.forward_authorization",
            "cannot be used with `credentials`",
        ],
    );
    assert!(stderr.contains("line"), "no line number:\n{stderr}");
}

#[test]
fn ns_push_and_cache_errors_name_key_value_and_line() {
    let cases: [(&str, &[&str]); 6] = [
        (
            "    ns: {docker.io: nowhere}\n",
            &["registries[0].ns.docker.io", "unknown upstream `nowhere`"],
        ),
        (
            "    ns: {\"http://x/y\": hub}\n",
            &["registries[0].ns.http://x/y", "not a registry host name"],
        ),
        (
            "    ns: {docker.io: hub, index.docker.io: basic}\n",
            &["registries[0].ns.index.docker.io", "already maps to upstream `hub`"],
        ),
        (
            "    ns_in_path: true\n",
            &["registries[0].ns_in_path", "needs an `ns` map"],
        ),
        ("    push: never\n", &["registries[0].push", "never"]),
        (
            "    cache: {dir: c, max_size: 10KiB}\n",
            &["registries[0].cache.max_size", "at least 1MiB"],
        ),
    ];
    for (extra, needles) in cases {
        let stderr = assert_check_fails(&mirror_yaml("", extra), needles);
        assert!(stderr.contains("line "), "no line number for {extra:?}:\n{stderr}");
    }
    let shared = "    cache: {dir: c, max_size: 1GiB}\n  - name: second\n    hosts: [b.example]\n    upstream: basic\n    cache: {dir: c, max_size: 2GiB}\n";
    assert_check_fails(
        &mirror_yaml("", shared),
        &["registries[1].cache.max_size", "shared with registries[0]"],
    );
}
