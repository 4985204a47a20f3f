//! The access log under load: lines are batched per worker thread, so
//! these check that a burst comes out whole (one line per request, none
//! torn or lost, all of it written when SIGTERM ends the process) and that an output
//! that stops reading costs dropped, counted lines, never stalled requests.

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

const USER: &str = "logger";
const PASSWORD: &str = "access-log-secret-41";

/// A gateway with htpasswd auth (so `GET /v2/` without credentials is
/// answered by the gateway alone) whose access log goes to `output`.
fn gateway(registry: &Registry, output: &str) -> Gateway {
    let listen = free_addr();
    let yaml = format!(
        "server: {{ threads: 2, grace_period: 10s }}\n\
         listeners:\n  - address: \"{listen}\"\n\
         upstreams:\n  registry:\n    url: \"{}\"\n\
         registries:\n  - name: main\n    default: true\n    upstream: registry\n\
         auth:\n  htpasswd: users\n\
         access_log:\n  format: text\n  output: \"{output}\"\n",
        registry.url()
    );
    let users = htpasswd_line("B", &["-C", "4"], USER, PASSWORD) + "\n";
    Gateway::start_yaml_with_files(&yaml, listen, &[("users", users.as_bytes())])
}

/// `clients` keep-alive connections, each sending `per_client` requests
/// made by `request(client, i)`; returns how many got each status.
fn burst(
    addr: SocketAddr,
    clients: usize,
    per_client: usize,
    request: impl Fn(usize, usize) -> Request + Sync,
) -> Vec<u16> {
    let request = &request;
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..clients)
            .map(|c| {
                s.spawn(move || {
                    let mut conn = Conn::open(addr);
                    (0..per_client)
                        .map(|i| request(c, i).keep_alive().send_on(&mut conn).status)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    })
}

#[test]
fn a_burst_is_logged_one_whole_line_per_request_and_all_of_it_is_written_by_exit() {
    let registry = Registry::start();
    let mut gateway = gateway(&registry, "access.log");
    let auth = basic_auth(USER, PASSWORD);
    let (clients, per_client) = (4, 400);
    let statuses = burst(gateway.addr(), clients, per_client, |c, i| {
        Request::head(&format!("/v2/burst/c{c}/manifests/r{i}")).header("Authorization", &auth)
    });
    assert!(statuses.iter().all(|&s| s == 404), "{statuses:?}");
    // Lines still waiting on their worker threads must be written on the way out.
    gateway.signal("TERM");
    assert!(
        gateway.wait_exit(Duration::from_secs(15)).is_some(),
        "the gateway did not exit after SIGTERM:\n{}",
        gateway.log()
    );

    let text = std::fs::read_to_string(gateway.temp_dir().join("access.log")).unwrap();
    let mut seen = std::collections::HashSet::new();
    for line in text.lines() {
        assert!(
            line.starts_with("time=") && line.ends_with("upstream_status=404 cache=-"),
            "a torn or foreign line: {line:?}"
        );
        let repo = line.split(" repo=").nth(1).and_then(|r| r.split(' ').next());
        let reference = line.split(" ref=").nth(1).and_then(|r| r.split(' ').next());
        let key = (repo.unwrap().to_string(), reference.unwrap().to_string());
        assert!(seen.insert(key), "logged twice: {line}");
    }
    assert_eq!(
        seen.len(),
        clients * per_client,
        "one line per request expected; the gateway's output:\n{}",
        gateway.log()
    );
    for c in 0..clients {
        for i in [0, per_client - 1] {
            let key = (format!("burst/c{c}"), format!("r{i}"));
            assert!(seen.contains(&key), "no line for {key:?}");
        }
    }
}

#[test]
fn an_output_that_stops_reading_drops_and_counts_lines_and_requests_go_on() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("access.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("run mkfifo");
    assert!(made.success(), "mkfifo {} failed", fifo.display());
    // A reader that holds the pipe open and reads nothing until told to.
    let read = Arc::new(Mutex::new(Vec::<u8>::new()));
    let (go, start_reading) = std::sync::mpsc::channel::<()>();
    let reader = {
        let (fifo, read) = (fifo.clone(), read.clone());
        std::thread::spawn(move || {
            let mut pipe = std::fs::File::open(fifo).expect("open the fifo");
            let _ = start_reading.recv();
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                read.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let gateway = gateway(&registry, fifo.to_str().unwrap());

    // Far more than the pipe (64 KiB) and the per-thread buffers (1 MiB
    // each, 2 threads) hold: about 4 MB of lines.
    let (clients, per_client) = (4, 4_000);
    let total = clients * per_client;
    let statuses = burst(gateway.addr(), clients, per_client, |c, i| {
        Request::get(&format!("/v2/?client={c}&request={i}"))
    });
    assert_eq!(statuses.len(), total);
    assert!(statuses.iter().all(|&s| s == 401), "{:?}", &statuses[..10]);

    let dropped = || {
        sample(
            &scrape(gateway.metrics_addr()),
            "registry_gateway_access_log_dropped_total",
            &[],
        ) as usize
    };
    let lost = dropped();
    assert!(lost > 0, "no line counted as dropped while the output was stalled");

    go.send(()).unwrap();
    let lines = || read.lock().unwrap().iter().filter(|&&b| b == b'\n').count();
    let settled = wait_until(Duration::from_secs(10), || lines() + dropped() == total);
    assert!(
        settled,
        "{} lines written and {} dropped, for {total} requests",
        lines(),
        dropped()
    );
    let text = String::from_utf8(read.lock().unwrap().clone()).unwrap();
    assert!(
        text.lines()
            .all(|l| l.starts_with("time=") && l.contains(" status=401 ")),
        "a torn line in the output"
    );
    drop(gateway);
    let _ = reader.join();
}
