//! skopeo as the real-world client: copies images between OCI layout
//! directories and a registry reached over plain HTTP.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use super::oci::OciImage;
use super::require_tool;

pub const SKOPEO_BIN: &str = "/usr/bin/skopeo";

/// Runs skopeo with `args`, logging how long it took.
pub fn skopeo(args: &[&str]) -> Output {
    require_tool(SKOPEO_BIN, "skopeo");
    let started = Instant::now();
    let out = Command::new(SKOPEO_BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {SKOPEO_BIN}: {e}"));
    eprintln!("skopeo {} took {:?}", args.join(" "), started.elapsed());
    out
}

#[track_caller]
fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstderr:\n{}\nstdout:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `skopeo copy --preserve-digests OPTIONS oci:DIR:TAG docker://DEST`
/// (DEST is `host:port/repo:tag`). Returns skopeo's output unjudged.
pub fn skopeo_copy_up(image: &OciImage, dest: &str, options: &[&str]) -> Output {
    let src = format!("oci:{}:{}", image.dir.display(), image.tag);
    let dst = format!("docker://{dest}");
    let mut args = vec!["--insecure-policy", "copy", "--preserve-digests"];
    args.extend_from_slice(options);
    args.extend([src.as_str(), dst.as_str()]);
    skopeo(&args)
}

/// `skopeo copy --preserve-digests OPTIONS docker://SRC oci:DIR:TAG`, keeping
/// the layers uncompressed as pushed. Returns skopeo's output unjudged.
pub fn skopeo_copy_down(src: &str, dir: &Path, tag: &str, options: &[&str]) -> Output {
    let from = format!("docker://{src}");
    let to = format!("oci:{}:{tag}", dir.display());
    let mut args = vec![
        "--insecure-policy",
        "copy",
        "--preserve-digests",
        "--dest-oci-accept-uncompressed-layers",
    ];
    args.extend_from_slice(options);
    args.extend([from.as_str(), to.as_str()]);
    skopeo(&args)
}

/// Pushes over plain HTTP; fails the test unless skopeo succeeds.
#[track_caller]
pub fn skopeo_push(image: &OciImage, dest: &str) {
    let out = skopeo_copy_up(image, dest, &["--dest-tls-verify=false"]);
    assert_success(&format!("skopeo copy {} to {dest}", image.dir.display()), &out);
}

/// Pulls over plain HTTP into a new layout directory and reads the result;
/// fails the test unless skopeo succeeds.
#[track_caller]
pub fn skopeo_pull(src: &str, dir: &Path, tag: &str) -> OciImage {
    let out = skopeo_copy_down(src, dir, tag, &["--src-tls-verify=false"]);
    assert_success(&format!("skopeo copy {src} to {}", dir.display()), &out);
    OciImage::read(dir, tag)
}

/// `skopeo inspect --raw docker://REF`: the manifest bytes as served.
#[track_caller]
pub fn skopeo_inspect_raw(reference: &str) -> Vec<u8> {
    let r = format!("docker://{reference}");
    let out = skopeo(&["--insecure-policy", "inspect", "--raw", "--tls-verify=false", &r]);
    assert_success(&format!("skopeo inspect --raw {r}"), &out);
    out.stdout
}

/// Push over plain HTTP with `--dest-creds USER:PASS`, or anonymously
/// (`--dest-no-creds`) when `creds` is `None`. Unjudged.
pub fn skopeo_push_with_creds(image: &OciImage, dest: &str, creds: Option<&str>) -> Output {
    let creds_arg = creds.map(|c| format!("--dest-creds={c}"));
    let creds = creds_arg.as_deref().unwrap_or("--dest-no-creds");
    skopeo_copy_up(image, dest, &["--dest-tls-verify=false", creds])
}

/// Pull over plain HTTP with `--src-creds USER:PASS`, or anonymously
/// (`--src-no-creds`) when `creds` is `None`. Unjudged.
pub fn skopeo_pull_with_creds(src: &str, dir: &Path, tag: &str, creds: Option<&str>) -> Output {
    let creds_arg = creds.map(|c| format!("--src-creds={c}"));
    let creds = creds_arg.as_deref().unwrap_or("--src-no-creds");
    skopeo_copy_down(src, dir, tag, &["--src-tls-verify=false", creds])
}
