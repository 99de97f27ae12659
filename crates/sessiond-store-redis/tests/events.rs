//! The event outbox (decision D28): `append_events` queues and returns, one task appends the
//! events in order and in batches, a batch that ran but whose reply was lost is not appended
//! twice, and `read_events` on the same node sees every event queued before it. Each test runs
//! its own `redis-server` on a free port, so that stopping it disturbs nothing else.
#![allow(clippy::unwrap_used)]
mod support;

use std::time::Duration;

use sessiond_core::time::{Clock, SystemClock};
use sessiond_core::{Event, EventKind, SessionId, SessionStore};
use sessiond_store_redis::{RedisOptions, RedisStore};
use support::{cli, free_port, signal, Resume, Server};

fn event(i: u32) -> Event {
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&i.to_be_bytes());
    Event::new(SystemClock.now(), EventKind::Renewed, Some(SessionId::from_bytes(id)), &format!("user{i}"), "t")
}

/// `calls` of one command in `INFO commandstats` (commands inside scripts included).
fn calls(port: u16, command: &str) -> u64 {
    cli(port, &["info", "commandstats"])
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A private `redis-server` on a free port and a store on it with operation timeout `timeout`.
async fn private(timeout: Duration) -> (tempfile::TempDir, Server, String, RedisStore) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(free_port(), dir.path(), &[]);
    let url = format!("redis://127.0.0.1:{}", server.port);
    let options = RedisOptions { key_prefix: "ev".into(), timeout, ..RedisOptions::default() };
    let store = RedisStore::connect(&url, options).await.expect("connect");
    (dir, server, url, store)
}

fn subjects(events: &[Event]) -> Vec<String> {
    events.iter().map(|e| e.subject.clone()).collect()
}

// One thread: the outbox's task cannot run until the test awaits, so the 200 appends below
// are all queued before it takes its first batch.
#[tokio::test]
async fn queued_events_are_appended_in_order_in_one_script_call() {
    let (_dir, server, _url, store) = private(Duration::from_secs(5)).await;

    let before = calls(server.port, "set");
    for i in 0..200 {
        store.append_events(vec![event(i)]).await.expect("queued");
    }
    // Read on the same node: waits for the queue, then sees all of it, in order.
    let read = store.read_events(0, 1000).await.expect("read");
    assert_eq!(subjects(&read), (0..200).map(|i| format!("user{i}")).collect::<Vec<_>>());
    assert!(read.windows(2).all(|w| w[0].cursor < w[1].cursor), "cursors increase");
    // One batch: one `append` run, whose high-water `SET` is the only SET here.
    assert_eq!(calls(server.port, "set") - before, 1, "200 queued events took more than one script call");
    assert_eq!(calls(server.port, "xadd"), 200);
    store.flush().await.expect("nothing left to flush");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_retried_after_its_reply_was_lost_is_appended_once() {
    // A short operation timeout, so that the first attempt gives up while Redis is stopped;
    // the script it sent stays in the socket and runs when Redis resumes.
    let (_dir, server, _url, store) = private(Duration::from_millis(300)).await;
    store.append_events(vec![event(0)]).await.expect("queued");
    store.flush().await.expect("appended");

    signal(server.child.id(), "-STOP");
    let resume = Resume(server.child.id());
    for i in 1..=20 {
        store.append_events(vec![event(i)]).await.expect("queued while Redis is stopped");
    }
    // Longer than the operation timeout and a first retry: the batch's attempts pile up in
    // the stopped server's socket.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(resume);
    store.flush().await.expect("appended once Redis is back");

    let read = store.read_events(0, 1000).await.expect("read");
    assert_eq!(
        subjects(&read),
        (0..=20).map(|i| format!("user{i}")).collect::<Vec<_>>(),
        "every event exactly once, in order"
    );
    assert!(calls(server.port, "evalsha") + calls(server.port, "eval") > 2, "the batch was sent more than once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outbox_refuses_instead_of_growing() {
    let (_dir, server, url, store) = private(Duration::from_millis(300)).await;
    signal(server.child.id(), "-STOP");
    let resume = Resume(server.child.id());
    // One call is taken whole while there is room, even past the bound of 65,536 (a tenant
    // revocation's events: refusing them all would lose them all)...
    let big: Vec<Event> = (0..70_000).map(event).collect();
    store.append_events(big).await.expect("one call taken whole");
    // ...then, with 70,000 waiting, nothing more until Redis takes them: refused as a failed
    // append (the engine logs and counts it), not queued.
    let e = store.append_events(vec![event(70_000)]).await.expect_err("refused while full");
    assert!(matches!(e, sessiond_core::StoreError::Unavailable { .. }), "{e:?}");
    drop(resume);
    store.flush().await.expect("appended once Redis is back");
    // Read with a patient node, in pages (65,536 events do not come back in 300 ms here).
    let reader = RedisStore::connect(
        &url,
        RedisOptions { key_prefix: "ev".into(), timeout: Duration::from_secs(10), ..RedisOptions::default() },
    )
    .await
    .expect("connect");
    let (mut after, mut total) = (0, 0);
    loop {
        let page = reader.read_events(after, 8192).await.expect("read");
        let Some(last) = page.last() else { break };
        after = last.cursor;
        total += page.len();
    }
    assert_eq!(total, 70_000, "every queued event appended once, the refused one not at all");
}
