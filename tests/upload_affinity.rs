//! Upload affinity across a pool of registry:2 replicas on one storage
//! directory. registry:2 signs an upload's state with its `http.secret`:
//! with a secret per replica an upload can only continue where it started,
//! so the gateway keeps it there, across gateway processes too (the hint
//! is in the upload URL, not in a gateway's memory). With one secret the
//! upload may move when its replica dies.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;

/// Two gateway processes with the same pool configuration, as behind an
/// L4 balancer.
fn two_gateways(urls: &[String], pool: &str) -> (Gateway, Gateway) {
    (start_pool_gateway(urls, pool), start_pool_gateway(urls, pool))
}

/// The upload id and hint of an upload Location path.
fn id_and_hint(location: &str) -> (String, String) {
    let (path, query) = location.split_once('?').expect("upload URL with a query");
    let id = path.rsplit('/').next().unwrap().to_owned();
    let hint = query
        .split('&')
        .find_map(|p| p.strip_prefix("_gw="))
        .unwrap_or_else(|| panic!("no _gw= hint in {location}"));
    (id, hint.to_owned())
}

#[test]
fn uploads_stay_on_their_replica_with_independent_secrets_through_two_gateways() {
    let storage = tempfile::tempdir().unwrap();
    let regs = replicas(storage.path(), 2, &["secret-one", "secret-two"]);
    let urls: Vec<String> = regs.iter().map(|r| r.url()).collect();
    let keys: Vec<String> = urls.iter().map(|u| upload_key(u)).collect();

    // Control: the secrets really are independent.
    let rsp = Request::post("/v2/aff/control/blobs/uploads/").send(regs[0].addr());
    assert_eq!(rsp.status, 202, "{}", rsp.describe());
    let upload = path_of(rsp.expect_header("location"));
    let rsp = Request::patch(&upload)
        .header("Content-Type", "application/octet-stream")
        .body(vec![1u8; 1024])
        .send(regs[1].addr());
    assert!(
        matches!(rsp.status, 400 | 404),
        "the other replica accepted a foreign upload state:\n{}",
        rsp.describe()
    );

    let pool = "    policy: round_robin\n    shared_secret: false\n";
    let (g1, g2) = two_gateways(&urls, pool);
    let base = |a: SocketAddr| format!("http://{a}");
    let mut owners = [0usize; 2];
    for run in 0..6u64 {
        let (a, b) = if run % 2 == 0 { (&g1, &g2) } else { (&g2, &g1) };
        let repo = format!("aff/indep-{run}");
        let out = run_python_client(
            "alternating_chunked_push.py",
            &[
                &base(a.addr()),
                &base(b.addr()),
                &repo,
                "3",
                "1048576",
                &run.to_string(),
            ],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "client failed: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        let statuses: Vec<u64> = v["seen"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s[2].as_u64().unwrap())
            .collect();
        assert_eq!(statuses, vec![202, 202, 202, 202, 201, 200], "run {run}: {text}");
        assert_eq!(v["served_digest"], v["digest"], "run {run}: {text}");

        let (id, hint) = id_and_hint(v["locations"][0].as_str().unwrap());
        let owner = keys.iter().position(|k| *k == hint).expect("the hint names a replica");
        owners[owner] += 1;
        // Three PATCHes and the PUT, all on the owner, none elsewhere.
        assert_eq!(
            regs[owner].served(&id),
            4,
            "run {run} on its owner:\n{:?}",
            regs[owner].access_log()
        );
        assert_eq!(regs[1 - owner].served(&id), 0, "run {run} reached the other replica");
        if run % 2 == 0 {
            // Moves each gateway's turn, so POSTs reach both replicas.
            Request::get("/v2/").send(g1.addr());
        }
    }
    assert!(
        owners.iter().all(|&n| n > 0),
        "uploads started on one replica only: {owners:?}"
    );
    for r in &regs {
        assert_eq!(r.served("_gw="), 0, "the hint reached a registry");
    }

    // Real client, chunked by its own rules, through the alternating pool.
    require_tool(SKOPEO_BIN, "skopeo");
    let work = tempfile::tempdir().unwrap();
    for i in 0..4u64 {
        let image = OciImageBuilder::new(0xaff0 + i)
            .layer(300 * 1024 + i)
            .layer(2 * 1024 * 1024)
            .layer(1024)
            .layer(700 * 1024)
            .write(&work.path().join(format!("img-{i}")), "v1");
        let gateway = if i % 2 == 0 { &g1 } else { &g2 };
        let dest = format!("{}/aff/skopeo-{i}:v1", gateway.addr());
        skopeo_push(&image, &dest);
        let back = skopeo_pull(&dest, &work.path().join(format!("back-{i}")), "v1");
        assert_eq!(back.manifest.digest, image.manifest.digest);
    }
}

/// Starts an upload through `g`, sends one chunk; (upload path, owner).
fn start_upload(g: &Gateway, repo: &str, chunk: &[u8], keys: &[String]) -> (String, usize) {
    let rsp = Request::post(&format!("/v2/{repo}/blobs/uploads/")).send(g.addr());
    assert_eq!(rsp.status, 202, "{}", rsp.describe());
    let location = path_of(rsp.expect_header("location"));
    let owner = keys.iter().position(|k| *k == id_and_hint(&location).1).unwrap();
    let rsp = patch(g, &location, chunk, 0);
    assert_eq!(rsp.status, 202, "{}", rsp.describe());
    (path_of(rsp.expect_header("location")), owner)
}

fn patch(g: &Gateway, location: &str, chunk: &[u8], offset: usize) -> Response {
    Request::patch(location)
        .header("Content-Type", "application/octet-stream")
        .header("Content-Range", &format!("{offset}-{}", offset + chunk.len() - 1))
        .body(chunk.to_vec())
        .send(g.addr())
}

#[test]
fn with_a_shared_secret_an_upload_moves_when_its_replica_dies_and_without_one_it_does_not() {
    let chunk1 = random_bytes(17, 512 * 1024);
    let chunk2 = random_bytes(18, 300 * 1024);
    let whole = [chunk1.clone(), chunk2.clone()].concat();
    let digest = sha256_bytes(&whole);
    let watch = "    health: { interval: 1s, timeout: 1s, rise: 1, fall: 1 }\n";
    for shared in [true, false] {
        let storage = tempfile::tempdir().unwrap();
        let secrets: &[&str] = if shared {
            &["one-secret"]
        } else {
            &["secret-a", "secret-b"]
        };
        let mut regs = replicas(storage.path(), 2, secrets);
        let urls: Vec<String> = regs.iter().map(|r| r.url()).collect();
        let keys: Vec<String> = urls.iter().map(|u| upload_key(u)).collect();
        let pool = format!("    policy: round_robin\n    shared_secret: {shared}\n{watch}");
        let (g1, g2) = two_gateways(&urls, &pool);
        let repo = format!("aff/moved-{shared}");
        let (location, owner) = start_upload(&g1, &repo, &chunk1, &keys);
        let (id, _) = id_and_hint(&location);
        regs[owner].kill();
        for g in [&g1, &g2] {
            wait_replica_up(g, &urls[owner], false, Duration::from_secs(5));
        }
        let other = 1 - owner;
        let rsp = patch(&g2, &location, &chunk2, chunk1.len());
        if shared {
            assert_eq!(rsp.status, 202, "the upload did not move:\n{}", rsp.describe());
            let location = path_of(rsp.expect_header("location"));
            let put = Request::put(&with_query(&location, &format!("digest={digest}"))).send(g1.addr());
            assert_eq!(put.status, 201, "{}", put.describe());
            let got = Request::get(&format!("/v2/{repo}/blobs/{digest}")).send(g2.addr());
            assert_eq!(got.status, 200, "{}", got.describe());
            assert_eq!(sha256_bytes(&got.body), digest);
            assert_eq!(regs[other].served(&id), 2, "PATCH and PUT on the surviving replica");
        } else {
            // Its state is unreadable elsewhere: not sent there, 502.
            assert_json_error(&rsp, 502, "BAD_GATEWAY");
            assert_eq!(
                regs[other].served(&id),
                0,
                "the upload was sent to a replica that cannot read it"
            );
            // The client starts the layer again, on the live replica.
            let rsp = Request::post(&format!("/v2/{repo}/blobs/uploads/")).send(g1.addr());
            assert_eq!(rsp.status, 202, "{}", rsp.describe());
            let location = path_of(rsp.expect_header("location"));
            let put = Request::put(&with_query(&location, &format!("digest={digest}")))
                .header("Content-Type", "application/octet-stream")
                .body(whole.clone())
                .send(g2.addr());
            assert_eq!(put.status, 201, "{}", put.describe());
        }
        regs[owner].restart();
    }
}
