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

/// `skopeo copy oci:DIR:TAG docker://DEST` (DEST is `host:port/repo:tag`),
/// keeping digests, over plain HTTP.
#[track_caller]
pub fn skopeo_push(image: &OciImage, dest: &str) {
    let src = format!("oci:{}:{}", image.dir.display(), image.tag);
    let dst = format!("docker://{dest}");
    let out = skopeo(&[
        "--insecure-policy",
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &src,
        &dst,
    ]);
    assert_success(&format!("skopeo copy {src} {dst}"), &out);
}

/// `skopeo copy docker://SRC oci:DIR:TAG` into a new layout directory, keeping
/// digests (and therefore the uncompressed layers), then reads the result.
#[track_caller]
pub fn skopeo_pull(src: &str, dir: &Path, tag: &str) -> OciImage {
    let from = format!("docker://{src}");
    let to = format!("oci:{}:{tag}", dir.display());
    let out = skopeo(&[
        "--insecure-policy",
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-oci-accept-uncompressed-layers",
        &from,
        &to,
    ]);
    assert_success(&format!("skopeo copy {from} {to}"), &out);
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

/// `skopeo copy oci:DIR:TAG docker://DEST` with `--dest-creds USER:PASS`, or
/// anonymously (`--dest-no-creds`) when `creds` is `None`. Returns skopeo's
/// output without judging it.
pub fn skopeo_push_with_creds(image: &OciImage, dest: &str, creds: Option<&str>) -> Output {
    let src = format!("oci:{}:{}", image.dir.display(), image.tag);
    let dst = format!("docker://{dest}");
    let creds_arg = creds.map(|c| format!("--dest-creds={c}"));
    let mut args = vec![
        "--insecure-policy",
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
    ];
    args.push(creds_arg.as_deref().unwrap_or("--dest-no-creds"));
    args.push(&src);
    args.push(&dst);
    skopeo(&args)
}

/// `skopeo copy docker://SRC oci:DIR:TAG` with `--src-creds USER:PASS`, or
/// anonymously (`--src-no-creds`) when `creds` is `None`. Returns skopeo's
/// output without judging it.
pub fn skopeo_pull_with_creds(src: &str, dir: &Path, tag: &str, creds: Option<&str>) -> Output {
    let from = format!("docker://{src}");
    let to = format!("oci:{}:{tag}", dir.display());
    let creds_arg = creds.map(|c| format!("--src-creds={c}"));
    let mut args = vec![
        "--insecure-policy",
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-oci-accept-uncompressed-layers",
    ];
    args.push(creds_arg.as_deref().unwrap_or("--src-no-creds"));
    args.push(&from);
    args.push(&to);
    skopeo(&args)
}
