//! The store on a real sled in a temporary directory.

use std::time::Duration;

use alertpost_event::job::AttemptCode;
use alertpost_event::job::DeadLetter;
use alertpost_store::{AttemptOutcome, AttemptRecord, Progress, Retention, Store, StoreError};
use time::OffsetDateTime;

/// A retention that keeps everything these tests write.
const KEEP_ALL: Retention = Retention {
    max_age: std::time::Duration::from_secs(365 * 24 * 3600),
    max_bytes: u64::MAX,
};

fn attempt(event: &str, integration: &str, n: u32, at: OffsetDateTime) -> AttemptRecord {
    AttemptRecord {
        delivery_id: format!("dlv_{event}_{integration}"),
        event_id: event.to_owned(),
        integration: integration.to_owned(),
        attempt: n,
        started_at: at,
        duration_ms: 12,
        outcome: AttemptOutcome::Retry,
        code: AttemptCode::ServerError,
        status: Some(503),
        response_headers: vec![("retry-after".into(), "1".into())],
        response_body: Some("busy".into()),
        error: Some("HTTP 503: busy".into()),
        request: None,
    }
}

/// Starts the background writer; it writes what is queued every 200 ms.
fn writer(store: &Store) -> tokio::task::JoinHandle<()> {
    let s = store.clone();
    tokio::spawn(async move { s.run(KEEP_ALL, std::future::pending()).await })
}

/// Waits for the writer's next write.
async fn written() {
    tokio::time::sleep(Duration::from_millis(400)).await;
}

#[tokio::test]
async fn attempts_are_kept_and_queried() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let _writer = writer(&store);
    let t0 = OffsetDateTime::now_utc();
    for n in 1..=3 {
        store.record(attempt(
            "e1",
            "a",
            n,
            t0 + Duration::from_secs(u64::from(n)),
        ));
    }
    store.record(attempt("e1", "b", 1, t0));
    store.record(attempt("e2", "a", 1, t0 + Duration::from_secs(10)));
    written().await;

    let e1: Vec<(String, u32)> = store
        .attempts(Some("e1"), None, 10)
        .into_iter()
        .map(|r| (r.integration, r.attempt))
        .collect();
    assert_eq!(
        e1,
        [
            ("b".into(), 1),
            ("a".into(), 1),
            ("a".into(), 2),
            ("a".into(), 3)
        ]
    );
    let e1a = store.attempts(Some("e1"), Some("a"), 2);
    assert_eq!(
        e1a.iter().map(|r| r.attempt).collect::<Vec<_>>(),
        [2, 3],
        "the last two"
    );
    assert_eq!(e1a[1], attempt("e1", "a", 3, t0 + Duration::from_secs(3)));
    let recent = store.attempts(None, None, 2);
    assert_eq!(
        recent
            .iter()
            .map(|r| r.event_id.as_str())
            .collect::<Vec<_>>(),
        ["e1", "e2"],
        "newest last"
    );
    assert!(store.attempts(Some("nope"), None, 10).is_empty());
    assert!(store.attempt_bytes() > 0);
}

/// A delivery id is found by searching segments' bytes, then its event's
/// attempts give the whole history, across segments.
#[tokio::test]
async fn attempts_are_found_by_delivery_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let _writer = writer(&store);
    let t0 = OffsetDateTime::now_utc();
    store.record(attempt("e1", "a", 1, t0));
    store.record(attempt("e1", "b", 1, t0));
    // Written (a segment) before the next are recorded: two segments.
    until(|| store.attempts(Some("e1"), None, 10).len() == 2).await;
    store.record(attempt("e1", "a", 2, t0 + Duration::from_secs(5)));
    store.record(attempt("e2", "a", 1, t0 + Duration::from_secs(6)));
    until(|| store.attempts(Some("e2"), None, 10).len() == 1).await;

    let found = store.attempts_of_delivery("dlv_e1_a", 10);
    assert_eq!(
        found
            .iter()
            .map(|r| (r.delivery_id.as_str(), r.attempt))
            .collect::<Vec<_>>(),
        [("dlv_e1_a", 1), ("dlv_e1_a", 2)],
        "both attempts, oldest first, none of another delivery"
    );
    assert_eq!(
        store.attempts_of_delivery("dlv_e1_a", 1).len(),
        1,
        "the limit holds"
    );
    assert!(store.attempts_of_delivery("dlv_nope", 10).is_empty());
}

/// Polls `done` every 20 ms, for at most 10 s.
async fn until(done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "not written within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_journal_and_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let writer = writer(&store);
    assert!(store.progress("dlv_1").is_none());
    store.note("dlv_1", Progress::Delivered);
    store.note("dlv_2", Progress::Dead { hop: 1 });
    store.note("dlv_3", Progress::HandedOn { hop: 1 });
    store.note("dlv_3", Progress::HandedOn { hop: 2 });
    // Seen at once, before the writer wrote them...
    assert_eq!(store.progress("dlv_1").unwrap(), Progress::Delivered);
    assert_eq!(store.progress("dlv_2").unwrap(), Progress::Dead { hop: 1 });
    // ...and after.
    written().await;
    assert_eq!(store.progress("dlv_2").unwrap(), Progress::Dead { hop: 1 });

    let now = OffsetDateTime::now_utc();
    for i in 0..3 {
        let letter = DeadLetter::undecodable(
            format!("m{i}"),
            b"x",
            "bad".into(),
            "q".into(),
            now + Duration::from_secs(i),
        );
        store.record_dead(&letter).unwrap();
    }
    let dead: Vec<String> = store
        .dead_letters(None, 2)
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(dead, ["m2", "m1"], "newest first");

    // The journal survives a restart (reloaded from the segments).
    store.flush().await.unwrap();
    writer.abort();
    let _ = writer.await;
    drop(store);
    let again = Store::open(dir.path()).unwrap();
    assert_eq!(again.progress("dlv_1").unwrap(), Progress::Delivered);
    assert_eq!(
        again.progress("dlv_3").unwrap(),
        Progress::HandedOn { hop: 2 },
        "hand-offs are journaled too"
    );
    assert_eq!(
        again.progress("dlv_2").unwrap(),
        Progress::Dead { hop: 1 },
        "and dead letters, with their hop"
    );
}

#[tokio::test]
async fn a_second_process_on_the_directory_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Store::open(dir.path()).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains(&dir.path().display().to_string()), "{text}");
    assert!(
        text.contains("each worker needs a --data-dir of its own"),
        "{text}"
    );
}

#[tokio::test]
async fn retention_prunes_by_age_then_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let _writer = writer(&store);
    let now = OffsetDateTime::now_utc();
    let old = now - Duration::from_secs(3 * 24 * 3600);
    // Records go to disk in segments, one per write of the background
    // writer: here one of old records, then ten of recent ones.
    for n in 0..10 {
        store.record(attempt(&format!("old{n}"), "a", 1, old));
    }
    written().await;
    for s in 0..10u64 {
        for n in 0..10u64 {
            store.record(attempt(
                &format!("new{s}-{n}"),
                "a",
                1,
                now - Duration::from_secs(100 - s),
            ));
        }
        written().await;
    }
    let per_segment = store.attempt_bytes() / 11;

    let keep_two_days = Retention {
        max_age: Duration::from_secs(2 * 24 * 3600),
        max_bytes: u64::MAX,
    };
    store.prune_now(&keep_two_days).unwrap();
    assert_eq!(store.attempts(None, None, 1000).len(), 100);
    assert!(store.attempts(Some("old0"), None, 10).is_empty());
    assert!(now - store.oldest_attempt().unwrap() < Duration::from_secs(200));

    let three_segments = Retention {
        max_age: Duration::from_secs(2 * 24 * 3600),
        max_bytes: per_segment * 3 + per_segment / 2,
    };
    store.prune_now(&three_segments).unwrap();
    let left = store.attempts(None, None, 1000);
    assert_eq!(left.len(), 30, "the three newest segments stay");
    assert_eq!(left.first().unwrap().event_id, "new7-0");
    assert!(store.attempts(Some("new9-9"), None, 10).len() == 1);
}

#[tokio::test]
async fn a_broken_store_is_moved_aside_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    std::fs::create_dir_all(&path).unwrap();
    // Not a sled directory: a `conf` file sled cannot read.
    std::fs::write(path.join("conf"), b"\xff\xfe garbage").unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert!(err.to_string().contains("move it aside"), "{err}");
    let store = Store::open_or_move_aside(&path).unwrap();
    store.note("dlv", Progress::Delivered);
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert!(
        aside
            .iter()
            .any(|n| n.to_string_lossy().starts_with("data.broken-")),
        "{aside:?}"
    );
}

/// Dead letters count toward `max_size` too (found: pruned by age only, so
/// a flood of dead letters grew the store without bound), and age pruning
/// takes them in chunks.
#[tokio::test]
async fn dead_letters_are_pruned_by_age_and_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let now = OffsetDateTime::now_utc();
    let letter = |n: usize, at: OffsetDateTime| {
        DeadLetter::undecodable(
            format!("d{n}"),
            &vec![b'x'; 1000],
            "not JSON".to_owned(),
            "q".to_owned(),
            at,
        )
    };
    // 3000 expired (more than one chunk), then 100 recent ones.
    for n in 0..3000 {
        store
            .record_dead(&letter(n, now - Duration::from_secs(10 * 24 * 3600)))
            .unwrap();
    }
    for n in 0..100 {
        store
            .record_dead(&letter(
                10_000 + n,
                now - Duration::from_secs(100 - n as u64),
            ))
            .unwrap();
    }
    let each = store.dead_bytes() / 3100;
    assert!(each > 1000, "counted: {}", store.dead_bytes());
    store
        .prune_now(&Retention {
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_bytes: u64::MAX,
        })
        .unwrap();
    assert_eq!(store.dead_letters(None, 10_000).len(), 100);
    assert_eq!(store.dead_bytes() / each, 100);
    // Room for about 40: the oldest go.
    store
        .prune_now(&Retention {
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_bytes: each * 40 + each / 2,
        })
        .unwrap();
    let left = store.dead_letters(None, 10_000);
    assert_eq!(left.len(), 40);
    assert_eq!(left.first().unwrap().id, "d10099", "newest first");
    assert_eq!(left.last().unwrap().id, "d10060");
    // Counted across a restart.
    let bytes = store.dead_bytes();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.dead_bytes(), bytes);
}
