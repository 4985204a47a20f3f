//! Containerfile's runtime stage, built without a daemon or an image
//! registry: buildah (vfs storage, chroot isolation) on a base image made
//! from `debootstrap --variant=minbase bookworm`, with the binary under test
//! as `BINARY_FROM=prebuilt`.
//!
//! Failures of the machine (debootstrap, or buildah unable to build or run
//! even the base image) are reported as `container image NOT built here:
//! ...` and pass unless `REQUIRE_CONTAINER_BUILD=1`. Once the base image
//! builds and runs, every failure is the recipe's and fails the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use tempfile::TempDir;

use crate::common::tail;

pub const BUILDAH: &str = "/usr/bin/buildah";
pub const DEBOOTSTRAP: &str = "/usr/sbin/debootstrap";
pub const BASE_IMAGE: &str = "localhost/bookworm-minbase";

/// Where the machine, not the recipe, stops the build: prints why and
/// passes, or fails under `REQUIRE_CONTAINER_BUILD=1`.
pub fn not_built_here(why: &str) {
    let line = format!("container image NOT built here: {why}");
    if std::env::var("REQUIRE_CONTAINER_BUILD").is_ok_and(|v| v == "1") {
        panic!("{line} (REQUIRE_CONTAINER_BUILD=1)");
    }
    report(&line);
}

/// Straight to stderr, past the test harness's capture: a passing run
/// still says whether and where the image was built.
pub fn report(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn describe(cmd: &Command, out: &Output) -> String {
    let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
    format!(
        "{} {} ({}): {}{}",
        cmd.get_program().to_string_lossy(),
        args.join(" "),
        out.status,
        tail(&String::from_utf8_lossy(&out.stdout), 1500),
        tail(&String::from_utf8_lossy(&out.stderr), 1500)
    )
}

/// Runs `cmd`; `Err` describes the command and the end of its output.
pub fn run(mut cmd: Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(describe(&cmd, &out))
    }
}

/// A minbase bookworm root filesystem as a tarball, made once and kept at
/// `cache` (delete it to refresh). Pruned of apt's lists and caches, docs,
/// man pages and locales: what a runtime image does not need.
pub fn base_rootfs(cache: &Path) -> Result<PathBuf, String> {
    let tarball = cache.join("rootfs.tar");
    if tarball.is_file() {
        return Ok(tarball);
    }
    if unsafe { libc::geteuid() } != 0 {
        return Err("debootstrap needs root".into());
    }
    std::fs::create_dir_all(cache).map_err(|e| format!("create {}: {e}", cache.display()))?;
    let work = tempfile::Builder::new()
        .prefix("debootstrap-")
        .tempdir_in(cache)
        .map_err(|e| e.to_string())?;
    let rootfs = work.path().join("rootfs");
    let mut cmd = Command::new(DEBOOTSTRAP);
    cmd.args(["--variant=minbase", "bookworm"]).arg(&rootfs);
    run(cmd)?;
    for dir in [
        "var/cache/apt",
        "var/lib/apt/lists",
        "usr/share/doc",
        "usr/share/man",
        "usr/share/locale",
    ] {
        let path = rootfs.join(dir);
        std::fs::remove_dir_all(&path).map_err(|e| format!("prune {}: {e}", path.display()))?;
    }
    let partial = work.path().join("rootfs.tar");
    let mut cmd = Command::new("tar");
    cmd.arg("--numeric-owner")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&partial)
        .arg(".");
    run(cmd)?;
    // A rename: a concurrent run sees no tarball or a whole one.
    std::fs::rename(&partial, &tarball).map_err(|e| format!("rename to {}: {e}", tarball.display()))?;
    Ok(tarball)
}

/// buildah with its own storage in a temporary folder: nothing is left on
/// the machine, and concurrent runs do not share state.
pub struct Buildah {
    dir: TempDir,
}

impl Buildah {
    pub fn new() -> Buildah {
        let dir = tempfile::Builder::new().prefix("buildah-").tempdir().unwrap();
        Buildah { dir }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(BUILDAH);
        cmd.arg("--root")
            .arg(self.dir.path().join("storage"))
            .arg("--runroot")
            .arg(self.dir.path().join("run"))
            .args(["--storage-driver", "vfs"]);
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = self.cmd();
        cmd.args(args);
        run(cmd)
    }

    /// `buildah bud` of `containerfile` in `context`, tagged `tag`.
    pub fn build_command(&self, containerfile: &Path, context: &Path, tag: &str, build_args: &[&str]) -> Command {
        let mut cmd = self.cmd();
        cmd.args(["bud", "--isolation", "chroot", "-t", tag]);
        for a in build_args {
            cmd.args(["--build-arg", a]);
        }
        cmd.arg("-f").arg(containerfile).arg(context);
        cmd
    }

    pub fn build(
        &self,
        containerfile: &Path,
        context: &Path,
        tag: &str,
        build_args: &[&str],
    ) -> Result<String, String> {
        run(self.build_command(containerfile, context, tag, build_args))
    }

    /// The base image from the rootfs tarball (`FROM scratch`, `ADD`).
    pub fn import_base(&self, rootfs: &Path) -> Result<(), String> {
        let context = self.dir.path().join("base");
        std::fs::create_dir_all(&context).unwrap();
        let tar = context.join("rootfs.tar");
        if std::fs::hard_link(rootfs, &tar).is_err() {
            std::fs::copy(rootfs, &tar).map_err(|e| e.to_string())?;
        }
        let containerfile = context.join("Containerfile");
        std::fs::write(&containerfile, "FROM scratch\nADD rootfs.tar /\n").unwrap();
        self.build(&containerfile, &context, BASE_IMAGE, &[]).map(drop)
    }

    /// A working container of `image`; its name.
    pub fn from(&self, image: &str) -> Result<String, String> {
        Ok(self.run(&["from", image])?.trim().to_string())
    }

    /// `buildah run --isolation chroot` (host network, no daemon).
    pub fn run_in(&self, container: &str, mounts: &[String], argv: &[&str]) -> Command {
        let mut cmd = self.cmd();
        cmd.args(["run", "--isolation", "chroot"]);
        for m in mounts {
            cmd.args(["-v", m]);
        }
        cmd.arg(container).arg("--").args(argv);
        cmd
    }

    /// The files of `context` that a build receives past `.dockerignore`
    /// (copied into an image with `COPY . /`, then read back).
    pub fn context_as_sent(&self, context: &Path) -> Result<Vec<String>, String> {
        let containerfile = self.dir.path().join("Containerfile.context");
        std::fs::write(&containerfile, "FROM scratch\nCOPY . /\n").unwrap();
        self.build(&containerfile, context, "localhost/context:test", &[])?;
        let c = self.from("localhost/context:test")?;
        let root = PathBuf::from(self.run(&["mount", &c])?.trim());
        let mut files = Vec::new();
        walk(&root, &root, &mut files);
        files.sort();
        Ok(files)
    }

    pub fn inspect_image(&self, image: &str) -> serde_json::Value {
        let text = self
            .run(&["inspect", "--type", "image", image])
            .unwrap_or_else(|e| panic!("{e}"));
        serde_json::from_str(&text).expect("buildah inspect prints JSON")
    }
}

/// Files of a checkout that a build context carries: what the `build` and
/// `prebuilt` stages copy.
pub const CONTEXT_SENT: [&str; 6] = [
    ".dockerignore",
    "Cargo.lock",
    "Cargo.toml",
    "benches/hot_path.rs",
    "src/main.rs",
    "target/release/registry-gateway",
];

/// Files of a checkout that stay out of it: build output, git, local state.
const CONTEXT_KEPT_OUT: [&str; 7] = [
    ".git/HEAD",
    ".run/venv/bin/python3",
    "certs/dev/ca.key",
    "fuzz/target/debug/fuzz_config",
    "target/container-base/rootfs.tar",
    "target/debug/registry-gateway",
    "target/release/deps/libregistry_gateway.rlib",
];

/// A stand-in checkout at `dir` with both kinds of files and the real
/// `.dockerignore`.
pub fn mock_checkout(dir: &Path) -> PathBuf {
    for file in CONTEXT_SENT.iter().chain(&CONTEXT_KEPT_OUT) {
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, file).unwrap();
    }
    std::fs::copy(".dockerignore", dir.join(".dockerignore")).unwrap();
    dir.to_path_buf()
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(root, &path, out);
        } else {
            out.push(path.strip_prefix(root).unwrap().display().to_string());
        }
    }
}

/// The sizes of an image's layers, from its manifest (uncompressed tar).
pub fn layer_sizes(inspect: &serde_json::Value) -> Vec<u64> {
    let manifest: serde_json::Value =
        serde_json::from_str(inspect["Manifest"].as_str().expect("a manifest")).expect("the manifest is JSON");
    manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["size"].as_u64().expect("a layer size"))
        .collect()
}

/// A process started by `buildah run`, stopped on drop: buildah ends the
/// process in the container when it gets SIGTERM.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
            let _ = self.0.wait();
        }
    }
}
