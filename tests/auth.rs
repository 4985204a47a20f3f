//! htpasswd basic auth, end to end: every hash format as the usual tools
//! write it, the docker login flow with a real client, which requests need
//! credentials and what reaches the upstream, reloads, throttling,
//! malformed headers, the `passwd` subcommand and the access log.
//!
//! Hash lines come from `/usr/bin/htpasswd` (apache2-utils) and
//! `/usr/bin/openssl`, run by the tests themselves. bcrypt lines use cost 4
//! to keep the suite fast, except where the cost is the point.

mod common;

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

// ---- configuration

/// A gateway config with auth. The htpasswd file is `users` beside the
/// config (a relative path) unless a block says otherwise.
#[derive(Clone)]
struct AuthConfig {
    listen: SocketAddr,
    upstream_url: String,
    /// The gateway-wide `auth:` value (a YAML flow mapping or `off`).
    gateway_auth: Option<String>,
    registry_auth: Option<String>,
    v2_auth: Option<String>,
    ping_auth: Option<String>,
    forward_authorization: bool,
    /// Extra lines under `server:` (without indentation).
    server: Vec<String>,
}

impl AuthConfig {
    fn new(upstream_url: &str) -> AuthConfig {
        AuthConfig {
            listen: free_addr(),
            upstream_url: upstream_url.to_string(),
            gateway_auth: Some("{ htpasswd: users }".to_string()),
            registry_auth: None,
            v2_auth: None,
            ping_auth: None,
            forward_authorization: false,
            server: Vec::new(),
        }
    }

    fn for_registry(registry: &Registry) -> AuthConfig {
        AuthConfig::new(&registry.url())
    }

    fn gateway_auth(mut self, value: &str) -> AuthConfig {
        self.gateway_auth = Some(value.to_string());
        self
    }

    fn registry_auth(mut self, value: &str) -> AuthConfig {
        self.registry_auth = Some(value.to_string());
        self
    }

    fn v2_auth(mut self, value: &str) -> AuthConfig {
        self.v2_auth = Some(value.to_string());
        self
    }

    fn ping_auth(mut self, value: &str) -> AuthConfig {
        self.ping_auth = Some(value.to_string());
        self
    }

    fn forward_authorization(mut self) -> AuthConfig {
        self.forward_authorization = true;
        self
    }

    fn server(mut self, line: &str) -> AuthConfig {
        self.server.push(line.to_string());
        self
    }

    /// `server.auth_throttle: { max_failures: 0 }`: for tests that send many
    /// wrong passwords on purpose.
    fn no_throttle(self) -> AuthConfig {
        self.server("auth_throttle: { max_failures: 0 }")
    }

    fn to_yaml(&self) -> String {
        let mut y = String::from("server:\n  threads: 2\n  grace_period: 5s\n  trusted_proxies: []\n");
        for line in &self.server {
            y.push_str(&format!("  {line}\n"));
        }
        y.push_str(&format!(
            "listeners:\n  - name: plain\n    address: \"{}\"\n",
            self.listen
        ));
        y.push_str(&format!(
            "upstreams:\n  registry:\n    url: \"{}\"\n",
            self.upstream_url
        ));
        if self.forward_authorization {
            y.push_str("    forward_authorization: true\n");
        }
        if let Some(a) = &self.gateway_auth {
            y.push_str(&format!("auth: {a}\n"));
        }
        y.push_str("registries:\n  - name: main\n    default: true\n    upstream: registry\n");
        if let Some(a) = &self.registry_auth {
            y.push_str(&format!("    auth: {a}\n"));
        }
        if self.v2_auth.is_some() || self.ping_auth.is_some() {
            y.push_str("    routes:\n");
            if let Some(a) = &self.v2_auth {
                y.push_str(&format!("      v2: {{ auth: {a} }}\n"));
            }
            if let Some(a) = &self.ping_auth {
                y.push_str(&format!("      ping: {{ auth: {a} }}\n"));
            }
        }
        y
    }

    /// Starts the gateway with `users` as the content of the htpasswd file
    /// named `users` beside the config.
    fn start(&self, users: &str) -> Gateway {
        self.start_with_files(&[("users", users)])
    }

    fn start_with_files(&self, files: &[(&str, &str)]) -> Gateway {
        let files: Vec<(&str, &[u8])> = files.iter().map(|(n, c)| (*n, c.as_bytes())).collect();
        Gateway::start_yaml_with_files(&self.to_yaml(), self.listen, &files)
    }
}

/// The htpasswd file the gateway reads (`users` beside its config).
fn users_file(gateway: &Gateway) -> PathBuf {
    gateway.temp_dir().join("users")
}

/// `user:` + a bcrypt hash of cost 4, made by `htpasswd -B`.
fn bcrypt4(user: &str, password: &str) -> String {
    htpasswd_line("B", &["-C", "4"], user, password)
}

// ---- requests and assertions

/// `GET /v2/` with the given Authorization value, if any.
fn get_v2(gateway: &Gateway, authorization: Option<&str>) -> Response {
    let mut req = Request::get("/v2/");
    if let Some(a) = authorization {
        req = req.header("Authorization", a);
    }
    req.send(gateway.addr())
}

fn login(gateway: &Gateway, user: &str, password: &str) -> Response {
    get_v2(gateway, Some(&basic_auth(user, password)))
}

#[track_caller]
fn assert_login_ok(gateway: &Gateway, user: &str, password: &str) {
    let rsp = login(gateway, user, password);
    assert_eq!(
        rsp.status,
        200,
        "GET /v2/ as {user:?} with the right password {password:?} must be let through:\n{}\ngateway log:\n{}",
        rsp.describe(),
        tail(&gateway.log(), 4000)
    );
}

#[track_caller]
fn assert_login_refused(gateway: &Gateway, user: &str, password: &str) {
    let rsp = login(gateway, user, password);
    assert_eq!(
        rsp.status,
        401,
        "GET /v2/ as {user:?} with password {password:?} must be refused:\n{}\ngateway log:\n{}",
        rsp.describe(),
        tail(&gateway.log(), 4000)
    );
}

/// Asserts the gateway's 401: the realm's Basic challenge, the registry JSON
/// error, `Connection: close`, and the API version header on `/v2` paths
/// only.
#[track_caller]
fn assert_challenge(rsp: &Response, realm: &str, v2: bool) {
    assert_json_error(rsp, 401, "UNAUTHORIZED");
    assert_eq!(
        rsp.header_all("www-authenticate"),
        vec![format!("Basic realm=\"{realm}\"").as_str()],
        "a 401 must carry exactly one Basic challenge for the realm:\n{}",
        rsp.describe()
    );
    if v2 {
        assert_api_version_once(rsp);
    } else {
        assert!(
            rsp.header("docker-distribution-api-version").is_none(),
            "the API version header belongs to /v2 paths only:\n{}",
            rsp.describe()
        );
    }
    // Whether the connection stays open is the client's choice and the
    // body's (tests/hardening.rs): a 401 no longer closes it by itself.
}

/// Polls `GET /v2/` as `user` every 100 ms until it answers `status`;
/// returns how long that took, or `None` when it did not within `timeout`.
fn wait_for_login_status(
    gateway: &Gateway,
    user: &str,
    password: &str,
    status: u16,
    timeout: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    loop {
        if login(gateway, user, password).status == status {
            return Some(started.elapsed());
        }
        if started.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Replaces a file the way configuration management does: write a sibling,
/// rename it over (a new inode).
fn replace_file(path: &Path, content: &str) {
    let tmp = path.with_extension("new");
    fs::write(&tmp, content).unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// The gateway's log lines that contain `needle`.
fn log_lines_with(gateway: &Gateway, needle: &str) -> Vec<String> {
    gateway
        .log()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// How long the reload tests give the 2 s poll to notice a change.
const RELOAD_WITHIN: Duration = Duration::from_millis(3500);

// ---- 1. hash formats

#[test]
fn every_supported_hash_format_accepts_its_password_and_rejects_a_wrong_one() {
    let upstream = RecordingUpstream::start();
    // (user, password, htpasswd line)
    let mut users: Vec<(&str, &str, String)> = Vec::new();
    let mut add = |user: &'static str, password: &'static str, line: String| {
        assert!(line.starts_with(&format!("{user}:")), "{line}");
        users.push((user, password, line));
    };
    add("apr1", "apr1-pw", htpasswd_line("m", &[], "apr1", "apr1-pw"));
    add(
        "bcrypt4",
        "bcrypt4 pw:with colon",
        bcrypt4("bcrypt4", "bcrypt4 pw:with colon"),
    );
    add(
        "bcrypt10",
        "bcrypt10-pw",
        htpasswd_line("B", &["-C", "10"], "bcrypt10", "bcrypt10-pw"),
    );
    // $2a$ and $2b$ are the same algorithm as htpasswd's $2y$ for these
    // passwords; other tools (Python bcrypt, PHP, OpenBSD) write them.
    let b2a = bcrypt4("bcrypt2a", "bcrypt2a-pw").replacen(":$2y$", ":$2a$", 1);
    let b2b = bcrypt4("bcrypt2b", "bcrypt2b-pw").replacen(":$2y$", ":$2b$", 1);
    add("bcrypt2a", "bcrypt2a-pw", b2a);
    add("bcrypt2b", "bcrypt2b-pw", b2b);
    add("sha1", "sha1-pw", htpasswd_line("s", &[], "sha1", "sha1-pw"));
    add(
        "htsha256",
        "htsha256-pw",
        htpasswd_line("2", &[], "htsha256", "htsha256-pw"),
    );
    add(
        "htsha512",
        "htsha512-pw",
        htpasswd_line("5", &[], "htsha512", "htsha512-pw"),
    );
    add(
        "md5crypt",
        "md5crypt-pw",
        format!("md5crypt:{}", openssl_hash("1", "Xy7salt", "md5crypt-pw")),
    );
    add(
        "sha256",
        "sha256-pw",
        format!("sha256:{}", openssl_hash("5", "saltsalt5", "sha256-pw")),
    );
    add(
        "sha512",
        "sha512-pw",
        format!("sha512:{}", openssl_hash("6", "saltsalt6", "sha512-pw")),
    );
    add(
        "ssha",
        "ssha-pw",
        format!("ssha:{}", ssha_hash("ssha-pw", b"\x00NaCl\xff")),
    );
    add("plain", "plain pw", "plain:{PLAIN}plain pw".to_string());

    let expected_prefixes = [
        ("apr1", ":$apr1$"),
        ("bcrypt4", ":$2y$04$"),
        ("bcrypt10", ":$2y$10$"),
        ("bcrypt2a", ":$2a$04$"),
        ("bcrypt2b", ":$2b$04$"),
        ("sha1", ":{SHA}"),
        ("htsha256", ":$5$"),
        ("htsha512", ":$6$"),
        ("md5crypt", ":$1$Xy7salt$"),
        ("sha256", ":$5$saltsalt5$"),
        ("sha512", ":$6$saltsalt6$"),
        ("ssha", ":{SSHA}"),
    ];
    for (user, prefix) in expected_prefixes {
        let line = &users.iter().find(|u| u.0 == user).unwrap().2;
        assert!(
            line.starts_with(&format!("{user}{prefix}")),
            "the tool wrote an unexpected line for {user}: {line}"
        );
    }

    let file: String = users.iter().map(|(_, _, line)| format!("{line}\n")).collect();
    let gateway = AuthConfig::new(&upstream.url()).no_throttle().start(&file);

    for (user, password, line) in &users {
        let rsp = login(&gateway, user, password);
        assert_eq!(
            rsp.status,
            200,
            "right password refused for {user} ({line}):\n{}\nlog:\n{}",
            rsp.describe(),
            tail(&gateway.log(), 3000)
        );
        // Again: answered from the cache this time.
        assert_login_ok(&gateway, user, password);
        let wrong = format!("{password}x");
        let rsp = login(&gateway, user, &wrong);
        assert_eq!(
            rsp.status,
            401,
            "wrong password accepted for {user} ({line}):\n{}",
            rsp.describe()
        );
        assert_challenge(&rsp, "Registry", true);
        assert_login_refused(&gateway, user, "");
    }
    // Nobody can use somebody else's password, and unknown users fail.
    assert_login_refused(&gateway, "apr1", "plain pw");
    assert_login_refused(&gateway, "plain", "apr1-pw");
    assert_login_refused(&gateway, "nobody", "apr1-pw");
    // The user name is matched exactly.
    assert_login_refused(&gateway, "APR1", "apr1-pw");

    let users_path = users_file(&gateway).display().to_string();
    let plain_line = users.iter().position(|u| u.0 == "plain").unwrap() + 1;
    let log = gateway.log();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains(&format!("{users_path}:{plain_line}:")) && l.contains("PLAIN")),
        "a {{PLAIN}} line must be warned about with file:line ({users_path}:{plain_line}):\n{log}"
    );
    for (_, password, _) in &users {
        assert!(
            !log.contains(password),
            "the gateway log shows the password {password:?}:\n{log}"
        );
    }
}

#[test]
fn nginx_style_htpasswd_file_skips_des_and_duplicates_with_warnings() {
    let upstream = RecordingUpstream::start();
    let user1 = htpasswd_line("m", &[], "user1", "first-pw");
    let user1_again = htpasswd_line("m", &[], "user1", "second-pw");
    let user2 = htpasswd_line("m", &[], "user2", "user2-pw");
    let des = htpasswd_line("d", &[], "olddes", "desdes12");
    let des_hash = des.split_once(':').unwrap().1.to_string();
    assert_eq!(des_hash.len(), 13, "htpasswd -d writes a 13-character DES hash: {des}");
    let sha = htpasswd_line("s", &[], "user3", "user3-pw");
    let text = [
        "# users for the registry, made with htpasswd -m".to_string(), // 1
        String::new(),                                                 // 2
        user1.clone(),                                                 // 3
        format!("{user2}:Build bot, ticket 42"),                       // 4: nginx allows a comment field
        des.clone(),                                                   // 5: skipped
        "   ".to_string(),                                             // 6
        "# user1 again, below: the first entry wins".to_string(),      // 7
        user1_again,                                                   // 8: duplicate, skipped
        "bare:not-a-hash-just-text".to_string(),                       // 9: unprefixed, skipped
        format!("{sha}\r"),                                            // 10: CRLF line ending
    ]
    .join("\n")
        + "\n";
    let gateway = AuthConfig::new(&upstream.url()).no_throttle().start(&text);

    assert_login_ok(&gateway, "user1", "first-pw");
    assert_login_refused(&gateway, "user1", "second-pw");
    assert_login_ok(&gateway, "user2", "user2-pw");
    assert_login_ok(&gateway, "user3", "user3-pw");
    assert_login_refused(&gateway, "olddes", "desdes12");
    assert_login_refused(&gateway, "bare", "not-a-hash-just-text");

    let path = users_file(&gateway).display().to_string();
    let log = gateway.log();
    for (line, what) in [(5, "DES"), (8, "user1"), (9, "bare")] {
        let at = format!("{path}:{line}:");
        assert!(
            log.lines()
                .any(|l| l.contains("WARN") && l.contains(&at) && l.contains(what)),
            "no warning naming {at} and {what:?}:\n{log}"
        );
    }
    for line in [1, 2, 3, 4, 6, 7, 10] {
        let at = format!("{path}:{line}:");
        assert!(!log.contains(&at), "line {line} is fine but was warned about:\n{log}");
    }
    assert!(
        !log.contains(&des_hash),
        "the log shows the DES hash {des_hash}:\n{log}"
    );
    assert!(
        !log.contains("not-a-hash-just-text"),
        "the log shows the unprefixed value:\n{log}"
    );
}

#[test]
fn missing_or_unreadable_htpasswd_file_is_a_startup_error_naming_key_and_file() {
    let dir = tempfile::Builder::new().prefix("auth-config-").tempdir().unwrap();
    fs::create_dir(dir.path().join("a-directory")).unwrap();
    fs::write(dir.path().join("users"), bcrypt4("alice", "pw")).unwrap();
    let cases = [
        (
            AuthConfig::new("http://127.0.0.1:1").gateway_auth("{ htpasswd: no-such-file }"),
            "auth.htpasswd",
            "no-such-file",
        ),
        (
            AuthConfig::new("http://127.0.0.1:1").registry_auth("{ htpasswd: missing/users, realm: R }"),
            "registries[0].auth.htpasswd",
            "missing/users",
        ),
        (
            AuthConfig::new("http://127.0.0.1:1").v2_auth("{ htpasswd: a-directory }"),
            "registries[0].routes.v2.auth.htpasswd",
            "a-directory",
        ),
    ];
    for (i, (config, key, file)) in cases.iter().enumerate() {
        let config_path = dir.path().join(format!("gateway-{i}.yaml"));
        fs::write(&config_path, config.to_yaml()).unwrap();
        let full = dir.path().join(file).display().to_string();
        for (what, out) in [
            ("check", run_check(&config_path)),
            ("start", run_expecting_exit(&config_path, Duration::from_secs(20))),
        ] {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success(),
                "{what} accepted a config whose htpasswd file {file} cannot be read:\n{}\nstderr:\n{stderr}",
                config.to_yaml()
            );
            assert!(
                stderr.lines().any(|l| l.contains(key) && l.contains(&full)),
                "{what}: no error line names both {key:?} and {full:?}:\n{stderr}"
            );
        }
    }
}

// ---- 2. the docker login flow, with a real client

#[test]
fn docker_login_flow_and_skopeo_push_pull_with_credentials() {
    let registry = Registry::start();
    let gateway = AuthConfig::for_registry(&registry)
        .gateway_auth("{ realm: \"Test Registry\", htpasswd: users }")
        .start(&bcrypt4("alice", "alice-pw"));

    // What `docker login` does: probe anonymously, read the challenge, retry.
    let rsp = get_v2(&gateway, None);
    assert_challenge(&rsp, "Test Registry", true);
    let rsp = login(&gateway, "alice", "alice-pw");
    assert_eq!(rsp.status, 200, "{}", rsp.describe());
    assert_api_version_once(&rsp);
    let rsp = Request::head("/v2/").send(gateway.addr());
    assert_eq!(rsp.status, 401, "{}", rsp.describe());
    assert_eq!(rsp.header("www-authenticate"), Some("Basic realm=\"Test Registry\""));

    let work = tempfile::Builder::new().prefix("auth-skopeo-").tempdir().unwrap();
    let image = OciImageBuilder::new(0xa17)
        .layer(4 * 1024)
        .layer(96 * 1024 + 3)
        .write(&work.path().join("source"), "v1");
    let reference = format!("{}/team/private:v1", gateway.addr());

    // Anonymous push: refused, and nothing lands in the registry.
    let out = skopeo_push_with_creds(&image, &reference, None);
    assert!(
        !out.status.success(),
        "an anonymous push went through:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_ascii_lowercase();
    assert!(
        stderr.contains("401") || stderr.contains("unauthorized") || stderr.contains("authentication required"),
        "the anonymous push should fail for want of credentials:\n{stderr}"
    );
    let rsp = Request::head("/v2/team/private/manifests/v1").send(registry.addr());
    assert_eq!(rsp.status, 404, "anonymous push stored a manifest:\n{}", rsp.describe());
    for blob in image.all_blobs() {
        assert!(
            !registry.blob_path(&blob.digest).exists(),
            "anonymous push stored blob {}",
            blob.digest
        );
    }

    // Wrong password: refused too.
    let out = skopeo_push_with_creds(&image, &reference, Some("alice:not-her-pw"));
    assert!(!out.status.success(), "a push with a wrong password went through");

    // With credentials: pushed, stored byte for byte.
    let out = skopeo_push_with_creds(&image, &reference, Some("alice:alice-pw"));
    assert!(
        out.status.success(),
        "push with credentials failed:\n{}\ngateway log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        tail(&gateway.log(), 4000)
    );
    for blob in image.all_blobs() {
        let stored = registry.blob_path(&blob.digest);
        assert!(stored.exists(), "the registry lacks {} after the push", blob.digest);
        assert_eq!(sha256_file(&stored), (blob.digest.clone(), blob.size));
    }

    // Anonymous pull: refused.
    let out = skopeo_pull_with_creds(&reference, &work.path().join("anon"), "v1", None);
    assert!(!out.status.success(), "an anonymous pull went through");

    // Pull with credentials: the same image.
    let out = skopeo_pull_with_creds(&reference, &work.path().join("pulled"), "v1", Some("alice:alice-pw"));
    assert!(
        out.status.success(),
        "pull with credentials failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pulled = OciImage::read(&work.path().join("pulled"), "v1");
    assert_eq!(pulled.manifest.digest, image.manifest.digest);
    assert_eq!(
        pulled.layers.iter().map(|l| &l.digest).collect::<Vec<_>>(),
        image.layers.iter().map(|l| &l.digest).collect::<Vec<_>>()
    );
    pulled.verify_files();

    assert!(
        log_lines_with(&gateway, "user=alice").len() >= 4,
        "the pushes and pulls should be logged as alice's:\n{}",
        tail(&gateway.log(), 4000)
    );
}

// ---- 3. what needs credentials, and what the upstream sees

#[test]
fn ping_paths_answer_without_credentials_and_reach_the_upstream() {
    let registry = Registry::start();
    let gateway = AuthConfig::for_registry(&registry).start(&bcrypt4("alice", "pw"));

    for path in ["/_ping", "/v1/_ping"] {
        let n = nonce("ping");
        let target = format!("{path}?probe={n}");
        for method in ["GET", "HEAD"] {
            let rsp = Request::new(method, &target).send(gateway.addr());
            assert!(
                rsp.status != 401 && rsp.header("www-authenticate").is_none(),
                "{method} {path} must not need credentials:\n{}",
                rsp.describe()
            );
            assert!(
                rsp.status < 500,
                "{method} {path} must reach the upstream:\n{}",
                rsp.describe()
            );
        }
        assert!(
            registry.wait_for_log(&n, Duration::from_secs(5)),
            "{path} never reached the registry; its access log:\n{}",
            registry.access_log().join("\n")
        );
    }
    // While /v2 is protected.
    assert_challenge(&get_v2(&gateway, None), "Registry", true);
    assert_challenge(
        &Request::get("/v2/team/app/tags/list").send(gateway.addr()),
        "Registry",
        true,
    );
}

#[test]
fn ping_route_with_its_own_auth_block_needs_credentials() {
    let registry = Registry::start();
    let gateway = AuthConfig::for_registry(&registry)
        .ping_auth("{ realm: \"Ping realm\", htpasswd: users }")
        .start(&bcrypt4("alice", "pw"));
    for path in ["/_ping", "/v1/_ping"] {
        let n = nonce("pingauth");
        let target = format!("{path}?probe={n}");
        let rsp = Request::get(&target).send(gateway.addr());
        assert_challenge(&rsp, "Ping realm", false);
        let rsp = Request::get(&target)
            .header("Authorization", &basic_auth("alice", "pw"))
            .send(gateway.addr());
        assert!(
            rsp.status != 401 && rsp.status < 500,
            "{path} with credentials must reach the upstream:\n{}",
            rsp.describe()
        );
        assert!(
            registry.wait_for_log(&n, Duration::from_secs(5)),
            "{path} with credentials never reached the registry"
        );
        assert_eq!(
            registry.access_log().iter().filter(|l| l.contains(&n)).count(),
            1,
            "the unauthenticated {path} must not reach the registry:\n{}",
            registry.access_log().join("\n")
        );
    }
}

#[test]
fn authorization_is_not_forwarded_when_the_gateway_authenticated_the_request() {
    let upstream = RecordingUpstream::start();
    let gateway = AuthConfig::new(&upstream.url()).start(&bcrypt4("alice", "pw"));
    let credentials = basic_auth("alice", "pw");
    for method in ["GET", "HEAD", "POST", "DELETE"] {
        let n = nonce("strip");
        let target = format!("/v2/team/app/blobs/uploads/?probe={n}");
        let rsp = Request::new(method, &target)
            .header("Authorization", &credentials)
            .send(gateway.addr());
        assert_eq!(rsp.status, 200, "{method}:\n{}", rsp.describe());
        let req = upstream.request_with(&n);
        assert!(
            req.header("authorization").is_none(),
            "{method}: the gateway checked the credentials but still sent them upstream:\n{}",
            req.raw_head
        );
        assert!(
            !req.raw_head.contains(credentials.trim_start_matches("Basic ")),
            "{method}: the credentials reached the upstream:\n{}",
            req.raw_head
        );
    }
}

#[test]
fn forward_authorization_true_keeps_the_clients_header() {
    let upstream = RecordingUpstream::start();
    let gateway = AuthConfig::new(&upstream.url())
        .forward_authorization()
        .start(&bcrypt4("alice", "pw"));
    let credentials = basic_auth("alice", "pw");
    let n = nonce("fwd");
    let rsp = Request::get(&format!("/v2/?probe={n}"))
        .header("Authorization", &credentials)
        .send(gateway.addr());
    assert_eq!(rsp.status, 200, "{}", rsp.describe());
    let req = upstream.request_with(&n);
    assert_eq!(
        req.header_all("authorization"),
        vec![credentials.as_str()],
        "forward_authorization: true must pass the header on unchanged:\n{}",
        req.raw_head
    );
    // Still checked by the gateway first.
    let n = nonce("fwdbad");
    let rsp = Request::get(&format!("/v2/?probe={n}"))
        .header("Authorization", &basic_auth("alice", "wrong"))
        .send(gateway.addr());
    assert_challenge(&rsp, "Registry", true);
    assert!(
        !upstream.requests().iter().any(|r| r.target.contains(&n)),
        "a refused request reached the upstream"
    );
}

#[test]
fn route_without_auth_passes_authorization_through_untouched() {
    let upstream = RecordingUpstream::start();
    let configs = [
        ("routes.v2.auth: off", AuthConfig::new(&upstream.url()).v2_auth("off")),
        (
            "registry auth: off",
            AuthConfig::new(&upstream.url()).registry_auth("off"),
        ),
        ("no auth block at all", {
            let mut c = AuthConfig::new(&upstream.url());
            c.gateway_auth = None;
            c
        }),
    ];
    for (what, config) in configs {
        let gateway = config.start(&bcrypt4("alice", "pw"));
        for value in [
            "Bearer opaque-token.for-the-upstream",
            basic_auth("someone", "the upstream checks this").as_str(),
            "Basic !!!not-base64",
        ] {
            let n = nonce("through");
            let rsp = Request::get(&format!("/v2/team/app/tags/list?probe={n}"))
                .header("Authorization", value)
                .send(gateway.addr());
            assert_eq!(rsp.status, 200, "{what}: {value}:\n{}", rsp.describe());
            let req = upstream.request_with(&n);
            assert_eq!(
                req.header_all("authorization"),
                vec![value],
                "{what}: the Authorization header must pass through untouched:\n{}",
                req.raw_head
            );
        }
        let rsp = get_v2(&gateway, None);
        assert_eq!(rsp.status, 200, "{what}: no credentials needed:\n{}", rsp.describe());
    }
}

#[test]
fn registry_auth_block_overrides_the_gateway_wide_one() {
    let upstream = RecordingUpstream::start();
    let gateway = AuthConfig::new(&upstream.url())
        .gateway_auth("{ realm: Outer, htpasswd: outer-users }")
        .registry_auth("{ realm: \"Inner \\\"team\\\" registry\", htpasswd: sub/inner-users }")
        .start_with_files(&[
            ("outer-users", bcrypt4("bob", "bob-pw").as_str()),
            ("sub/inner-users", bcrypt4("alice", "alice-pw").as_str()),
        ]);
    assert_login_ok(&gateway, "alice", "alice-pw");
    let rsp = login(&gateway, "bob", "bob-pw");
    assert_challenge(&rsp, "Inner \\\"team\\\" registry", true);
}

// ---- 4. scope: writes

#[test]
fn writes_scope_lets_anonymous_reads_through_and_challenges_writes() {
    let registry = Registry::start();
    let gateway = AuthConfig::for_registry(&registry)
        .gateway_auth("{ htpasswd: users, scope: writes, realm: Pushers }")
        .start(&bcrypt4("alice", "alice-pw"));
    let content = random_bytes(0x5c09e, 10_000);
    let digest = registry.push_blob("team/app", &content);

    // Anonymous reads.
    for (method, target, status) in [
        ("GET", "/v2/".to_string(), 200),
        ("HEAD", "/v2/".to_string(), 200),
        ("GET", format!("/v2/team/app/blobs/{digest}"), 200),
        ("HEAD", format!("/v2/team/app/blobs/{digest}"), 200),
        ("GET", "/v2/team/other/tags/list".to_string(), 404),
    ] {
        let rsp = Request::new(method, &target).send(gateway.addr());
        assert_eq!(
            rsp.status,
            status,
            "anonymous {method} {target} must reach the registry:\n{}",
            rsp.describe()
        );
        if method == "GET" && status == 200 && target.contains("/blobs/") {
            assert!(rsp.body == content, "blob content differs");
        }
    }

    // Anonymous writes.
    for (method, target) in [
        ("POST", "/v2/team/app/blobs/uploads/".to_string()),
        ("PUT", "/v2/team/app/manifests/v1".to_string()),
        ("PATCH", "/v2/team/app/blobs/uploads/some-id".to_string()),
        ("DELETE", format!("/v2/team/app/blobs/{digest}")),
    ] {
        let rsp = Request::new(method, &target).send(gateway.addr());
        assert_challenge(&rsp, "Pushers", true);
    }
    assert!(
        registry.has_blob("team/app", &digest),
        "an anonymous DELETE reached the registry"
    );

    // Authenticated: an upload goes through end to end.
    let credentials = basic_auth("alice", "alice-pw");
    let rsp = Request::post("/v2/team/app/blobs/uploads/")
        .header("Authorization", &credentials)
        .send(gateway.addr());
    assert_eq!(rsp.status, 202, "{}", rsp.describe());
    let upload = path_of(rsp.expect_header("location"));
    let data = random_bytes(0x5c09f, 20_000);
    let new_digest = sha256_bytes(&data);
    let rsp = Request::put(&with_query(&upload, &format!("digest={new_digest}")))
        .header("Authorization", &credentials)
        .header("Content-Type", "application/octet-stream")
        .body(data.clone())
        .send(gateway.addr());
    assert_eq!(rsp.status, 201, "{}", rsp.describe());
    let rsp = Request::get(&format!("/v2/team/app/blobs/{new_digest}")).send(gateway.addr());
    assert_eq!(rsp.status, 200, "{}", rsp.describe());
    assert!(rsp.body == data, "the uploaded blob reads back differently");

    // Wrong credentials on a write: refused.
    let rsp = Request::post("/v2/team/app/blobs/uploads/")
        .header("Authorization", &basic_auth("alice", "wrong"))
        .send(gateway.addr());
    assert_challenge(&rsp, "Pushers", true);
}

// ---- 5. reloading the htpasswd file

#[test]
fn htpasswd_changes_take_effect_without_restart() {
    let upstream = RecordingUpstream::start();
    let gateway = AuthConfig::new(&upstream.url())
        .no_throttle()
        .start(&format!("{}\n", bcrypt4("alice", "alice-pw")));
    let path = users_file(&gateway);
    assert_login_ok(&gateway, "alice", "alice-pw");
    assert_login_refused(&gateway, "bob", "bob-pw");

    // Appended in place (same inode), as `htpasswd FILE bob` does.
    let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(format!("{}\n", bcrypt4("bob", "bob-pw")).as_bytes())
        .unwrap();
    drop(f);
    let took = wait_for_login_status(&gateway, "bob", "bob-pw", 200, RELOAD_WITHIN);
    assert!(
        took.is_some(),
        "a user added to the file was not accepted within {RELOAD_WITHIN:?}:\n{}",
        tail(&gateway.log(), 3000)
    );
    eprintln!("added user accepted after {took:?}");
    assert_login_ok(&gateway, "alice", "alice-pw");

    // Replaced by rename without alice: her cached login goes too.
    replace_file(&path, &bcrypt4("bob", "bob-pw"));
    let took = wait_for_login_status(&gateway, "alice", "alice-pw", 401, RELOAD_WITHIN);
    assert!(
        took.is_some(),
        "a user removed from the file still gets in after {RELOAD_WITHIN:?}:\n{}",
        tail(&gateway.log(), 3000)
    );
    eprintln!("removed user refused after {took:?}");
    assert_login_ok(&gateway, "bob", "bob-pw");
    assert!(
        log_lines_with(&gateway, "reloaded").len() >= 2,
        "each reload should be logged:\n{}",
        gateway.log()
    );
}

#[test]
fn sighup_rereads_the_file_at_once() {
    let upstream = RecordingUpstream::start();
    let gateway = AuthConfig::new(&upstream.url())
        .no_throttle()
        .start("carol:{PLAIN}first-pw\n");
    let path = users_file(&gateway);
    assert_login_ok(&gateway, "carol", "first-pw");

    // Same length, same inode, and the old modification time: the 2 s poll
    // cannot see this change, only a forced re-read can.
    let mtime = fs::metadata(&path).unwrap().modified().unwrap();
    fs::write(&path, "carol:{PLAIN}secnd-pw\n").unwrap();
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    std::thread::sleep(Duration::from_millis(2300));
    let rsp = login(&gateway, "carol", "secnd-pw");
    assert_eq!(
        rsp.status, 401,
        "premise: the poll must not notice a change that keeps size, inode and mtime"
    );

    let hup = Instant::now();
    gateway.signal("HUP");
    let took = wait_for_login_status(&gateway, "carol", "secnd-pw", 200, Duration::from_millis(1000));
    assert!(
        took.is_some(),
        "SIGHUP did not make the changed password work within 1 s:\n{}",
        tail(&gateway.log(), 3000)
    );
    eprintln!("SIGHUP reload effective after {:?}", hup.elapsed());
    assert_login_refused(&gateway, "carol", "first-pw");
    assert!(
        gateway.log().contains("SIGHUP"),
        "SIGHUP should be logged:\n{}",
        gateway.log()
    );
}

#[test]
fn unreadable_htpasswd_file_keeps_the_previous_users() {
    let upstream = RecordingUpstream::start();
    let users = format!("{}\n{}\n", bcrypt4("alice", "alice-pw"), bcrypt4("dave", "dave-pw"));
    let mut gateway = AuthConfig::new(&upstream.url()).no_throttle().start(&users);
    let path = users_file(&gateway);
    let shown = path.display().to_string();
    assert_login_ok(&gateway, "alice", "alice-pw");

    fs::remove_file(&path).unwrap();
    let noticed = wait_until(RELOAD_WITHIN, || {
        log_lines_with(&gateway, &shown)
            .iter()
            .any(|l| l.contains("ERROR") || l.contains("No such file"))
    });
    assert!(
        noticed,
        "the gateway log must say that {shown} cannot be read:\n{}",
        gateway.log()
    );
    let why = log_lines_with(&gateway, &shown);
    assert!(
        why.iter()
            .any(|l| l.contains("No such file") || l.contains("not found")),
        "the log should say why the file cannot be read:\n{}",
        why.join("\n")
    );
    // dave never logged in: his login is checked against the kept table.
    assert_login_ok(&gateway, "dave", "dave-pw");
    assert_login_refused(&gateway, "dave", "alice-pw");
    assert_login_ok(&gateway, "alice", "alice-pw");

    // SIGHUP with the file still missing changes nothing either.
    gateway.signal("HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert!(gateway.is_running(), "SIGHUP with a missing file killed the gateway");
    assert_login_ok(&gateway, "dave", "dave-pw");

    // The file comes back (without alice): picked up again.
    fs::write(&path, format!("{}\n", bcrypt4("dave", "dave-pw"))).unwrap();
    let took = wait_for_login_status(&gateway, "alice", "alice-pw", 401, RELOAD_WITHIN);
    assert!(
        took.is_some(),
        "the restored file was not picked up within {RELOAD_WITHIN:?}:\n{}",
        tail(&gateway.log(), 3000)
    );
    assert_login_ok(&gateway, "dave", "dave-pw");
}

// ---- 6. throttling

#[test]
fn wrong_credentials_are_throttled_per_client_and_released_after_the_window() {
    let upstream = RecordingUpstream::start();
    let users = format!("{}\n{}\n", bcrypt4("alice", "alice-pw"), bcrypt4("bob", "bob-pw"));
    let gateway = AuthConfig::new(&upstream.url())
        .server("auth_throttle: { max_failures: 3, window: 2s }")
        .start(&users);
    assert_login_ok(&gateway, "alice", "alice-pw");

    // Requests without credentials never count.
    for _ in 0..8 {
        assert_challenge(&get_v2(&gateway, None), "Registry", true);
    }

    let first_failure = Instant::now();
    for i in 1..=3 {
        let rsp = login(&gateway, "alice", &format!("guess-{i}"));
        assert_challenge(&rsp, "Registry", true);
    }
    let rsp = login(&gateway, "alice", "guess-4");
    assert_json_error(&rsp, 429, "TOOMANYREQUESTS");
    assert_api_version_once(&rsp);
    let retry_after: u64 = rsp
        .expect_header("retry-after")
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After must be whole seconds:\n{}", rsp.describe()));
    assert!(
        (1..=2).contains(&retry_after),
        "Retry-After {retry_after} does not fit a 2 s window:\n{}",
        rsp.describe()
    );
    // Even the right password of a login not yet verified waits.
    let rsp = login(&gateway, "bob", "bob-pw");
    assert_json_error(&rsp, 429, "TOOMANYREQUESTS");
    // A forged X-Forwarded-For from an untrusted client changes nothing.
    let rsp = Request::get("/v2/")
        .header("Authorization", &basic_auth("alice", "guess-5"))
        .header("X-Forwarded-For", "203.0.113.77")
        .send(gateway.addr());
    assert_eq!(rsp.status, 429, "{}", rsp.describe());

    // No credentials: still the plain challenge.
    assert_challenge(&get_v2(&gateway, None), "Registry", true);
    // A login already verified still gets in from the throttled address.
    assert_login_ok(&gateway, "alice", "alice-pw");

    // After the window: wrong credentials get a 401 again, not a 429.
    let release = first_failure + Duration::from_millis(2300);
    std::thread::sleep(release.saturating_duration_since(Instant::now()));
    let rsp = login(&gateway, "alice", "guess-after-window");
    assert_challenge(&rsp, "Registry", true);
    assert_login_ok(&gateway, "bob", "bob-pw");
}

// ---- 7. malformed Authorization headers

#[test]
fn malformed_authorization_headers_get_a_clean_401() {
    let upstream = RecordingUpstream::start();
    let gateway = AuthConfig::new(&upstream.url())
        .no_throttle()
        .start(&bcrypt4("alice", "alice-pw"));
    let huge = basic_auth("alice", &"p".repeat(5000));
    assert!(huge.len() > 4096);
    let cases: Vec<(&str, String)> = vec![
        ("bad base64", "Basic !!!not*base64!!!".to_string()),
        ("truncated base64", "Basic YWxpY2U6YWxpY2".to_string()),
        ("no colon", basic_auth_raw(b"alicealice-pw")),
        ("empty user", basic_auth_raw(b":alice-pw")),
        ("non-UTF-8 user", basic_auth_raw(b"\xff\xfealice:alice-pw")),
        ("over 4096 bytes", huge),
        (
            "right credentials beyond 4096 bytes of padding",
            format!(
                "Basic {}{}",
                " ".repeat(4100),
                basic_auth("alice", "alice-pw").trim_start_matches("Basic ")
            ),
        ),
        ("Bearer scheme", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig".to_string()),
        (
            "Digest scheme",
            "Digest username=\"alice\", realm=\"Registry\"".to_string(),
        ),
        ("scheme only", "Basic".to_string()),
        ("scheme and space", "Basic ".to_string()),
        (
            "credentials without a scheme",
            basic_auth("alice", "alice-pw")[6..].to_string(),
        ),
        ("non-ASCII bytes", "Basic ÿÿÿÿ".to_string()),
        ("empty", String::new()),
    ];
    for (what, value) in &cases {
        let rsp = get_v2(&gateway, Some(value));
        assert_eq!(rsp.status, 401, "{what} must get a 401:\n{}", rsp.describe());
        assert_challenge(&rsp, "Registry", true);
    }
    assert!(
        upstream.requests().is_empty(),
        "a malformed Authorization reached the upstream: {:?}",
        upstream.requests().iter().map(|r| &r.target).collect::<Vec<_>>()
    );
    // The scheme is case-insensitive and the gateway still serves.
    assert_login_ok(&gateway, "alice", "alice-pw");
    let lower = basic_auth("alice", "alice-pw").replacen("Basic", "basic", 1);
    let rsp = get_v2(&gateway, Some(&lower));
    assert_eq!(rsp.status, 200, "lower-case `basic` scheme:\n{}", rsp.describe());
    // Two Authorization headers: the first is checked and it is bad.
    let rsp = Request::get("/v2/")
        .header("Authorization", "Bearer nope")
        .header("Authorization", &basic_auth("alice", "alice-pw"))
        .send(gateway.addr());
    assert!(
        rsp.status == 401 || rsp.status == 400,
        "two Authorization headers must not get in:\n{}",
        rsp.describe()
    );
    let mut gw = gateway;
    assert!(gw.is_running(), "the gateway died:\n{}", gw.log());
}

// ---- 8. a 401 to a client still sending a large body

#[test]
fn unauthenticated_large_upload_receives_the_whole_401_not_a_reset() {
    let upstream = RecordingUpstream::start();
    let mut gateway = AuthConfig::new(&upstream.url()).start(&bcrypt4("alice", "alice-pw"));
    const SIZE: usize = 50 << 20;
    let n = nonce("bigput");
    let head = format!(
        "PUT /v2/team/big/blobs/uploads/{n}?digest=sha256:{zero} HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {SIZE}\r\n\r\n",
        zero = "0".repeat(64),
        addr = gateway.addr()
    );
    let mut conn = Conn::open(gateway.addr());
    conn.set_read_timeout(Duration::from_secs(20));
    let mut writer = conn.stream().try_clone().unwrap();
    writer.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    let reader = std::thread::spawn(move || {
        let rsp = conn.try_read_response("PUT");
        // Whatever follows the response: the gateway should close.
        let rest = conn.read_to_end();
        (rsp, rest)
    });

    let started = Instant::now();
    writer.write_all(head.as_bytes()).unwrap();
    let chunk = random_bytes(0xb16, 256 * 1024);
    let mut sent = 0usize;
    let mut write_error = None;
    while sent < SIZE {
        match writer.write_all(&chunk) {
            Ok(()) => sent += chunk.len(),
            Err(e) => {
                write_error = Some(e);
                break;
            }
        }
    }
    let (rsp, rest) = reader.join().unwrap();
    eprintln!(
        "client wrote {sent} of {SIZE} body bytes in {:?} (write error: {write_error:?}); after the response: {:?}",
        started.elapsed(),
        rest.as_ref().map(|r| r.len())
    );
    let rsp = rsp.unwrap_or_else(|e| {
        panic!(
            "the client got no complete response to its unauthenticated 50 MiB PUT ({e}); it had written \
             {sent} body bytes (write error: {write_error:?})\ngateway log:\n{}",
            tail(&gateway.log(), 3000)
        )
    });
    assert_challenge(&rsp, "Registry", true);
    assert!(
        !upstream.requests().iter().any(|r| r.target.contains(&n)),
        "the unauthenticated upload reached the upstream"
    );

    // The gateway serves the next requests.
    assert!(gateway.is_running(), "the gateway died:\n{}", gateway.log());
    assert_challenge(&get_v2(&gateway, None), "Registry", true);
    assert_login_ok(&gateway, "alice", "alice-pw");
}

// ---- 9. the passwd subcommand

#[test]
fn passwd_subcommand_creates_updates_and_deletes_users() {
    let upstream = RecordingUpstream::start();
    let dir = tempfile::Builder::new().prefix("auth-passwd-").tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    let run = |user: &str, args: &[&str], stdin: &str| {
        let out = run_passwd(&file, user, args, stdin);
        assert!(
            out.status.success(),
            "passwd {user} {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    };

    run("alice", &["--stdin", "--cost", "4"], "alice-pw\n");
    let text = fs::read_to_string(&file).expect("passwd must create the file");
    let alice_line = text.lines().find(|l| l.starts_with("alice:")).unwrap_or("");
    assert!(
        alice_line.starts_with("alice:$2y$04$"),
        "expected a $2y$ cost-4 bcrypt line for alice:\n{text}"
    );
    assert!(
        htpasswd_verifies(&file, "alice", "alice-pw"),
        "Apache's htpasswd -v rejects the line passwd wrote:\n{text}"
    );

    let gateway = AuthConfig::new(&upstream.url())
        .no_throttle()
        .gateway_auth(&format!("{{ htpasswd: \"{}\" }}", file.display()))
        .start_with_files(&[]);
    assert_login_ok(&gateway, "alice", "alice-pw");
    assert_login_refused(&gateway, "alice", "alice-pw\n");

    // A second user, and alice's password changed; the file is edited in
    // place of the old one, which the running gateway picks up.
    run("bob", &["--stdin", "--cost", "4"], "bob-pw\n");
    run("alice", &["--stdin", "--cost", "5"], "alice-new\n");
    let text = fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().filter(|l| l.starts_with("alice:")).count(), 1, "{text}");
    assert!(text.contains("alice:$2y$05$"), "{text}");
    assert!(
        wait_for_login_status(&gateway, "alice", "alice-new", 200, RELOAD_WITHIN).is_some(),
        "a password changed with passwd was not accepted within {RELOAD_WITHIN:?}:\n{}",
        tail(&gateway.log(), 3000)
    );
    assert_login_ok(&gateway, "bob", "bob-pw");
    assert_login_refused(&gateway, "alice", "alice-pw");

    run("alice", &["--delete"], "");
    let text = fs::read_to_string(&file).unwrap();
    assert!(!text.contains("alice:"), "--delete left alice in the file:\n{text}");
    assert!(text.contains("bob:$2y$04$"), "--delete removed another user:\n{text}");
    assert!(
        wait_for_login_status(&gateway, "alice", "alice-new", 401, RELOAD_WITHIN).is_some(),
        "a user deleted with passwd still gets in after {RELOAD_WITHIN:?}"
    );
    assert_login_ok(&gateway, "bob", "bob-pw");

    // Errors: deleting a missing user, a bad cost, a bad name.
    let out = run_passwd(&file, "alice", &["--delete"], "");
    assert!(!out.status.success(), "deleting a missing user must fail");
    assert!(String::from_utf8_lossy(&out.stderr).contains("alice"));
    let out = run_passwd(&file, "carol", &["--stdin", "--cost", "3"], "pw\n");
    assert!(!out.status.success(), "cost 3 must be refused");
    let out = run_passwd(&file, "ca:rol", &["--stdin", "--cost", "4"], "pw\n");
    assert!(!out.status.success(), "a user name with a colon must be refused");
    assert!(!fs::read_to_string(&file).unwrap().contains("carol"));
}

// ---- 10. the access log

#[test]
fn access_log_names_the_user_and_never_the_password() {
    let upstream = RecordingUpstream::start();
    let password = nonce("Secret-");
    let wrong = nonce("Wrong-");
    let gateway = AuthConfig::new(&upstream.url()).start(&bcrypt4("alice", &password));

    let rsp = Request::get("/v2/team/logged/tags/list")
        .header("Authorization", &basic_auth("alice", &password))
        .send(gateway.addr());
    assert_eq!(rsp.status, 200, "{}", rsp.describe());
    let rsp = Request::get("/v2/team/refused/tags/list")
        .header("Authorization", &basic_auth("alice", &wrong))
        .send(gateway.addr());
    assert_eq!(rsp.status, 401, "{}", rsp.describe());

    assert!(
        gateway.wait_for_log("/v2/team/refused/tags/list", Duration::from_secs(5))
            && gateway.wait_for_log("/v2/team/logged/tags/list", Duration::from_secs(5)),
        "no access log lines:\n{}",
        gateway.log()
    );
    let ok_line = log_lines_with(&gateway, "/v2/team/logged/tags/list");
    assert!(
        ok_line
            .iter()
            .any(|l| l.contains(" status=200 ") && l.contains(" user=alice ")),
        "the access line of an authenticated request must carry user=alice:\n{}",
        ok_line.join("\n")
    );
    let refused_line = log_lines_with(&gateway, "/v2/team/refused/tags/list");
    assert!(
        refused_line.iter().any(|l| l.contains(" status=401 ")),
        "{}",
        refused_line.join("\n")
    );
    assert!(
        !refused_line.iter().any(|l| l.contains("user=alice")),
        "a refused request must not be logged as alice's:\n{}",
        refused_line.join("\n")
    );
    let log = gateway.log();
    for secret in [
        password.clone(),
        wrong.clone(),
        basic_auth("alice", &password)[6..].to_string(),
        basic_auth("alice", &wrong)[6..].to_string(),
    ] {
        assert!(!log.contains(&secret), "the log contains {secret:?}:\n{log}");
    }
}
