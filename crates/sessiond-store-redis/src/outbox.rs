//! The event outbox: [`crate::RedisStore`]'s `append_events` queues the events here and
//! returns; one background task per store appends them in order, in batches, each batch one
//! idempotent script call (decision D28).
//!
//! Why: every session change emits its events right after the change, and awaiting the append
//! made each change two round trips (a renewal: the `renew_copy` script, then the `append`
//! script). Queued, the request waits for its change only, and the events of concurrent
//! requests share one script call.
//!
//! What it keeps:
//! - order: one queue, one task, batches taken from the front; a batch that fails is retried
//!   (with backoff, for up to [`GIVE_UP_AFTER`]) before the next one is taken;
//! - no duplicates: each batch carries its first and last sequence number, and the `append`
//!   script keeps this node's high-water mark (the last sequence number appended, under a key
//!   named by the outbox's random nonce) in the same call: a batch at or below it appends
//!   nothing, so a batch that ran but whose reply was lost is not appended again when it is
//!   retried, and a stale attempt of an earlier batch cannot land after a later one;
//! - read-your-writes on one node: [`Outbox::settled`] lets `read_events` wait until every
//!   event queued before it was appended (or given up);
//! - a bound: once [`MAX_QUEUED`] events wait, `append_events` fails (the engine logs and
//!   counts that, as for any failed append) instead of growing memory while Redis is away.
//!   One call is taken whole while there is room, even past the bound: a tenant revocation's
//!   events are already in memory, and refusing them all would lose them all.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{watch, Notify};

/// Events waiting (queued, or taken by the task and not yet appended) from which further
/// pushes are refused until the task catches up.
pub(crate) const MAX_QUEUED: usize = 65_536;

/// Events per script call at most.
pub(crate) const MAX_BATCH: usize = 256;

/// How long a batch is retried while Redis fails it before its events are given up (logged
/// and counted in `sessiond_store_events_lost_total`).
pub(crate) const GIVE_UP_AFTER: Duration = Duration::from_secs(30);

/// The queue, its sequence numbers and the task's wake-up.
#[derive(Debug)]
pub(crate) struct Outbox {
    state: Mutex<State>,
    wake: Notify,
    /// The sequence number up to which every queued event was appended or given up.
    settled: watch::Sender<u64>,
    /// Set when the store is dropped: the task stops.
    closed: AtomicBool,
    /// Random, per outbox: names this node's high-water mark in Redis, unique across nodes and
    /// restarts.
    nonce: String,
}

#[derive(Debug, Default)]
struct State {
    /// `(sequence number, event as JSON)`, oldest first.
    queue: VecDeque<(u64, String)>,
    /// The last sequence number handed out.
    last: u64,
}

/// The queue is full: the events were not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Full;

impl Default for Outbox {
    fn default() -> Self {
        Self {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            settled: watch::channel(0).0,
            closed: AtomicBool::new(false),
            nonce: sessiond_core::token::os_random::<12>().iter().map(|b| format!("{b:02x}")).collect(),
        }
    }
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `events` (all of them) behind everything queued before and wakes the task;
    /// refused when [`MAX_QUEUED`] events already wait.
    pub(crate) fn push(&self, events: Vec<String>) -> Result<(), Full> {
        {
            let mut st = self.lock();
            if self.waiting_locked(&st) >= MAX_QUEUED as u64 {
                return Err(Full);
            }
            for e in events {
                st.last += 1;
                let seq = st.last;
                st.queue.push_back((seq, e));
            }
        }
        // A permit is stored when the task is not waiting, so no wake-up is lost.
        self.wake.notify_one();
        Ok(())
    }

    /// Waits until [`Outbox::push`] was called since the last wake-up (or at once if it was).
    pub(crate) async fn wait(&self) {
        self.wake.notified().await;
    }

    /// Takes up to `max` events from the front.
    pub(crate) fn take(&self, max: usize) -> Vec<(u64, String)> {
        let mut st = self.lock();
        let n = st.queue.len().min(max);
        st.queue.drain(..n).collect()
    }

    /// Queued + taken by the task but not yet appended (or given up).
    fn waiting_locked(&self, st: &State) -> u64 {
        st.last - *self.settled.borrow()
    }

    /// Events queued and not yet appended or given up.
    pub(crate) fn waiting(&self) -> u64 {
        self.waiting_locked(&self.lock())
    }

    /// The random name of this outbox (of this node's high-water mark in Redis).
    pub(crate) fn nonce(&self) -> &str {
        &self.nonce
    }

    /// Stops the task (the store is gone).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Whether [`Outbox::close`] was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Records that every event up to `seq` was appended or given up.
    pub(crate) fn settle(&self, seq: u64) {
        self.settled.send_if_modified(|s| {
            let moved = seq > *s;
            if moved {
                *s = seq;
            }
            moved
        });
    }

    /// The sequence number of the last event queued so far.
    pub(crate) fn last_queued(&self) -> u64 {
        self.lock().last
    }

    /// Number of events queued (not yet taken by the task).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Waits until every event up to `seq` was appended or given up.
    pub(crate) async fn settled(&self, seq: u64) {
        let mut rx = self.settled.subscribe();
        // The sender lives as long as `self`, which the caller borrows: no error can occur.
        let _ = rx.wait_for(|s| *s >= seq).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(from: usize, n: usize) -> Vec<String> {
        (from..from + n).map(|i| format!("e{i}")).collect()
    }

    #[test]
    fn batches_come_out_in_order_with_increasing_numbers() {
        let o = Outbox::default();
        o.push(events(0, 3)).expect("room");
        o.push(events(3, 2)).expect("room");
        let first = o.take(2);
        assert_eq!(first, vec![(1, "e0".to_owned()), (2, "e1".to_owned())]);
        o.push(events(5, 1)).expect("room");
        let rest = o.take(100);
        assert_eq!(rest.iter().map(|(n, _)| *n).collect::<Vec<_>>(), vec![3, 4, 5, 6]);
        assert_eq!(rest.into_iter().map(|(_, e)| e).collect::<Vec<_>>(), events(2, 4));
        assert_eq!(o.len(), 0);
        assert_eq!(o.last_queued(), 6);
        // Nonces differ between outboxes (nodes, restarts).
        assert_ne!(o.nonce(), Outbox::default().nonce());
    }

    #[test]
    fn a_full_queue_refuses_pushes_and_one_push_is_taken_whole() {
        let o = Outbox::default();
        o.push(events(0, MAX_QUEUED - 1)).expect("room");
        // One more slot: a push of two is taken whole (past the bound), then nothing more.
        o.push(events(0, 2)).expect("room for one push");
        assert_eq!(o.len(), MAX_QUEUED + 1);
        assert_eq!(o.push(events(0, 1)), Err(Full));
        assert_eq!(o.len(), MAX_QUEUED + 1, "nothing of the refused push was queued");
        // Taken by the task is still waiting; appended is not.
        let batch = o.take(MAX_BATCH);
        assert_eq!(o.waiting(), MAX_QUEUED as u64 + 1);
        assert_eq!(o.push(events(0, 1)), Err(Full));
        o.settle(batch.last().expect("a batch").0);
        o.push(events(0, 1)).expect("room again");
        // A single push larger than the bound into an empty queue is taken whole.
        let big = Outbox::default();
        big.push(events(0, MAX_QUEUED + 10)).expect("taken whole");
        assert_eq!(big.push(events(0, 1)), Err(Full));
    }

    #[tokio::test]
    async fn settled_waits_for_the_sequence_number() {
        let o = std::sync::Arc::new(Outbox::default());
        o.push(events(0, 3)).expect("room");
        let waiter = {
            let o = o.clone();
            tokio::spawn(async move { o.settled(3).await })
        };
        o.settle(2);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "settled(3) returned at 2");
        o.settle(1); // never moves back
        o.settle(3);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.expect("settled").expect("task");
        // Already settled: at once.
        o.settled(2).await;
    }
}
