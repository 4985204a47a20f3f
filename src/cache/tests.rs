use std::io::Read;
use std::sync::Arc;

use super::*;

fn store(dir: &std::path::Path, max: u64) -> Arc<Store> {
    Store::open(
        dir,
        Limits {
            max_size: max,
            fsync: false,
        },
    )
    .unwrap()
}

async fn fill(s: &Arc<Store>, body: &[u8], claimed: Digest) -> Result<u64, FinishError> {
    let Lookup::Lead(mut w, _) = s.lookup(&claimed).unwrap() else {
        panic!("expected a new fill")
    };
    w.set_head(FillHead {
        status: 200,
        total: Some(body.len() as u64),
        error_body: Bytes::new(),
    });
    w.write(body).await.unwrap();
    w.finish(false).await
}

use bytes::Bytes;

#[tokio::test]
async fn verified_fills_commit_and_mismatches_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), 1 << 30);
    let d = Digest::of(b"hello");
    assert_eq!(fill(&s, b"hello", d).await.unwrap(), 5);
    let mut c = s.open_blob(&d).unwrap();
    let mut text = String::new();
    c.file.read_to_string(&mut text).unwrap();
    assert_eq!(text, "hello");
    let wrong = Digest::of(b"other");
    assert!(matches!(fill(&s, b"hellx", wrong).await, Err(FinishError::Mismatch(_))));
    assert!(s.open_blob(&wrong).is_none());
    assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
}

#[tokio::test]
async fn followers_join_the_running_fill_and_readers_never_see_the_last_byte_early() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), 1 << 30);
    let d = Digest::of(b"abc");
    let Lookup::Lead(mut w, fill) = s.lookup(&d).unwrap() else {
        panic!()
    };
    assert!(matches!(s.lookup(&d).unwrap(), Lookup::Follow(f) if Arc::ptr_eq(&f, &fill)));
    w.set_head(FillHead {
        status: 200,
        total: Some(3),
        error_body: Bytes::new(),
    });
    let rx = fill.subscribe();
    w.write(b"abc").await.unwrap();
    w.flush().await.unwrap();
    assert_eq!(rx.borrow().readable(), 2);
    w.finish(false).await.unwrap();
    assert_eq!(rx.borrow().readable(), 3);
    assert!(matches!(s.lookup(&d).unwrap(), Lookup::Cached(_)));
}

#[tokio::test]
async fn eviction_spares_pinned_blobs_and_stops_at_the_low_mark() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), 100);
    let bodies: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 40]).collect();
    let d0 = Digest::of(&bodies[0]);
    fill(&s, &bodies[0], d0).await.unwrap();
    let pinned = s.open_blob(&d0).unwrap();
    for b in &bodies[1..] {
        fill(&s, b, Digest::of(b)).await.unwrap();
    }
    assert!(s.open_blob(&d0).is_some(), "a pinned blob stays");
    assert!(
        s.size() <= 100 + 40,
        "only the pinned blob exceeds the bound: {}",
        s.size()
    );
    drop(pinned);
    assert!(s.size() <= 100);
}

#[tokio::test]
async fn a_reopened_store_indexes_without_reading_and_drops_dead_fills() {
    let dir = tempfile::tempdir().unwrap();
    let d = Digest::of(b"kept");
    {
        let s = Store::create(
            dir.path(),
            Limits {
                max_size: 1 << 20,
                fsync: true,
            },
        )
        .unwrap();
        let s = Arc::new(s);
        fill(&s, b"kept", d).await.unwrap();
    }
    std::fs::write(dir.path().join("tmp/ab.999999999.0.part"), b"partial").unwrap();
    let s = Arc::new(
        Store::create(
            dir.path(),
            Limits {
                max_size: 1 << 20,
                fsync: true,
            },
        )
        .unwrap(),
    );
    assert_eq!(s.size(), 4);
    assert!(s.open_blob(&d).is_some());
    assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
}

#[test]
fn records_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), 1 << 20);
    let body = br#"{"schemaVersion":2}"#;
    let d = Digest::of(body);
    s.records()
        .put_manifest(&d, "application/vnd.oci.image.manifest.v1+json", body)
        .unwrap();
    let (mt, b) = s.records().manifest(&d).unwrap();
    assert_eq!(
        (mt.as_str(), &b[..]),
        ("application/vnd.oci.image.manifest.v1+json", &body[..])
    );
    let rec = TagRecord {
        digest: d,
        media_type: mt,
        validated: SystemTime::now(),
    };
    s.records().put_tag("up", "a/b", "1.0", rec.clone());
    let fresh = records::Records::new(dir.path());
    assert_eq!(fresh.tag("up", "a/b", "1.0").unwrap().digest, d);
    assert!(fresh.tag("up", "a/b", "2.0").is_none());
    assert!(!s.records().linked("up", "a/b", &d));
    s.records().link("up", "a/b", &d);
    assert!(s.records().linked("up", "a/b", &d));
    assert!(!s.records().linked("other", "a/b", &d));
    assert!(
        records::Records::new(dir.path()).linked("up", "a/b", &d),
        "links survive a restart"
    );
}
