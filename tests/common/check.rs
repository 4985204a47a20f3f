//! `registry-gateway check` on a config written to a temp dir, and the
//! assertion that it fails naming the file and every expected part.

use std::path::PathBuf;
use std::process::Output;

use super::run_check;

pub struct ConfigFile {
    pub _dir: tempfile::TempDir,
    pub path: PathBuf,
}

pub fn write_config(yaml: &str) -> ConfigFile {
    let dir = tempfile::Builder::new().prefix("gateway-config-").tempdir().unwrap();
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, yaml).unwrap();
    ConfigFile { _dir: dir, path }
}

pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `check` on `yaml`; asserts a non-zero exit and that stderr has an
/// `error: FILE: ...` line containing every `needle`. Returns stderr.
#[track_caller]
pub fn assert_check_fails(yaml: &str, needles: &[&str]) -> String {
    let file = write_config(yaml);
    let out = run_check(&file.path);
    let (stdout, stderr) = text(&out);
    assert!(
        !out.status.success(),
        "check accepted an invalid config:\n{yaml}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let file_name = file.path.display().to_string();
    let prefix = format!("error: {file_name}: ");
    assert!(
        stderr.contains(&prefix),
        "stderr must contain {prefix:?}; config:\n{yaml}\nstderr:\n{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.contains(&prefix) && needles.iter().all(|n| l.contains(n))),
        "no `error: FILE: ...` line mentions all of {needles:?}; config:\n{yaml}\nstderr:\n{stderr}"
    );
    stderr
}
