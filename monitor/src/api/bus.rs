//! The event bus: the daemon publishes every event it writes (already a JSON line with its
//! `seq`); each subscriber has a bounded queue of its own. Publishing never waits: a full
//! queue counts the event as lost for that subscriber alone, and the next time its queue
//! has room it first gets one `lost` record (`reason: subscriber_queue`) with the count.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::filter::{Filter, Meta, SessionUids, Viewer};
use crate::event::{Body, Event, Lost, LostReason};

/// One event on the bus.
#[derive(Debug)]
pub struct Item {
    /// `None` for a subscriber's own `lost` record (not in the log: no seq).
    pub seq: Option<u64>,
    pub kind: String,
    /// The JSON line, without its newline.
    pub line: Bytes,
}

struct Sub {
    id: u64,
    tx: mpsc::Sender<Arc<Item>>,
    filter: Filter,
    viewer: Viewer,
    /// Events that did not fit, not told yet.
    dropped: Arc<AtomicU64>,
}

struct Inner {
    subs: Vec<Sub>,
    next_id: u64,
    uids: SessionUids,
}

/// The bus, shared by the daemon's output and the API server.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Mutex<Inner>>,
    /// The last seq written.
    seq: Arc<AtomicU64>,
    /// Each subscriber's queue length.
    queue: usize,
    /// Events lost in subscriber queues in total.
    lost: Arc<AtomicU64>,
}

/// A subscriber's end: its queue, removed from the bus when dropped.
pub struct Subscription {
    id: u64,
    pub rx: mpsc::Receiver<Arc<Item>>,
    dropped: Arc<AtomicU64>,
    bus: Bus,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.bus.inner.lock() {
            inner.subs.retain(|s| s.id != self.id);
        }
    }
}

impl Subscription {
    /// Events lost since the last call, to be told when the queue ran dry (a publisher
    /// that had no further event to put it before).
    pub fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::AcqRel)
    }
}

/// The `lost` record that tells a subscriber what its queue had no room for.
pub fn lost_item(count: u64) -> Arc<Item> {
    let event = Event::new(
        crate::host::clock::format_ts(chrono::Utc::now()),
        std::process::id(),
        "claude-monitor".into(),
        Body::Lost(Lost {
            count,
            reason: LostReason::SubscriberQueue,
        }),
    );
    Arc::new(Item {
        seq: None,
        kind: "lost".into(),
        line: Bytes::from(serde_json::to_vec(&event).unwrap_or_default()),
    })
}

impl Bus {
    pub fn new(queue: usize, last_seq: u64) -> Bus {
        Bus {
            inner: Arc::new(Mutex::new(Inner {
                subs: Vec::new(),
                next_id: 0,
                uids: SessionUids::default(),
            })),
            seq: Arc::new(AtomicU64::new(last_seq)),
            queue: queue.max(2),
            lost: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The last seq written.
    pub fn seq(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    pub fn subscribers(&self) -> usize {
        self.inner.lock().map_or(0, |i| i.subs.len())
    }

    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// A new subscriber. Subscribe before reading the history: what is published from now
    /// on is in the queue, what was published before is in the log files.
    pub fn subscribe(&self, filter: Filter, viewer: Viewer) -> Subscription {
        let (tx, rx) = mpsc::channel(self.queue);
        let dropped = Arc::new(AtomicU64::new(0));
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.next_id += 1;
        let id = inner.next_id;
        inner.subs.push(Sub {
            id,
            tx,
            filter,
            viewer,
            dropped: dropped.clone(),
        });
        Subscription {
            id,
            rx,
            dropped,
            bus: self.clone(),
        }
    }

    /// One event, written to the log as `line` with this `seq`. Never waits.
    pub fn publish(&self, seq: u64, mut meta: Meta, line: Bytes) {
        self.seq.store(seq, Ordering::Release);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.uids.resolve(&mut meta);
        if inner.subs.is_empty() {
            return;
        }
        let item = Arc::new(Item {
            seq: Some(seq),
            kind: meta.kind.clone(),
            line,
        });
        let mut closed = false;
        for sub in &inner.subs {
            if !sub.filter.matches(&meta) || !sub.viewer.sees(&meta) {
                continue;
            }
            let owed = sub.dropped.swap(0, Ordering::AcqRel);
            if owed > 0 && sub.tx.try_send(lost_item(owed)).is_err() {
                // Still no room: the record waits, one more event lost.
                sub.dropped.fetch_add(owed + 1, Ordering::AcqRel);
                self.lost.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            match sub.tx.try_send(item.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    sub.dropped.fetch_add(1, Ordering::AcqRel);
                    self.lost.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => closed = true,
            }
        }
        if closed {
            inner.subs.retain(|s| !s.tx.is_closed());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(kind: &str) -> Meta {
        Meta {
            kind: kind.into(),
            ..Meta::default()
        }
    }

    fn line(seq: u64, kind: &str) -> Bytes {
        Bytes::from(format!(r#"{{"v":1,"seq":{seq},"kind":"{kind}"}}"#))
    }

    /// A full queue loses events for its subscriber alone, which then gets one `lost`
    /// record, in the place of the gap, and stays subscribed.
    #[test]
    fn a_slow_subscriber_gets_its_lost_count() {
        let bus = Bus::new(4, 0);
        let mut slow = bus.subscribe(Filter::default(), Viewer::All);
        let mut fast = bus.subscribe(Filter::default(), Viewer::All);
        let mut exits = bus.subscribe(
            Filter {
                kinds: vec!["exit".into()],
                ..Filter::default()
            },
            Viewer::All,
        );
        let mut fast_seen = Vec::new();
        for seq in 1..=10 {
            let kind = if seq % 2 == 0 { "exit" } else { "fork" };
            bus.publish(seq, meta(kind), line(seq, kind));
            while let Ok(item) = fast.rx.try_recv() {
                fast_seen.push(item.seq);
            }
        }
        assert_eq!(fast_seen, (1..=10).map(Some).collect::<Vec<_>>());
        let mut got = Vec::new();
        while let Ok(item) = slow.rx.try_recv() {
            got.push(item.seq);
        }
        assert_eq!(got, [Some(1), Some(2), Some(3), Some(4)]);
        // 6 for the slow one, 1 for the exits' one (five exits, four places).
        assert_eq!(bus.lost(), 7);
        // Room again: the lost record first, then the event.
        bus.publish(11, meta("exit"), line(11, "exit"));
        let lost = slow.rx.try_recv().unwrap();
        assert_eq!(lost.seq, None);
        let v: serde_json::Value = serde_json::from_slice(&lost.line).unwrap();
        assert_eq!(
            (v["kind"].as_str(), v["count"].as_u64()),
            (Some("lost"), Some(6))
        );
        assert_eq!(v["reason"], "subscriber_queue");
        assert_eq!(slow.rx.try_recv().unwrap().seq, Some(11));
        assert_eq!(slow.take_dropped(), 0);
        let mut exit_seqs = Vec::new();
        while let Ok(item) = exits.rx.try_recv() {
            exit_seqs.push(item.seq);
        }
        // Still full at 11: its lost record waits, counting 11 too.
        assert_eq!(exit_seqs, [Some(2), Some(4), Some(6), Some(8)]);
        assert_eq!(exits.take_dropped(), 2);
        assert_eq!(bus.seq(), 11);
        drop(slow);
        assert_eq!(bus.subscribers(), 2);
    }
}
