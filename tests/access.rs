//! Per-repository access rules (`access:` in gateway.yaml) against a real
//! registry:2 and skopeo: read-only users, team prefixes, delete for
//! admins only, anonymous pulls of `library/*`, cross-repository mounts,
//! and what is refused outright while rules are in force.

mod common;

use std::time::Duration;

use common::*;

/// A gateway with htpasswd auth (`scope`) and the given `access:` block in
/// front of `registry`; every user's password is `<user>-pw`.
fn gateway(registry: &Registry, scope: &str, access: &str, users: &[&str]) -> Gateway {
    let listen = free_addr();
    let yaml = format!(
        "listeners:\n  - address: \"{listen}\"\n\
         upstreams:\n  registry:\n    url: \"{}\"\n\
         registries:\n  - name: main\n    default: true\n    upstream: registry\n\
         auth:\n  realm: Corp\n  htpasswd: users\n  scope: {scope}\n{access}",
        registry.url()
    );
    let lines: String = users
        .iter()
        .map(|u| htpasswd_line("B", &["-C", "4"], u, &format!("{u}-pw")) + "\n")
        .collect();
    Gateway::start_yaml_with_files(&yaml, listen, &[("users", lines.as_bytes())])
}

fn creds(user: &str) -> String {
    format!("{user}:{user}-pw")
}

fn as_user(req: Request, user: &str) -> Request {
    req.header("Authorization", &basic_auth(user, &format!("{user}-pw")))
}

#[track_caller]
fn assert_denied(rsp: &Response, action: &str, repository: &str) {
    assert_json_error(rsp, 403, "DENIED");
    let body = rsp.json();
    let error = &body["errors"][0];
    assert_eq!(error["detail"]["action"], action, "{}", rsp.describe());
    assert_eq!(error["detail"]["repository"], repository, "{}", rsp.describe());
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("{action} on {repository}")),
        "{}",
        rsp.describe()
    );
}

#[track_caller]
fn assert_challenge(rsp: &Response) {
    assert_json_error(rsp, 401, "UNAUTHORIZED");
    assert_eq!(
        rsp.header_all("www-authenticate"),
        vec!["Basic realm=\"Corp\""],
        "{}",
        rsp.describe()
    );
}

fn denied(gateway: &Gateway, action: &str) -> f64 {
    sample(
        &scrape(gateway.metrics_addr()),
        "registry_gateway_access_denied_total",
        &[("registry", "main"), ("action", action)],
    )
}

fn image(seed: u64, work: &std::path::Path, name: &str) -> OciImage {
    OciImageBuilder::new(seed)
        .layer(4 * 1024)
        .layer(64 * 1024 + 1)
        .write(&work.join(name), "v1")
}

#[track_caller]
fn push_ok(image: &OciImage, gateway: &Gateway, reference: &str, user: &str) {
    let out = skopeo_push_with_creds(image, &format!("{}/{reference}", gateway.addr()), Some(&creds(user)));
    assert!(
        out.status.success(),
        "{user} could not push {reference}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        tail(&gateway.log(), 3000)
    );
}

/// skopeo's error output when `user` pushes `reference`, which must fail.
#[track_caller]
fn push_fails(image: &OciImage, gateway: &Gateway, reference: &str, user: &str) -> String {
    let out = skopeo_push_with_creds(image, &format!("{}/{reference}", gateway.addr()), Some(&creds(user)));
    assert!(!out.status.success(), "{user} pushed {reference}, which the rules deny");
    String::from_utf8_lossy(&out.stderr).to_lowercase()
}

fn tail(text: &str, n: usize) -> &str {
    &text[text.len().saturating_sub(n)..]
}

fn manifest_exists(registry: &Registry, repo: &str, reference: &str) -> bool {
    let rsp = Request::head(&format!("/v2/{repo}/manifests/{reference}"))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send(registry.addr());
    rsp.status == 200
}

#[test]
fn a_read_only_user_pulls_and_is_denied_on_push() {
    require_tool(SKOPEO_BIN, "skopeo");
    let registry = Registry::start();
    let access = "access:\n  rules:\n    - repositories: [\"**\"]\n      pull: [reader]\n      push: [writer]\n";
    let gateway = gateway(&registry, "all", access, &["reader", "writer"]);
    let work = tempfile::tempdir().unwrap();
    let v1 = image(0xacc1, work.path(), "v1");
    let v2 = image(0xacc2, work.path(), "v2");

    push_ok(&v1, &gateway, "apps/web:v1", "writer");
    let pulled = work.path().join("pulled");
    let out = skopeo_pull_with_creds(
        &format!("{}/apps/web:v1", gateway.addr()),
        &pulled,
        "v1",
        Some(&creds("reader")),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = OciImage::read(&pulled, "v1");
    assert_eq!(got.manifest.digest, v1.manifest.digest);
    got.verify_files();

    let err = push_fails(&v2, &gateway, "apps/web:v2", "reader");
    assert!(err.contains("denied") && err.contains("push on apps/web"), "{err}");
    assert!(!manifest_exists(&registry, "apps/web", "v2"), "the denied push landed");

    let rsp = as_user(Request::post("/v2/apps/web/blobs/uploads/"), "reader").send(gateway.addr());
    assert_denied(&rsp, "push", "apps/web");
    let rsp = as_user(Request::get("/v2/apps/web/blobs/uploads/some-id"), "reader").send(gateway.addr());
    assert_denied(&rsp, "push", "apps/web");
    let digest = &v1.manifest.digest;
    let rsp = as_user(Request::delete(&format!("/v2/apps/web/manifests/{digest}")), "writer").send(gateway.addr());
    assert_denied(&rsp, "delete", "apps/web");
    assert!(
        manifest_exists(&registry, "apps/web", digest),
        "the denied delete went through"
    );

    assert!(denied(&gateway, "push") >= 3.0, "{}", scrape(gateway.metrics_addr()));
    assert!(denied(&gateway, "delete") >= 1.0);
    let log = gateway.log();
    assert!(
        log.lines()
            .any(|l| l.contains(" user=reader ") && l.contains(" status=403 ") && l.contains(" access=deny@0")),
        "no denial in the access log:\n{}",
        tail(&log, 3000)
    );
    assert!(
        log.lines()
            .any(|l| l.contains(" user=reader ") && l.contains(" op=manifest_get ") && l.contains(" access=allow@0")),
        "no allowed pull in the access log:\n{}",
        tail(&log, 3000)
    );
}

#[test]
fn a_team_user_pushes_under_its_prefix_and_nowhere_else() {
    require_tool(SKOPEO_BIN, "skopeo");
    let registry = Registry::start();
    let access = "\
access:
  groups: { team-a: [tina], admins: [ada] }
  rules:
    - repositories: [team-a/**]
      push: [group:team-a, group:admins]
    - repositories: [\"**\"]
      pull: [authenticated]
      push: [group:admins]
";
    let gateway = gateway(&registry, "all", access, &["tina", "ada", "otto"]);
    let work = tempfile::tempdir().unwrap();
    let img = image(0x7ea, work.path(), "img");

    for reference in ["team-a/app:v1", "team-a/x/y/z:v1", "team-a:v1"] {
        push_ok(&img, &gateway, reference, "tina");
    }
    let err = push_fails(&img, &gateway, "team-b/app:v1", "tina");
    assert!(err.contains("denied") && err.contains("push on team-b/app"), "{err}");
    let err = push_fails(&img, &gateway, "team-ab/app:v1", "tina");
    assert!(err.contains("push on team-ab/app"), "{err}");
    assert!(!manifest_exists(&registry, "team-ab/app", "v1"));

    push_ok(&img, &gateway, "team-b/app:v1", "ada");
    let pull = |reference: &str, user: &str| {
        as_user(Request::get(&format!("/v2/{reference}")), user)
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .send(gateway.addr())
    };
    assert_eq!(pull("team-b/app/manifests/v1", "tina").status, 200);
    // Push includes pull.
    assert_eq!(pull("team-a/app/manifests/v1", "tina").status, 200);
    // First match: team-a/** decides, and grants otto nothing there.
    assert_denied(&pull("team-a/app/manifests/v1", "otto"), "pull", "team-a/app");
    assert_eq!(pull("team-b/app/manifests/v1", "otto").status, 200);
}

#[test]
fn only_admins_delete() {
    require_tool(SKOPEO_BIN, "skopeo");
    let registry = Registry::start();
    let access = "\
access:
  groups: { admins: [ada], devs: [dev] }
  rules:
    - repositories: [\"**\"]
      pull: [group:devs]
      push: [group:devs]
      delete: [group:admins]
";
    let gateway = gateway(&registry, "all", access, &["ada", "dev"]);
    let work = tempfile::tempdir().unwrap();
    let img = image(0xde1, work.path(), "img");
    push_ok(&img, &gateway, "apps/svc:v1", "dev");
    let m = img.manifest.digest.clone();
    let layer = img.layers[0].digest.clone();

    let rsp = as_user(Request::delete(&format!("/v2/apps/svc/manifests/{m}")), "dev").send(gateway.addr());
    assert_denied(&rsp, "delete", "apps/svc");
    let rsp = as_user(Request::delete(&format!("/v2/apps/svc/blobs/{layer}")), "dev").send(gateway.addr());
    assert_denied(&rsp, "delete", "apps/svc");
    assert!(manifest_exists(&registry, "apps/svc", &m) && registry.has_blob("apps/svc", &layer));

    let rsp = as_user(Request::delete(&format!("/v2/apps/svc/manifests/{m}")), "ada").send(gateway.addr());
    assert_eq!(rsp.status, 202, "{}", rsp.describe());
    assert!(
        !manifest_exists(&registry, "apps/svc", &m),
        "the admin's delete did not reach the registry"
    );
    // Delete includes pull.
    let rsp = as_user(Request::get("/v2/apps/svc/tags/list"), "ada").send(gateway.addr());
    assert_ne!(rsp.status, 403, "{}", rsp.describe());
}

#[test]
fn anonymous_clients_pull_library_and_are_asked_to_log_in_elsewhere() {
    require_tool(SKOPEO_BIN, "skopeo");
    let registry = Registry::start();
    let access = "\
access:
  groups: { admins: [ada] }
  rules:
    - repositories: [library/*]
      pull: [anonymous]
      push: [group:admins]
    - repositories: [\"**\"]
      pull: [authenticated]
      push: [group:admins]
";
    let gateway = gateway(&registry, "all", access, &["ada", "ann"]);
    let work = tempfile::tempdir().unwrap();
    let a = image(0xa0a, work.path(), "a");
    let b = image(0xb0b, work.path(), "b");
    push_ok(&a, &gateway, "library/busy:v1", "ada");
    push_ok(&b, &gateway, "team/app:v1", "ada");

    // skopeo without credentials: a 401 at /v2/, then `Basic Og==` on every request.
    let pulled = work.path().join("anon");
    let src = format!("{}/library/busy:v1", gateway.addr());
    let out = skopeo_pull_with_creds(&src, &pulled, "v1", None);
    assert!(
        out.status.success(),
        "anonymous pull failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(OciImage::read(&pulled, "v1").manifest.digest, a.manifest.digest);
    let src = format!("{}/team/app:v1", gateway.addr());
    let out = skopeo_pull_with_creds(&src, &work.path().join("anon2"), "v1", None);
    assert!(!out.status.success(), "team/app was pulled without credentials");

    let get = |path: &str| Request::get(path).header("Accept", "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(get("/v2/library/busy/manifests/v1").send(gateway.addr()).status, 200);
    let empty = get("/v2/library/busy/manifests/v1").header("Authorization", "Basic Og==");
    assert_eq!(empty.send(gateway.addr()).status, 200);
    assert_challenge(&get("/v2/team/app/manifests/v1").send(gateway.addr()));
    // `*` stays within one path component.
    assert_challenge(&get("/v2/library/a/b/manifests/v1").send(gateway.addr()));
    // `scope: all`: /v2/ itself asks for credentials.
    assert_challenge(&get("/v2/").send(gateway.addr()));
    // An anonymous push is asked to log in (401), not refused (403).
    assert_challenge(&Request::post("/v2/library/busy/blobs/uploads/").send(gateway.addr()));
    let rsp = as_user(Request::post("/v2/library/busy/blobs/uploads/"), "ann").send(gateway.addr());
    assert_denied(&rsp, "push", "library/busy");
    // Wrong credentials are not quietly treated as none.
    let wrong = get("/v2/library/busy/manifests/v1").header("Authorization", &basic_auth("ada", "wrong"));
    assert_challenge(&wrong.send(gateway.addr()));

    // `Basic Og==` is no credentials, not a failed login: never throttled.
    let failures = || {
        sample(
            &scrape(gateway.metrics_addr()),
            "registry_gateway_auth_total",
            &[("outcome", "failure")],
        )
    };
    let before = failures();
    for _ in 0..20 {
        let rsp = get("/v2/library/busy/manifests/v1")
            .header("Authorization", "Basic Og==")
            .send(gateway.addr());
        assert_eq!(rsp.status, 200, "{}", rsp.describe());
    }
    assert_eq!(failures(), before);
}

#[test]
fn a_cross_repository_mount_from_an_unreadable_repository_never_gives_the_blob() {
    let registry = Registry::start();
    let access = "\
access:
  groups: { admins: [ada] }
  rules:
    - repositories: [secret/**]
      push: [group:admins]
    - repositories: [team-a/**]
      push: [alice, group:admins]
    - repositories: [\"**\"]
      pull: [authenticated]
";
    let gateway = gateway(&registry, "all", access, &["alice", "ada"]);
    let secret = registry.push_blob("secret/x", &random_bytes(0x5ec, 10_000));
    let readable = registry.push_blob("team-a/base", &random_bytes(0xba5e, 10_000));
    let post = |target: &str, query: &str, user: &str| {
        as_user(Request::post(&format!("/v2/{target}/blobs/uploads/?{query}")), user).send(gateway.addr())
    };

    for (n, (key, from)) in [
        ("mount", "secret/x"),
        ("mount", "secret%2Fx"),
        ("%6Dount", "secret%2fx"),
    ]
    .into_iter()
    .enumerate()
    {
        let probe = format!("probe-{n}-{}", std::process::id());
        let rsp = post("team-a/app", &format!("{key}={secret}&from={from}&p={probe}"), "alice");
        assert_eq!(
            rsp.status,
            202,
            "a mount from secret/ must become a plain upload: {}",
            rsp.describe()
        );
        assert!(
            rsp.header("location")
                .is_some_and(|l| l.contains("/v2/team-a/app/blobs/uploads/")),
            "{}",
            rsp.describe()
        );
        let line = registry
            .access_log()
            .into_iter()
            .find(|l| l.contains(&probe))
            .unwrap_or_else(|| panic!("no registry line for {probe}"));
        assert!(
            !line.contains("mount") && !line.contains("from="),
            "mount reached the registry: {line}"
        );
        // The access line (path only, no query) says what was done.
        assert!(
            wait_until(Duration::from_secs(5), || gateway
                .log()
                .lines()
                .filter(|l| l.contains(" op=upload_start ") && l.contains(" access=strip_mount@1"))
                .count()
                > n),
            "{}",
            tail(&gateway.log(), 3000)
        );
    }
    // Without `from`, or with an unreadable first `from` (the one registry:2 reads).
    assert_eq!(post("team-a/app", &format!("mount={secret}"), "alice").status, 202);
    let rsp = post(
        "team-a/app",
        &format!("mount={secret}&from=secret/x&from=team-a/base"),
        "alice",
    );
    assert_eq!(rsp.status, 202, "{}", rsp.describe());
    assert!(!registry.has_blob("team-a/app", &secret), "the secret blob was mounted");
    let rsp = as_user(Request::head(&format!("/v2/team-a/app/blobs/{secret}")), "alice").send(gateway.addr());
    assert_eq!(rsp.status, 404, "{}", rsp.describe());

    // A form body could carry the parameters where they cannot be stripped.
    let form = as_user(Request::post("/v2/team-a/app/blobs/uploads/"), "alice")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("mount={secret}&from=secret%2Fx"))
        .send(gateway.addr());
    assert_json_error(&form, 403, "DENIED");

    // From a readable repository, in either spelling, the mount works.
    let rsp = post("team-a/app", &format!("mount={readable}&from=team-a/base"), "alice");
    assert_eq!(rsp.status, 201, "{}", rsp.describe());
    assert!(registry.has_blob("team-a/app", &readable));
    let rsp = post("team-a/app2", &format!("mount={readable}&from=team-a%2Fbase"), "alice");
    assert_eq!(rsp.status, 201, "{}", rsp.describe());
    // No push on the target: denied whatever the source.
    let rsp = post("secret/y", &format!("mount={readable}&from=team-a/base"), "alice");
    assert_denied(&rsp, "push", "secret/y");
    // Push includes pull: admins may mount from secret/.
    let rsp = post("team-a/app4", &format!("mount={secret}&from=secret/x"), "ada");
    assert_eq!(rsp.status, 201, "{}", rsp.describe());

    let stripped = sample(
        &scrape(gateway.metrics_addr()),
        "registry_gateway_access_mounts_stripped_total",
        &[("registry", "main")],
    );
    assert!(stripped >= 5.0, "{stripped}");
}

#[test]
fn escapes_and_other_requests_are_refused_where_rules_apply() {
    let registry = Registry::start();
    let access = "access:\n  rules:\n    - repositories: [\"**\"]\n      pull: [authenticated]\n";
    let gateway = gateway(&registry, "all", access, &["ann"]);
    // registry:2 decodes `%65` after the gateway decided on the encoded name.
    let probe = format!("esc{}", std::process::id());
    let rsp = as_user(Request::get(&format!("/v2/s%65cret/{probe}/manifests/v1")), "ann").send(gateway.addr());
    assert_json_error(&rsp, 404, "NOT_FOUND");
    assert!(
        !registry.access_log().iter().any(|l| l.contains(&probe)),
        "an escaped path reached the registry"
    );
    let rsp = as_user(Request::new("OPTIONS", "/v2/a/manifests/v1"), "ann").send(gateway.addr());
    assert_json_error(&rsp, 403, "DENIED");
    // Authentication alone is enough for /v2/.
    assert_eq!(as_user(Request::get("/v2/"), "ann").send(gateway.addr()).status, 200);
}

#[test]
fn check_lists_the_rules_and_route_explains_a_decision() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("users"),
        htpasswd_line("B", &["-C", "4"], "tina", "tina-pw") + "\n",
    )
    .unwrap();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        "\
listeners: [ { address: \"127.0.0.1:5000\" } ]
upstreams: { registry: { url: \"http://127.0.0.1:15000\" } }
registries: [ { name: main, default: true, upstream: registry } ]
auth: { htpasswd: users }
access:
  groups:
    team-a: [tina]
  rules:
    - repositories: [team-a/**]
      push: [group:team-a]
    - repositories: [\"**\"]
      pull: [authenticated]
    - repositories: [team-a/tools]
      pull: [anonymous]
",
    )
    .unwrap();
    let out = run_check(&config);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let all = format!("{stdout}{stderr}");
    for needle in [
        "rules[0] team-a/**: push group:team-a",
        "rules[1] **: pull authenticated",
        "group:team-a = tina",
        "access.rules[2] (line 13): never decides",
    ] {
        assert!(all.contains(needle), "{needle:?} missing from:\n{all}");
    }
    let route = |user: &str, method: &str, path: &str| {
        let out = std::process::Command::new(GATEWAY_BIN)
            .args([
                "route",
                "localhost",
                path,
                "--method",
                method,
                "--user",
                user,
                "--config",
            ])
            .arg(&config)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = route("tina", "PUT", "/v2/team-b/app/manifests/v1");
    assert!(out.contains("access.rules[1] decides `team-b/app`"), "{out}");
    assert!(out.contains("answer: 403 DENIED"), "{out}");
    let out = route("tina", "PUT", "/v2/team-a/app/manifests/v1");
    assert!(out.contains("answer: forwarded"), "{out}");
}

/// One repository with a config blob and an OCI manifest (tag `v1`),
/// straight on the registry.
fn put_tiny_image(registry: &Registry, repo: &str, i: usize) {
    let config = format!("{{\"i\":{i}}}");
    let digest = registry.push_blob(repo, config.as_bytes());
    let manifest = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\
         \"config\":{{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"{digest}\",\
         \"size\":{}}},\"layers\":[]}}",
        config.len()
    );
    let rsp = Request::put(&format!("/v2/{repo}/manifests/v1"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest)
        .send(registry.addr());
    assert_eq!(rsp.status, 201, "{}", rsp.describe());
}

/// Follows `Link` from `/v2/_catalog?n=N` as a client does; the pages.
fn walk_catalog(gateway: &Gateway, user: &str, n: usize) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut target = format!("/v2/_catalog?n={n}");
    loop {
        let rsp = as_user(Request::get(&target), user).send(gateway.addr());
        assert_eq!(rsp.status, 200, "{}", rsp.describe());
        let names: Vec<String> = rsp.json()["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        pages.push(names);
        match rsp.header("link") {
            Some(link) => {
                assert!(
                    link.starts_with("</v2/_catalog?") && link.ends_with(">; rel=\"next\""),
                    "{link}"
                );
                target = link[1..link.find('>').unwrap()].to_owned();
            }
            None => return pages,
        }
        assert!(pages.len() < 50, "the catalog does not end");
    }
}

#[test]
fn the_catalog_lists_exactly_the_readable_repositories_in_full_pages() {
    let registry = Registry::start();
    let access = "\
access:
  rules:
    - repositories: [\"*-open\"]
      pull: [reader, admin]
    - repositories: [\"**\"]
      pull: [admin]
";
    let gateway = gateway(&registry, "all", access, &["reader", "admin", "nobody"]);
    let all: Vec<String> = (0..300)
        .map(|i| format!("r{i:03}-{}", if i % 3 == 0 { "open" } else { "shut" }))
        .collect();
    for (i, repo) in all.iter().enumerate() {
        put_tiny_image(&registry, repo, i);
    }
    let readable: Vec<String> = all.iter().filter(|r| r.ends_with("-open")).cloned().collect();

    let pages = walk_catalog(&gateway, "reader", 30);
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), vec![30, 30, 30, 10]);
    assert_eq!(pages.concat(), readable);
    let pages = walk_catalog(&gateway, "reader", 50);
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), vec![50, 50]);
    let pages = walk_catalog(&gateway, "admin", 100);
    assert_eq!(pages.concat(), all);
    // Nothing readable: one empty page, no Link.
    assert_eq!(walk_catalog(&gateway, "nobody", 20), vec![Vec::<String>::new()]);
    // Anonymous clients may pull nothing here: asked to log in.
    assert_challenge(&Request::get("/v2/_catalog").send(gateway.addr()));
    let log = gateway.log();
    assert!(
        log.lines()
            .any(|l| l.contains(" op=catalog ") && l.contains(" access=filter")),
        "{}",
        tail(&log, 2000)
    );
}

#[test]
fn rules_follow_a_reload_and_group_members_follow_the_htpasswd_file() {
    let registry = Registry::start();
    let access = "\
access:
  groups: { ci: [builder, bot] }
  rules:
    - repositories: [ci/**]
      push: [group:ci]
    - repositories: [\"**\"]
      pull: [authenticated]
";
    let gateway = gateway(&registry, "all", access, &["builder", "reader"]);
    let start = |user: &str| as_user(Request::post("/v2/ci/app/blobs/uploads/"), user).send(gateway.addr());
    assert_eq!(start("builder").status, 202);
    assert_denied(&start("reader"), "push", "ci/app");

    // A group member the htpasswd file does not have yet gets in once it does.
    assert_challenge(&start("bot"));
    let users = gateway.temp_dir().join("users");
    let mut lines = std::fs::read_to_string(&users).unwrap();
    lines.push_str(&(htpasswd_line("B", &["-C", "4"], "bot", "bot-pw") + "\n"));
    let fresh = users.with_extension("new");
    std::fs::write(&fresh, lines).unwrap();
    std::fs::rename(&fresh, &users).unwrap();
    // Waiting on the reload rather than retrying the login, which the
    // throttle would count as failures.
    let reloaded = || {
        sample(
            &scrape(gateway.metrics_addr()),
            "registry_gateway_reloads_total",
            &[("kind", "htpasswd"), ("result", "success")],
        )
    };
    assert!(
        wait_until(Duration::from_secs(10), || reloaded() >= 1.0),
        "the htpasswd file was not reloaded"
    );
    let rsp = start("bot");
    assert_eq!(
        rsp.status,
        202,
        "bot was not let in after joining the htpasswd file: {}",
        rsp.describe()
    );

    // New rules with a reload: builder leaves the group, reader joins it.
    let config = std::fs::read_to_string(gateway.config_path()).unwrap();
    let changed = config.replace("ci: [builder, bot]", "ci: [reader, bot]");
    assert_ne!(config, changed);
    std::fs::write(gateway.config_path(), changed).unwrap();
    gateway.signal("HUP");
    assert!(
        gateway.wait_for_log("configuration reloaded (Signal), generation 2", Duration::from_secs(10)),
        "{}",
        tail(&gateway.log(), 3000)
    );
    assert_denied(&start("builder"), "push", "ci/app");
    assert_eq!(start("reader").status, 202);
}
