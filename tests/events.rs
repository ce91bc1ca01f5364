//! The worker's `on_event` hook and its `tracing` spans, through real
//! workers. Time is a `ManualClock`; handlers and hooks report over
//! channels, so nothing sleeps and hopes.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{copy_dir, secs, t0, Fixture};
use dueq::{
    Error, Event, EventKind, Handlers, JobError, ManualClock, Repeat, Retry, Status, Store, Worker,
};

const WAIT: Duration = Duration::from_secs(10);

/// A hook that forwards every event to the returned receiver.
fn recorder() -> (
    impl Fn(&Event) + Send + Sync + 'static,
    mpsc::Receiver<Event>,
) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    (
        move |event: &Event| {
            let _ = tx.lock().unwrap().send(event.clone());
        },
        rx,
    )
}

/// The next `n` events, which must all be about `job`.
fn next_events(rx: &mpsc::Receiver<Event>, job: &str, n: usize) -> Vec<EventKind> {
    (0..n)
        .map(|i| {
            let event = rx
                .recv_timeout(WAIT)
                .unwrap_or_else(|e| panic!("event {i} of {n} did not come: {e}"));
            assert_eq!(event.job_id, job, "{event:?}");
            assert_eq!(event.queue, "default", "{event:?}");
            event.kind
        })
        .collect()
}

fn started(handler: &str, attempt: u32) -> EventKind {
    EventKind::Started {
        handler: handler.to_owned(),
        attempt,
    }
}

#[test]
fn a_job_that_fails_once_then_succeeds_reports_each_step_in_order() {
    let f = Fixture::new();
    let mut h = Handlers::new();
    h.register_with_context("flaky", |ctx, _: ()| -> Result<u32, JobError> {
        if ctx.attempt() == 1 {
            return Err(JobError::new("boom"));
        }
        Ok(ctx.attempt())
    });
    let (hook, rx) = recorder();
    let worker = Worker::builder(&f.store, h)
        .threads(1)
        .on_event(hook)
        .start()
        .unwrap();
    let job = f
        .store
        .queue("default")
        .job("flaky", &())
        .retry(Retry::max(1))
        .enqueue()
        .unwrap();
    assert_eq!(job.wait(WAIT).unwrap(), Status::Finished);
    let stats = worker.shutdown(WAIT).unwrap();
    assert_eq!(
        next_events(&rx, job.id(), 6),
        [
            EventKind::Enqueued,
            started("flaky", 1),
            EventKind::Failed {
                attempt: 1,
                error: "boom".into(),
                will_retry: true
            },
            EventKind::Retried { attempt: 1 },
            started("flaky", 2),
            EventKind::Succeeded { attempt: 2 },
        ]
    );
    assert!(rx.try_recv().is_err(), "no more events");
    assert_eq!((stats.events_dropped, stats.hook_panics), (0, 0));
}

#[test]
fn a_last_failure_says_it_will_not_be_retried_and_events_carry_the_store_time() {
    let f = Fixture::new();
    let mut h = Handlers::new();
    h.register("fail", |_: ()| -> Result<(), JobError> {
        Err(JobError::new("no"))
    });
    let (hook, rx) = recorder();
    let worker = Worker::builder(&f.store, h)
        .threads(1)
        .on_event(hook)
        .start()
        .unwrap();
    let job = f.store.queue("default").enqueue("fail", &()).unwrap();
    assert_eq!(job.wait(WAIT).unwrap(), Status::Failed);
    worker.shutdown(WAIT).unwrap();
    let events: Vec<Event> = rx.try_iter().collect();
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind.clone()).collect();
    assert_eq!(
        kinds,
        [
            EventKind::Enqueued,
            started("fail", 1),
            EventKind::Failed {
                attempt: 1,
                error: "no".into(),
                will_retry: false
            },
        ]
    );
    assert!(events.iter().all(|e| e.at == t0()), "{events:?}");
}

#[test]
fn a_timeout_reports_timed_out_then_the_failure() {
    let f = Fixture::new();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let mut h = Handlers::new();
    h.register("stuck", move |_: ()| -> Result<(), JobError> {
        started_tx.send(()).unwrap();
        release_rx.lock().unwrap().recv().unwrap();
        Ok(())
    });
    let (hook, rx) = recorder();
    let worker = Worker::builder(&f.store, h)
        .threads(1)
        .on_event(hook)
        .start()
        .unwrap();
    let job = f
        .store
        .queue("default")
        .job("stuck", &())
        .timeout(secs(5))
        .enqueue()
        .unwrap();
    started_rx.recv_timeout(WAIT).unwrap();
    f.advance(secs(6));
    assert_eq!(job.wait(WAIT).unwrap(), Status::Failed);
    let error = job.error().unwrap().unwrap();
    assert!(error.starts_with("timeout"), "{error}");
    release_tx.send(()).unwrap();
    worker.shutdown(WAIT).unwrap();
    assert_eq!(
        next_events(&rx, job.id(), 4),
        [
            EventKind::Enqueued,
            started("stuck", 1),
            EventKind::TimedOut { attempt: 1 },
            EventKind::Failed {
                attempt: 1,
                error,
                will_retry: false
            },
        ]
    );
    assert!(rx.try_recv().is_err(), "the late outcome reports nothing");
}

#[test]
fn a_stopped_job_reports_stopped_and_no_retry() {
    let f = Fixture::new();
    let mut h = Handlers::new();
    h.register_with_context("wait_stop", |ctx, _: ()| -> Result<(), JobError> {
        while !ctx.should_stop() {
            std::thread::sleep(Duration::from_millis(1));
        }
        ctx.check()?;
        Ok(())
    });
    let (hook, rx) = recorder();
    let worker = Worker::builder(&f.store, h)
        .threads(1)
        .on_event(hook)
        .start()
        .unwrap();
    let job = f
        .store
        .queue("default")
        .job("wait_stop", &())
        .retry(Retry::max(3))
        .timeout(Duration::MAX)
        .enqueue()
        .unwrap();
    // The Started event is sent when the run begins: then `stop` finds the
    // job started.
    assert_eq!(
        next_events(&rx, job.id(), 2),
        [EventKind::Enqueued, started("wait_stop", 1)]
    );
    job.stop().unwrap();
    assert_eq!(job.wait(WAIT).unwrap(), Status::Stopped);
    let error = job.error().unwrap().unwrap();
    worker.shutdown(WAIT).unwrap();
    assert_eq!(
        next_events(&rx, job.id(), 1),
        [EventKind::Stopped { attempt: 1, error }]
    );
    assert!(rx.try_recv().is_err());
}

#[test]
fn a_job_whose_ttl_ran_out_reports_canceled() {
    let f = Fixture::new();
    let job = f
        .store
        .queue("default")
        .job("ok", &())
        .ttl(secs(5))
        .enqueue()
        .unwrap();
    f.advance(secs(10));
    let mut h = Handlers::new();
    h.register("ok", |_: ()| -> Result<(), JobError> { Ok(()) });
    let (hook, rx) = recorder();
    let stats = Worker::builder(&f.store, h)
        .threads(1)
        .on_event(hook)
        .burst()
        .unwrap();
    assert_eq!(stats.expired, 1);
    assert_eq!(job.status().unwrap(), Status::Canceled);
    let kinds = next_events(&rx, job.id(), 1);
    assert!(
        matches!(&kinds[..], [EventKind::Canceled { reason }] if reason.starts_with("expired")),
        "{kinds:?}"
    );
}

#[test]
fn a_repeating_job_reports_its_next_run_as_enqueued() {
    let f = Fixture::new();
    let mut h = Handlers::new();
    h.register("ok", |_: ()| -> Result<(), JobError> { Ok(()) });
    let (hook, rx) = recorder();
    let job = f
        .store
        .queue("default")
        .job("ok", &())
        .repeat(Repeat::times(1))
        .enqueue()
        .unwrap();
    let worker = Worker::builder(&f.store, h)
        .threads(1)
        .on_event(hook)
        .start()
        .unwrap();
    assert_eq!(
        next_events(&rx, job.id(), 5),
        [
            started("ok", 1),
            EventKind::Succeeded { attempt: 1 },
            EventKind::Enqueued,
            started("ok", 2),
            EventKind::Succeeded { attempt: 2 },
        ]
    );
    assert_eq!(job.status().unwrap(), Status::Finished);
    worker.shutdown(WAIT).unwrap();
}

#[test]
fn a_lapsed_lease_found_by_the_worker_reports_abandoned_then_the_retry() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    let open = |name: &str| {
        Store::builder(dir.path().join(name))
            .clock(clock.clone())
            .open()
            .unwrap()
    };
    // A run going on in store `a` is exported; imported into `b`, it is a
    // started job whose lease lapsed with no run behind it.
    let a = open("a");
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let mut h = Handlers::new();
    h.register("block", move |_: ()| -> Result<(), JobError> {
        started_tx.send(()).unwrap();
        release_rx.lock().unwrap().recv().unwrap();
        Ok(())
    });
    let job = a
        .queue("default")
        .job("block", &())
        .id("running")
        .retry(Retry::max(1))
        .enqueue()
        .unwrap();
    let worker = Worker::builder(&a, h).threads(1).start().unwrap();
    started_rx.recv_timeout(WAIT).unwrap();
    let mut exported = Vec::new();
    a.export(&mut exported).unwrap();
    release_tx.send(()).unwrap();
    worker.shutdown(WAIT).unwrap();

    let b = open("b");
    b.import(&exported[..]).unwrap();
    let mut h = Handlers::new();
    h.register("block", |_: ()| -> Result<(), JobError> { Ok(()) });
    let (hook, rx) = recorder();
    let worker = Worker::builder(&b, h)
        .threads(1)
        .on_event(hook)
        .start()
        .unwrap();
    let imported = b.job(job.id()).unwrap().unwrap();
    assert_eq!(imported.wait(WAIT).unwrap(), Status::Finished);
    let stats = worker.shutdown(WAIT).unwrap();
    assert_eq!(stats.abandoned, 1);
    assert_eq!(
        next_events(&rx, job.id(), 4),
        [
            EventKind::Abandoned {
                attempt: 1,
                will_retry: true
            },
            EventKind::Retried { attempt: 1 },
            started("block", 2),
            EventKind::Succeeded { attempt: 2 },
        ]
    );
}

#[test]
fn a_hook_that_blocks_forever_does_not_stall_the_worker() {
    let f = Fixture::new();
    let mut h = Handlers::new();
    h.register("ok", |n: u32| -> Result<u32, JobError> { Ok(n) });
    let (in_hook_tx, in_hook_rx) = mpsc::channel::<()>();
    let in_hook_tx = Mutex::new(in_hook_tx);
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    let worker = Worker::builder(&f.store, h)
        .threads(2)
        .event_buffer(1)
        .on_event(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            let _ = in_hook_tx.lock().unwrap().send(());
            // Blocks until the test ends.
            let _ = release_rx.lock().unwrap().recv();
        })
        .start()
        .unwrap();
    let q = f.store.queue("default");
    let first = q.enqueue("ok", &0).unwrap();
    // The hook is stuck in its first call from here on.
    in_hook_rx.recv_timeout(WAIT).unwrap();
    let jobs = q.enqueue_many((1..=20).map(|i| q.job("ok", &i))).unwrap();
    for job in std::iter::once(&first).chain(&jobs) {
        assert_eq!(job.wait(WAIT).unwrap(), Status::Finished, "{}", job.id());
    }
    // The hook is still stuck: shutdown gives up on it at its deadline.
    let stats = worker.shutdown(Duration::from_millis(200)).unwrap();
    assert_eq!(stats.succeeded, 21);
    // 21 jobs make 42 events: one is in the hook, at most one waits in the
    // buffer, and every other one was dropped.
    assert!(stats.events_dropped >= 40, "{stats:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    drop(release_tx);
}

#[test]
fn a_panicking_hook_is_survived_and_counted() {
    let f = Fixture::new();
    let mut h = Handlers::new();
    h.register("ok", |n: u32| -> Result<u32, JobError> { Ok(n) });
    let (tx, rx) = mpsc::channel::<(String, EventKind)>();
    let tx = Mutex::new(tx);
    let worker = Worker::builder(&f.store, h)
        .threads(1)
        .on_event(move |event| {
            if matches!(event.kind, EventKind::Started { .. }) {
                panic!("the hook panicked on purpose");
            }
            tx.lock()
                .unwrap()
                .send((event.job_id.clone(), event.kind.clone()))
                .unwrap();
        })
        .start()
        .unwrap();
    let q = f.store.queue("default");
    let a = q.enqueue("ok", &1).unwrap();
    assert_eq!(a.wait(WAIT).unwrap(), Status::Finished);
    let b = q.enqueue("ok", &2).unwrap();
    assert_eq!(b.wait(WAIT).unwrap(), Status::Finished);
    let stats = worker.shutdown(WAIT).unwrap();
    assert_eq!(stats.hook_panics, 2);
    assert_eq!(stats.succeeded, 2);
    // Per job, in order; the hook's thread may deliver one job's success
    // after the next job's enqueue (events cross threads).
    let events: Vec<(String, EventKind)> = rx.try_iter().collect();
    for job in [&a, &b] {
        let kinds: Vec<&EventKind> = events
            .iter()
            .filter(|(id, _)| id == job.id())
            .map(|(_, k)| k)
            .collect();
        assert_eq!(
            kinds,
            [&EventKind::Enqueued, &EventKind::Succeeded { attempt: 1 }],
            "{events:?}"
        );
    }
    assert_eq!(events.len(), 4, "{events:?}");
}

#[test]
fn a_zero_event_buffer_is_refused() {
    let f = Fixture::new();
    let err = Worker::builder(&f.store, Handlers::new())
        .event_buffer(0)
        .on_event(|_| {})
        .start()
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidArgument {
                what: "event_buffer",
                ..
            }
        ),
        "{err:?}"
    );
}

// ---- tracing ---------------------------------------------------------------

/// A span or an event the test subscriber saw.
#[derive(Debug, Clone)]
struct Seen {
    name: String,
    level: tracing::Level,
    fields: BTreeMap<String, String>,
    /// For an event: the fields of the span it happened in.
    span: Option<BTreeMap<String, String>>,
}

/// A minimal subscriber that records spans (with their fields) and events
/// (with their span's fields), from every thread.
#[derive(Default)]
struct Recorder {
    next_id: AtomicU64,
    spans: Mutex<HashMap<u64, Seen>>,
    seen: Mutex<Vec<Seen>>,
}

thread_local! {
    static CURRENT: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl tracing::Subscriber for &'static Recorder {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, attrs: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst) + 1;
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let seen = Seen {
            name: attrs.metadata().name().to_owned(),
            level: *attrs.metadata().level(),
            fields,
            span: None,
        };
        self.seen.lock().unwrap().push(seen.clone());
        self.spans.lock().unwrap().insert(id, seen);
        tracing::span::Id::from_u64(id)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let span = CURRENT.with(|c| c.borrow().last().copied()).and_then(|id| {
            self.spans
                .lock()
                .unwrap()
                .get(&id)
                .map(|s| s.fields.clone())
        });
        self.seen.lock().unwrap().push(Seen {
            name: event.metadata().name().to_owned(),
            level: *event.metadata().level(),
            fields,
            span,
        });
    }

    fn enter(&self, span: &tracing::span::Id) {
        CURRENT.with(|c| c.borrow_mut().push(span.into_u64()));
    }

    fn exit(&self, _: &tracing::span::Id) {
        CURRENT.with(|c| c.borrow_mut().pop());
    }
}

/// The process-wide recorder (the worker's threads need a global
/// subscriber). Other tests of this file are recorded too; assertions
/// look only at their own job ids.
fn recorder_subscriber() -> &'static Recorder {
    static RECORDER: OnceLock<&'static Recorder> = OnceLock::new();
    RECORDER.get_or_init(|| {
        let recorder: &'static Recorder = Box::leak(Box::default());
        tracing::subscriber::set_global_default(recorder).unwrap();
        recorder
    })
}

#[test]
fn enqueues_and_runs_are_traced_with_the_job_fields() {
    let recorder = recorder_subscriber();
    let f = Fixture::new();
    let mut h = Handlers::new();
    h.register("traced_fail", |_: ()| -> Result<(), JobError> {
        Err(JobError::new("traced boom"))
    });
    let q = f.store.queue("traced");
    let job = q.enqueue("traced_fail", &()).unwrap();
    let stats = Worker::builder(&f.store, h)
        .queues(["traced"])
        .threads(1)
        .burst()
        .unwrap();
    assert_eq!(stats.failed, 1);
    let seen = recorder.seen.lock().unwrap().clone();
    let id = job.id().to_owned();

    let enqueue = seen
        .iter()
        .find(|s| {
            s.name == "dueq.enqueue" && s.fields.get("queue").map(String::as_str) == Some("traced")
        })
        .unwrap_or_else(|| panic!("no dueq.enqueue span: {seen:#?}"));
    assert_eq!(enqueue.level, tracing::Level::INFO);
    assert_eq!(enqueue.fields["jobs"], "1");
    assert!(
        seen.iter().any(|s| s.level == tracing::Level::DEBUG
            && s.fields.get("job_id") == Some(&id)
            && s.span.as_ref().is_some_and(|f| f["queue"] == "traced")),
        "no enqueued event for {id} in the enqueue span: {seen:#?}"
    );

    let job_span = seen
        .iter()
        .find(|s| s.name == "dueq.job" && s.fields.get("job_id") == Some(&id))
        .unwrap_or_else(|| panic!("no dueq.job span for {id}: {seen:#?}"));
    assert_eq!(job_span.level, tracing::Level::INFO);
    let want: BTreeMap<String, String> = [
        ("job_id", id.as_str()),
        ("queue", "traced"),
        ("handler", "traced_fail"),
        ("attempt", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(job_span.fields, want);

    let end = seen
        .iter()
        .find(|s| {
            s.span
                .as_ref()
                .is_some_and(|f| f.get("job_id") == Some(&id))
        })
        .unwrap_or_else(|| panic!("no event in the job span: {seen:#?}"));
    assert_eq!(end.level, tracing::Level::WARN, "{end:?}");
    assert_eq!(end.fields["outcome"], "failed", "{end:?}");
    assert_eq!(end.fields["error"], "traced boom", "{end:?}");
    assert!(end.fields.contains_key("duration_ms"), "{end:?}");
}

// ------------------------------------------------ events outside a worker

/// The next `n` events, as (job id, kind).
fn next_n(rx: &mpsc::Receiver<Event>, n: usize) -> Vec<(String, EventKind)> {
    (0..n)
        .map(|i| {
            let event = rx
                .recv_timeout(WAIT)
                .unwrap_or_else(|e| panic!("event {i} of {n} did not come: {e}"));
            (event.job_id, event.kind)
        })
        .collect()
}

#[test]
fn an_enqueue_by_the_app_reports_enqueued_before_the_run() {
    let f = Fixture::new();
    let mut h = Handlers::new();
    h.register("ok", |_: ()| -> Result<(), JobError> { Ok(()) });
    let (hook, rx) = recorder();
    let worker = Worker::builder(&f.store, h)
        .threads(1)
        .on_event(hook)
        .start()
        .unwrap();
    let q = f.store.queue("default");
    let later = q.enqueue_in(secs(60), "ok", &()).unwrap();
    let jobs = q
        .enqueue_many([q.job("ok", &()), q.job("ok", &())])
        .unwrap();
    for job in &jobs {
        assert_eq!(job.wait(WAIT).unwrap(), Status::Finished);
    }
    worker.shutdown(WAIT).unwrap();
    let events: Vec<Event> = rx.try_iter().collect();
    assert!(events.iter().all(|e| e.at == t0()), "{events:?}");
    let of = |id: &str| -> Vec<EventKind> {
        events
            .iter()
            .filter(|e| e.job_id == id)
            .map(|e| e.kind.clone())
            .collect()
    };
    assert_eq!(of(later.id()), [EventKind::Enqueued]);
    for job in &jobs {
        assert_eq!(
            of(job.id()),
            [
                EventKind::Enqueued,
                started("ok", 1),
                EventKind::Succeeded { attempt: 1 }
            ]
        );
    }
}

#[test]
fn a_cancel_reports_canceled_for_the_job_and_the_dependents_it_cancels() {
    let f = Fixture::new();
    let (hook, rx) = recorder();
    let worker = Worker::builder(&f.store, Handlers::new())
        .threads(1)
        .on_event(hook)
        .start()
        .unwrap();
    let q = f.store.queue("default");
    let parent = q.enqueue_in(secs(60), "ok", &()).unwrap();
    let child = q.job("ok", &()).depends_on(&parent).enqueue().unwrap();
    let grandchild = q.job("ok", &()).depends_on(&child).enqueue().unwrap();
    assert_eq!(
        next_n(&rx, 3),
        [
            (parent.id().to_owned(), EventKind::Enqueued),
            (child.id().to_owned(), EventKind::Enqueued),
            (grandchild.id().to_owned(), EventKind::Enqueued),
        ]
    );
    parent.cancel().unwrap();
    let events = next_n(&rx, 3);
    let ids: Vec<&str> = events.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, [parent.id(), child.id(), grandchild.id()]);
    let reasons: Vec<&str> = events
        .iter()
        .map(|(_, kind)| match kind {
            EventKind::Canceled { reason } => reason.as_str(),
            other => panic!("not canceled: {other:?}"),
        })
        .collect();
    assert!(reasons[0].contains("cancel"), "{reasons:?}");
    assert!(reasons[1].contains(parent.id()), "{reasons:?}");
    assert!(reasons[2].contains(child.id()), "{reasons:?}");
    assert_eq!(grandchild.status().unwrap(), Status::Canceled);
    worker.shutdown(WAIT).unwrap();
    assert!(rx.try_recv().is_err(), "no more events");
}

#[test]
fn a_parent_that_fails_for_good_reports_its_dependents_canceled() {
    let f = Fixture::new();
    let mut h = Handlers::new();
    h.register("fail", |_: ()| -> Result<(), JobError> {
        Err(JobError::new("no"))
    });
    let q = f.store.queue("default");
    let parent = q.enqueue("fail", &()).unwrap();
    let child = q.job("fail", &()).depends_on(&parent).enqueue().unwrap();
    let (hook, rx) = recorder();
    let worker = Worker::builder(&f.store, h)
        .threads(1)
        .on_event(hook)
        .start()
        .unwrap();
    assert_eq!(child.wait(WAIT).unwrap(), Status::Canceled);
    worker.shutdown(WAIT).unwrap();
    let events = next_n(&rx, 3);
    assert_eq!(
        events[..2],
        [
            (parent.id().to_owned(), started("fail", 1)),
            (
                parent.id().to_owned(),
                EventKind::Failed {
                    attempt: 1,
                    error: "no".into(),
                    will_retry: false
                }
            ),
        ]
    );
    assert_eq!(events[2].0, child.id());
    assert!(
        matches!(&events[2].1, EventKind::Canceled { reason }
            if reason.contains(parent.id()) && reason.contains("failed")),
        "{events:?}"
    );
    assert!(rx.try_recv().is_err(), "no more events");
}

#[test]
fn enqueues_and_cancels_reach_the_hook_of_every_worker_on_the_store() {
    let f = Fixture::new();
    let (hook_a, rx_a) = recorder();
    let (hook_b, rx_b) = recorder();
    let a = Worker::builder(&f.store, Handlers::new())
        .queues(["a"])
        .threads(1)
        .on_event(hook_a)
        .start()
        .unwrap();
    let b = Worker::builder(&f.store, Handlers::new())
        .queues(["b"])
        .threads(1)
        .on_event(hook_b)
        .start()
        .unwrap();
    // A queue no worker takes jobs from: only the store sees these.
    let job = f
        .store
        .queue("elsewhere")
        .enqueue_in(secs(60), "ok", &())
        .unwrap();
    f.store.job(job.id()).unwrap().unwrap().cancel().unwrap();
    for rx in [&rx_a, &rx_b] {
        let events = next_n(rx, 2);
        assert_eq!(events[0], (job.id().to_owned(), EventKind::Enqueued));
        assert!(
            matches!(&events[1], (id, EventKind::Canceled { .. }) if id == job.id()),
            "{events:?}"
        );
    }
    a.shutdown(WAIT).unwrap();
    b.shutdown(WAIT).unwrap();
    // A shut-down worker's hook is not called any more; enqueues go on.
    f.store
        .queue("elsewhere")
        .enqueue_in(secs(60), "ok", &())
        .unwrap();
    assert!(rx_a.try_recv().is_err());
}

#[test]
fn runs_recovered_at_open_are_reported_once_by_the_first_worker_with_a_hook() {
    let f = Fixture::new();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let mut h = Handlers::new();
    h.register("block", move |_: ()| -> Result<(), JobError> {
        started_tx.send(()).unwrap();
        release_rx.lock().unwrap().recv().unwrap();
        Ok(())
    });
    let q = f.store.queue("default");
    let job = q.job("block", &()).retry(Retry::max(1)).enqueue().unwrap();
    let lost = q.job("block", &()).enqueue().unwrap(); // no retry left
    let worker = Worker::builder(&f.store, h)
        .threads(2)
        .on_event(|_| {})
        .start()
        .unwrap();
    started_rx.recv_timeout(WAIT).unwrap();
    started_rx.recv_timeout(WAIT).unwrap();
    // Both runs are going on: a copy of the store now is what a crash
    // leaves (claims on disk, run journal lines written).
    f.store.flush().unwrap();
    let crashed = f.dir.path().join("crashed.dueq");
    copy_dir(&f.path, &crashed);
    release_tx.send(()).unwrap();
    release_tx.send(()).unwrap();
    worker.shutdown(WAIT).unwrap();

    f.advance(secs(1));
    let store = common::open_manual(&crashed, &f.clock);
    assert_eq!(store.recovered_at_open(), 2);
    let mut h = Handlers::new();
    h.register("block", |_: ()| -> Result<(), JobError> { Ok(()) });
    let (hook, rx) = recorder();
    let worker = Worker::builder(&store, h)
        .threads(1)
        .on_event(hook)
        .start()
        .unwrap();
    let (hook2, rx2) = recorder();
    let second = Worker::builder(&store, Handlers::new())
        .queues(["other"])
        .threads(1)
        .on_event(hook2)
        .start()
        .unwrap();
    let rerun = store.job(job.id()).unwrap().unwrap();
    assert_eq!(rerun.wait(WAIT).unwrap(), Status::Finished);
    worker.shutdown(WAIT).unwrap();
    second.shutdown(WAIT).unwrap();
    let events: Vec<Event> = rx.try_iter().collect();
    let of = |id: &str| -> Vec<EventKind> {
        events
            .iter()
            .filter(|e| e.job_id == id)
            .map(|e| e.kind.clone())
            .collect()
    };
    assert_eq!(
        of(job.id()),
        [
            EventKind::Abandoned {
                attempt: 1,
                will_retry: true
            },
            EventKind::Retried { attempt: 1 },
            started("block", 2),
            EventKind::Succeeded { attempt: 2 },
        ]
    );
    assert_eq!(
        of(lost.id()),
        [EventKind::Abandoned {
            attempt: 1,
            will_retry: false
        }]
    );
    assert!(
        events.iter().take(3).all(|e| e.at == t0() + secs(1)),
        "{events:?}"
    );
    assert!(rx2.try_recv().is_err(), "reported once, to the first hook");
}
