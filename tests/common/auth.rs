//! Credentials and htpasswd lines for the auth tests.
//!
//! Hash lines are made by the tools operators use (`htpasswd` from
//! apache2-utils, `openssl passwd`), not by the gateway's own code, so a
//! test that passes shows interoperability and not just self-consistency.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};

use super::gateway::GATEWAY_BIN;
use super::require_tool;

pub const HTPASSWD_BIN: &str = "/usr/bin/htpasswd";
pub const OPENSSL_BIN: &str = "/usr/bin/openssl";

/// The `Authorization` value for Basic credentials.
pub fn basic_auth(user: &str, password: &str) -> String {
    basic_auth_raw(format!("{user}:{password}").as_bytes())
}

/// `Basic base64(bytes)`, for credentials that are not valid text.
pub fn basic_auth_raw(bytes: &[u8]) -> String {
    format!("Basic {}", STANDARD.encode(bytes))
}

fn run_tool(bin: &str, package: &str, args: &[&str]) -> String {
    require_tool(bin, package);
    let out = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {bin}: {e}"));
    assert!(
        out.status.success(),
        "{bin} {} failed ({}):\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("tool output is UTF-8")
}

/// `htpasswd -nb<flags> USER PASSWORD` (plus `extra` options such as
/// `-C 4`): the `user:hash` line it prints.
pub fn htpasswd_line(flags: &str, extra: &[&str], user: &str, password: &str) -> String {
    let opt = format!("-nb{flags}");
    let mut args = vec![opt.as_str()];
    args.extend_from_slice(extra);
    args.push(user);
    args.push(password);
    let out = run_tool(HTPASSWD_BIN, "apache2-utils", &args);
    let line = out.lines().next().unwrap_or("").to_string();
    assert!(
        line.starts_with(&format!("{user}:")),
        "unexpected htpasswd output for {args:?}: {out:?}"
    );
    line
}

/// `openssl passwd -<algo> -salt SALT PASSWORD`: the hash it prints.
pub fn openssl_hash(algo: &str, salt: &str, password: &str) -> String {
    let opt = format!("-{algo}");
    let out = run_tool(OPENSSL_BIN, "openssl", &["passwd", &opt, "-salt", salt, password]);
    out.trim().to_string()
}

/// `{SSHA}base64(sha1(password + salt) + salt)`, as OpenLDAP's slappasswd
/// writes it.
pub fn ssha_hash(password: &str, salt: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(password.as_bytes());
    h.update(salt);
    let mut bytes = h.finalize().to_vec();
    bytes.extend_from_slice(salt);
    format!("{{SSHA}}{}", STANDARD.encode(bytes))
}

/// Whether `htpasswd -vb FILE USER PASSWORD` accepts the password.
pub fn htpasswd_verifies(file: &Path, user: &str, password: &str) -> bool {
    require_tool(HTPASSWD_BIN, "apache2-utils");
    let out = Command::new(HTPASSWD_BIN)
        .arg("-vb")
        .arg(file)
        .arg(user)
        .arg(password)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {HTPASSWD_BIN}: {e}"));
    out.status.success()
}

/// Runs `registry-gateway passwd FILE USER ARGS...` with `stdin` fed to it.
pub fn run_passwd(file: &Path, user: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(GATEWAY_BIN)
        .arg("passwd")
        .arg(file)
        .arg(user)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {GATEWAY_BIN} passwd: {e}"));
    // passwd may refuse its arguments and exit before reading stdin.
    match child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("write the password to passwd's stdin: {e}"),
        _ => {}
    }
    child.wait_with_output().expect("wait for passwd")
}
