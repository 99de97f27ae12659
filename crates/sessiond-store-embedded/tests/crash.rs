//! kill -9 test with a real process. The test binary re-executes itself as a child (selected
//! by the `SESSIOND_CRASH_CHILD_DIR` variable) that serves writes against the store and prints
//! each acknowledged write AFTER it returned `Ok`; the parent kills it with SIGKILL at a
//! random moment, reopens the store and checks that every acknowledged write is there, that
//! nothing deleted came back, and that SQLite's integrity check passes. 20 rounds by default;
//! `SESSIOND_CRASH_ROUNDS=N` for more.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use sessiond_core::id::SessionId;
use sessiond_core::policy::LimitAction;
use sessiond_core::record::RetiredToken;
use sessiond_core::store::{CreateOutcome, LimitRule, SessionStore, UpdateOutcome};
use sessiond_core::time::UnixMs;
use sessiond_core::token::TokenHash;
use sessiond_store_embedded::{EmbeddedOptions, EmbeddedStore, DB_FILE};

const CHILD_DIR: &str = "SESSIOND_CRASH_CHILD_DIR";
const CHILD_ROUND: &str = "SESSIOND_CRASH_CHILD_ROUND";
const TASKS: usize = 6;
const T0: UnixMs = UnixMs(1_700_000_000_000);

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("random");
    b
}

fn rand_below(n: u32) -> u32 {
    u32::from_le_bytes(random::<4>()) % n.max(1)
}

/// The child's entry point; a no-op unless started by the parent.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let round: u32 = std::env::var(CHILD_ROUND).ok().and_then(|r| r.parse().ok()).unwrap_or(0);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async move {
        let opts = EmbeddedOptions::default().with_renewal_flush_interval(Duration::from_millis(20));
        let store = Arc::new(EmbeddedStore::open(&dir, opts).expect("child open"));
        println!("READY");
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let s = store.clone();
            tasks.push(tokio::spawn(async move { child_task(s, round, t).await }));
        }
        for t in tasks {
            t.await.expect("join");
        }
    });
}

async fn child_task(store: Arc<EmbeddedStore>, round: u32, task: usize) {
    let mut live: Vec<sessiond_core::record::SessionRecord> = Vec::new();
    let limit = Some(LimitRule { max: 4, action: LimitAction::EvictOldest });
    let mut now = T0.0;
    loop {
        now += 1;
        let subject = format!("r{round}-w{task}-{}", rand_below(3));
        let pick = rand_below(100);
        if pick < 35 || live.is_empty() {
            let r = common::record(random(), random(), "crash", &subject, UnixMs(now));
            println!("I {task} C {subject}");
            match store.create(r.clone(), limit, UnixMs(now)).await.expect("create") {
                CreateOutcome::Created { evicted } => {
                    for e in &evicted {
                        println!("A {task} D {}", e.id);
                    }
                    live.retain(|l| !evicted.iter().any(|e| e.id == l.id));
                    println!("A {task} C {} {} {subject}", r.id, r.token_hash.to_hex());
                    live.push(r);
                }
                other => panic!("unexpected {other:?}"),
            }
        } else if pick < 60 {
            let i = rand_below(live.len() as u32) as usize;
            let mut next = live[i].clone();
            next.retired.insert(0, RetiredToken { hash: next.token_hash, grace_until: UnixMs(now), successor: None });
            next.retired.truncate(4);
            next.token_hash = TokenHash(random());
            next.version += 1;
            println!("I {task} U {}", next.id);
            match store.update(next.clone(), live[i].version).await.expect("update") {
                UpdateOutcome::Updated => {
                    println!("A {task} U {} {} {}", next.id, next.version, next.token_hash.to_hex());
                    live[i] = next;
                }
                other => panic!("unexpected {other:?}"),
            }
        } else if pick < 75 {
            let r = live.swap_remove(rand_below(live.len() as u32) as usize);
            println!("I {task} D {}", r.id);
            assert!(store.delete(&r.id).await.expect("delete").is_some());
            println!("A {task} D {}", r.id);
        } else if pick < 80 {
            println!("I {task} E {subject}");
            let e = store.bump_epoch("crash", &subject).await.expect("bump");
            println!("A {task} E {subject} {e}");
        } else if pick < 84 {
            println!("I {task} S {subject}");
            let gone = store.delete_subject("crash", &subject, None).await.expect("delete subject");
            for g in &gone {
                println!("A {task} D {}", g.id);
            }
            live.retain(|l| l.subject != subject);
            println!("A {task} S");
        } else {
            let r = &live[rand_below(live.len() as u32) as usize];
            store
                .renew(r, UnixMs(now), UnixMs(r.idle_expires_at.0 + now - T0.0), Some("203.0.113.9"))
                .await
                .expect("renew");
        }
    }
}

#[derive(Debug, Clone)]
enum Intent {
    Create(String),
    Update(String),
    Delete(String),
    Epoch(String),
    DeleteSubject(String),
}

#[derive(Debug, Default)]
struct Model {
    /// Acknowledged live sessions: id → (subject, version, current token hash).
    live: HashMap<String, (String, u64, String)>,
    /// Acknowledged deletions: id → every token hash it had.
    deleted: HashMap<String, Vec<String>>,
    hashes: HashMap<String, Vec<String>>,
    epochs: HashMap<String, u64>,
    acks: usize,
}

impl Model {
    fn apply(&mut self, line: &str, doubt: &mut HashMap<String, Intent>) {
        let f: Vec<&str> = line.split(' ').collect();
        match f.as_slice() {
            ["I", task, "C", s] => drop(doubt.insert(task.to_string(), Intent::Create(s.to_string()))),
            ["I", task, "U", id] => drop(doubt.insert(task.to_string(), Intent::Update(id.to_string()))),
            ["I", task, "D", id] => drop(doubt.insert(task.to_string(), Intent::Delete(id.to_string()))),
            ["I", task, "E", s] => drop(doubt.insert(task.to_string(), Intent::Epoch(s.to_string()))),
            ["I", task, "S", s] => drop(doubt.insert(task.to_string(), Intent::DeleteSubject(s.to_string()))),
            ["A", task, "C", id, hash, subject] => {
                self.acks += 1;
                self.live.insert(id.to_string(), (subject.to_string(), 0, hash.to_string()));
                self.hashes.entry(id.to_string()).or_default().push(hash.to_string());
                doubt.remove(*task);
            }
            ["A", task, "U", id, version, hash] => {
                self.acks += 1;
                let v: u64 = version.parse().expect("version");
                let e = self.live.get_mut(*id).expect("update of a known session");
                e.1 = v;
                e.2 = hash.to_string();
                self.hashes.entry(id.to_string()).or_default().push(hash.to_string());
                doubt.remove(*task);
            }
            ["A", task, "D", id] => {
                self.acks += 1;
                self.live.remove(*id);
                self.deleted.insert(id.to_string(), self.hashes.get(*id).cloned().unwrap_or_default());
                if matches!(doubt.get(*task), Some(Intent::Delete(_))) {
                    doubt.remove(*task);
                }
            }
            ["A", task, "E", s, epoch] => {
                self.acks += 1;
                let e: u64 = epoch.parse().expect("epoch");
                let cur = self.epochs.entry(s.to_string()).or_default();
                *cur = (*cur).max(e);
                doubt.remove(*task);
            }
            ["A", task, "S"] => drop(doubt.remove(*task)),
            _ => {}
        }
    }

    /// Checks the reopened store against the acknowledged writes, then adopts the outcome of
    /// the writes that were in flight when the child died.
    async fn verify(&mut self, store: &EmbeddedStore, doubt: &HashMap<String, Intent>) {
        let mut maybe_gone = HashSet::new();
        let mut maybe_changed = HashSet::new();
        let mut maybe_bumped = HashSet::new();
        for i in doubt.values() {
            match i {
                Intent::Create(s) | Intent::DeleteSubject(s) => {
                    maybe_gone.extend(self.live.iter().filter(|(_, v)| v.0 == *s).map(|(k, _)| k.clone()))
                }
                Intent::Update(id) => drop(maybe_changed.insert(id.clone())),
                Intent::Delete(id) => drop(maybe_gone.insert(id.clone())),
                Intent::Epoch(s) => drop(maybe_bumped.insert(s.clone())),
            }
        }
        for (id, hashes) in &self.deleted {
            let sid: SessionId = id.parse().expect("id");
            assert!(store.find_by_id(&sid).await.expect("find").is_none(), "deleted session {id} came back");
            for h in hashes {
                let h = TokenHash::from_hex(h).expect("hash");
                assert!(store.find_by_token(&h).await.expect("find").is_none(), "a deleted session's token resolves");
            }
        }
        let mut gone = Vec::new();
        for (id, (subject, version, hash)) in self.live.iter_mut() {
            let sid: SessionId = id.parse().expect("id");
            let Some(found) = store.find_by_id(&sid).await.expect("find") else {
                assert!(maybe_gone.contains(id), "acknowledged session {id} of {subject} was lost");
                gone.push(id.clone());
                continue;
            };
            let r = &found.record;
            if r.version == *version {
                assert_eq!(r.token_hash.to_hex(), *hash, "acknowledged rotation of {id} was lost");
            } else {
                assert!(
                    r.version == *version + 1 && maybe_changed.contains(id),
                    "{id}: stored version {} but acknowledged {version}",
                    r.version
                );
                *version = r.version;
                *hash = r.token_hash.to_hex();
                self.hashes.entry(id.clone()).or_default().push(hash.clone());
            }
            let by_token = store.find_by_token(&r.token_hash).await.expect("find").expect("indexed by its token");
            assert_eq!(by_token.record.id, sid);
        }
        for id in gone {
            self.live.remove(&id);
            self.deleted.insert(id.clone(), self.hashes.get(&id).cloned().unwrap_or_default());
        }
        for (s, acked) in self.epochs.iter_mut() {
            let stored = store.subject_epoch("crash", s).await.expect("epoch");
            assert!(stored >= *acked, "epoch of {s}: stored {stored} < acknowledged {acked}");
            assert!(stored == *acked || maybe_bumped.contains(s), "epoch of {s} moved without a request");
            *acked = stored;
        }
        for s in maybe_bumped {
            let stored = store.subject_epoch("crash", &s).await.expect("epoch");
            self.epochs.insert(s, stored);
        }
    }
}

#[test]
fn kill_9_loses_no_acknowledged_write() {
    let rounds: u32 = std::env::var("SESSIOND_CRASH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(20);
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("store");
    let exe = std::env::current_exe().expect("exe");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut model = Model::default();
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, &data)
            .env(CHILD_ROUND, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        loop {
            line.clear();
            assert!(out.read_line(&mut line).expect("read") > 0, "the child died before it was ready");
            // libtest prints "test crash_child ... " without a newline just before.
            if line.trim_end().ends_with("READY") {
                break;
            }
        }
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            let mut buf = Vec::new();
            // Only complete lines count: a line cut by the kill was never fully acknowledged.
            while out.read_until(b'\n', &mut buf).unwrap_or(0) > 0 {
                if buf.ends_with(b"\n") {
                    lines.push(String::from_utf8_lossy(&buf[..buf.len() - 1]).into_owned());
                }
                buf.clear();
            }
            lines
        });
        std::thread::sleep(Duration::from_millis(20 + u64::from(rand_below(400))));
        child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
        child.wait().expect("wait");
        let lines = reader.join().expect("reader");
        let mut doubt = HashMap::new();
        for l in &lines {
            model.apply(l, &mut doubt);
        }
        {
            let conn = rusqlite::Connection::open(data.join(DB_FILE)).expect("conn");
            let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("integrity");
            assert_eq!(ok, "ok", "round {round}: integrity check");
        }
        let store = EmbeddedStore::open(&data, EmbeddedOptions::default()).expect("reopen after kill -9");
        rt.block_on(model.verify(&store, &doubt));
        drop(store);
    }
    eprintln!(
        "{rounds} kill -9 rounds: {} acknowledged writes, {} live and {} deleted sessions verified",
        model.acks,
        model.live.len(),
        model.deleted.len()
    );
    assert!(model.acks > rounds as usize, "the child acknowledged too few writes to test anything");
}
