//! nginx-style process control: `registry-gateway signal upgrade` (SIGUSR2)
//! hands the listening sockets to a new process with no refused connection
//! while the old one finishes its transfers; `signal reload|reopen|stop`
//! find the gateway by `server.pid_file`.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use sha2::{Digest, Sha256};

/// Runs `registry-gateway --config CONFIG signal ACTION`.
fn signal(gateway: &Gateway, action: &str) -> std::process::Output {
    Command::new(GATEWAY_BIN.path())
        .arg("--config")
        .arg(gateway.config_path())
        .args(["signal", action])
        .output()
        .expect("run registry-gateway signal")
}

fn pid_in(gateway: &Gateway) -> Option<u32> {
    std::fs::read_to_string(gateway.temp_dir().join("gw.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Kills the process the pid file names when dropped (the upgrade's new
/// process is not the harness's child).
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-9").arg(self.0.to_string()).status();
    }
}

fn config(listen: SocketAddr, registry: &Registry, extra: &str) -> String {
    format!(
        "server:\n  threads: 2\n  pid_file: gw.pid\n  grace_period: 2s\n{extra}listeners:\n  - address: \"{listen}\"\n\
         upstreams:\n  registry: {{ url: \"{}\" }}\nregistries:\n  - {{ name: main, default: true, upstream: registry }}\n",
        registry.url()
    )
}

#[test]
fn upgrade_refuses_no_connection_and_the_old_process_finishes_its_download_then_exits() {
    let registry = Registry::start();
    let size = 96 << 20;
    let data = random_bytes(0x0ba5e, size);
    let digest = registry.push_blob("upgrade/big", &data);
    drop(data);
    let listen = free_addr();
    let mut gateway = Gateway::start_yaml(&config(listen, &registry, ""), listen);
    let old_pid = pid_in(&gateway).expect("the pid file names the gateway");
    assert_eq!(old_pid, gateway.pid());

    // A download starts on the old process and stalls after 1 MiB.
    let mut download = Conn::open(listen);
    download.send(&Request::get(&format!("/v2/upgrade/big/blobs/{digest}")).to_bytes(listen));
    let head = download.read_head().expect("download head");
    assert_eq!(head.status, 200, "{head:?}");
    let mut hasher = Sha256::new();
    let first = download.read_some(1 << 20).expect("first MiB");
    hasher.update(&first);
    let mut got = first.len();

    // Small requests on new connections, all the time.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut results = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let r = Request::get("/v2/")
                    .try_send(listen)
                    .map(|r| r.status)
                    .map_err(|e| e.to_string());
                results.push(r);
                std::thread::sleep(Duration::from_millis(5));
            }
            results
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let out = signal(&gateway, "upgrade");
    assert!(
        out.status.success(),
        "signal upgrade: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut new_pid = None;
    let took_over = wait_until(Duration::from_secs(30), || {
        new_pid = pid_in(&gateway).filter(|&p| p != old_pid);
        new_pid.is_some()
    });
    assert!(took_over, "no new process took over:\n{}", tail(&gateway.log(), 4000));
    let _new = KillOnDrop(new_pid.unwrap());
    // Past Pingora's 5 s in which both accept, the old one stops accepting.
    std::thread::sleep(Duration::from_secs(7));
    assert!(
        gateway.is_running(),
        "the old process left before its download finished"
    );
    stop.store(true, Ordering::Relaxed);
    let results = load.join().unwrap();
    let failed: Vec<_> = results.iter().filter(|r| **r != Ok(200)).collect();
    assert!(
        results.len() > 100,
        "only {} requests during the handover",
        results.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the handover: {:?}\n{}",
        failed.len(),
        results.len(),
        &failed[..failed.len().min(5)],
        tail(&gateway.log(), 3000)
    );

    // The download finishes from the old process, intact; then it exits.
    while got < size {
        let piece = download.read_some(4 << 20).expect("rest of the download");
        assert!(!piece.is_empty(), "download cut at {got} of {size} bytes");
        hasher.update(&piece);
        got += piece.len();
    }
    assert_eq!(format!("sha256:{}", hex(&hasher.finalize())), digest);
    drop(download);
    let exited = gateway.wait_exit(Duration::from_secs(15));
    assert!(
        exited.is_some_and(|s| s.success()),
        "the old process did not exit cleanly after its last transfer ({exited:?}):\n{}",
        tail(&gateway.log(), 3000)
    );
    // The new one serves, and the pid file still names it.
    assert_eq!(Request::get("/v2/").send(listen).status, 200);
    assert_eq!(pid_in(&gateway), new_pid);
}

#[test]
fn signal_reload_reopen_and_stop_find_the_gateway_by_its_pid_file() {
    let registry = Registry::start();
    let listen = free_addr();
    let yaml = config(listen, &registry, "") + "access_log:\n  output: access.log\n";
    let mut gateway = Gateway::start_yaml(&yaml, listen);
    let log_path = gateway.temp_dir().join("access.log");

    // reopen: after the file is moved away, new lines go to a new file.
    Request::get("/v2/first/tags/list").send(listen);
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&log_path).is_ok_and(|t| t.contains("/v2/first/"))
    }));
    let rotated = gateway.temp_dir().join("access.log.1");
    std::fs::rename(&log_path, &rotated).unwrap();
    let out = signal(&gateway, "reopen");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(gateway.wait_for_log("access log reopened", Duration::from_secs(5)));
    Request::get("/v2/second/tags/list").send(listen);
    assert!(
        wait_until(Duration::from_secs(5), || {
            std::fs::read_to_string(&log_path).is_ok_and(|t| t.contains("/v2/second/"))
        }),
        "no line in the reopened file"
    );
    assert!(!std::fs::read_to_string(&rotated).unwrap().contains("/v2/second/"));

    // reload
    let out = signal(&gateway, "reload");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        gateway.wait_for_log("generation 2 (", Duration::from_secs(5)),
        "{}",
        gateway.log()
    );

    // stop: drains and exits 0, removing the pid file.
    let started = Instant::now();
    let out = signal(&gateway, "stop");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status = gateway.wait_exit(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        !gateway.temp_dir().join("gw.pid").exists(),
        "the pid file outlived the gateway"
    );

    // Without a running gateway: a clear error, exit 1.
    let out = signal(&gateway, "reload");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("gw.pid") && err.contains("pid file"), "{err}");
}

#[test]
fn signal_without_a_pid_file_says_how_to_set_one() {
    let registry = Registry::start();
    let listen = free_addr();
    let yaml = config(listen, &registry, "").replace("  pid_file: gw.pid\n", "");
    let gateway = Gateway::start_yaml(&yaml, listen);
    let out = signal(&gateway, "reload");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.pid_file is not set"), "{err}");
}
