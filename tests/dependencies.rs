//! `depends_on`: deferred jobs, released atomically with their parent's
//! final transition; dependents of a lost parent are canceled (rq leaves
//! them deferred forever), unless they allow failure.

mod common;

use common::{secs, Fixture};
use dueq::{Dependency, Error, Handlers, JobError, Retry, Status};

fn handlers() -> Handlers {
    let mut h = Handlers::new();
    h.register("ok", |n: u32| -> Result<u32, JobError> { Ok(n) });
    h.register("fail", |_: ()| -> Result<(), JobError> {
        Err(JobError::new("boom"))
    });
    h
}

#[test]
fn a_dependent_waits_deferred_then_runs_after_its_parent() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let parent = q.enqueue_in(secs(10), "ok", &1).unwrap();
    let child = q.job("ok", &2).depends_on(&parent).enqueue().unwrap();
    assert_eq!(child.status().unwrap(), Status::Deferred);
    assert_eq!(q.deferred().job_ids().unwrap(), vec![child.id().to_owned()]);
    assert_eq!(q.count().unwrap(), 0, "a deferred job is not queued");
    assert_eq!(
        child.info().unwrap().waiting_on,
        vec![parent.id().to_owned()]
    );
    assert_eq!(
        parent.info().unwrap().dependents,
        vec![child.id().to_owned()]
    );

    // Nothing is due: the burst runs nothing, the child stays deferred.
    assert_eq!(f.burst(&handlers()).succeeded, 0);
    assert_eq!(child.status().unwrap(), Status::Deferred);

    f.advance(secs(10));
    let stats = f.burst(&handlers());
    assert_eq!(stats.succeeded, 2, "parent, then the released child");
    assert_eq!(child.status().unwrap(), Status::Finished);
    assert_eq!(child.result::<u32>().unwrap(), Some(2));
    assert!(child.info().unwrap().waiting_on.is_empty());
    assert_eq!(q.deferred().count().unwrap(), 0);
}

#[test]
fn several_parents_all_must_finish() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let a = q.enqueue("ok", &1).unwrap();
    let b = q.enqueue_in(secs(5), "ok", &2).unwrap();
    let child = q
        .job("ok", &3)
        .depends_on(&a)
        .depends_on(b.id())
        .enqueue()
        .unwrap();
    f.burst(&handlers());
    assert_eq!(a.status().unwrap(), Status::Finished);
    assert_eq!(child.status().unwrap(), Status::Deferred);
    assert_eq!(child.info().unwrap().waiting_on, vec![b.id().to_owned()]);
    f.advance(secs(5));
    f.burst(&handlers());
    assert_eq!(child.status().unwrap(), Status::Finished);
}

#[test]
fn a_failed_parent_cancels_its_dependents_with_a_reason_and_cascades() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let parent = q
        .job("fail", &())
        .retry(Retry::max(1).intervals([10]))
        .enqueue()
        .unwrap();
    let child = q.job("ok", &1).depends_on(&parent).enqueue().unwrap();
    let grandchild = q.job("ok", &2).depends_on(&child).enqueue().unwrap();
    let tolerant = q
        .job("ok", &3)
        .depends_on(Dependency::on(parent.id()).allow_failure())
        .enqueue()
        .unwrap();

    // First failure is retried: the parent is not final, nothing moves.
    f.burst(&handlers());
    assert_eq!(parent.status().unwrap(), Status::Scheduled);
    assert_eq!(child.status().unwrap(), Status::Deferred);

    f.advance(secs(10));
    f.burst(&handlers());
    assert_eq!(parent.status().unwrap(), Status::Failed);
    assert_eq!(child.status().unwrap(), Status::Canceled);
    let reason = child.error().unwrap().unwrap();
    assert!(
        reason.contains(parent.id()) && reason.contains("failed"),
        "{reason}"
    );
    assert_eq!(grandchild.status().unwrap(), Status::Canceled);
    assert!(grandchild.error().unwrap().unwrap().contains(child.id()));
    assert_eq!(
        tolerant.status().unwrap(),
        Status::Finished,
        "allow_failure runs it"
    );
    assert_eq!(q.canceled().count().unwrap(), 2);
}

#[test]
fn canceling_or_deleting_a_parent_cancels_dependents() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let p1 = q.enqueue_in(secs(60), "ok", &1).unwrap();
    let c1 = q.job("ok", &1).depends_on(&p1).enqueue().unwrap();
    p1.cancel().unwrap();
    assert_eq!(c1.status().unwrap(), Status::Canceled);
    assert!(c1.error().unwrap().unwrap().contains("was canceled"));

    let p2 = q.enqueue_in(secs(60), "ok", &2).unwrap();
    let c2 = q.job("ok", &2).depends_on(&p2).enqueue().unwrap();
    p2.delete().unwrap();
    assert_eq!(c2.status().unwrap(), Status::Canceled);
    assert!(c2.error().unwrap().unwrap().contains("was deleted"));

    // Canceling a deferred job itself works too.
    let p3 = q.enqueue_in(secs(60), "ok", &3).unwrap();
    let c3 = q.job("ok", &3).depends_on(&p3).enqueue().unwrap();
    c3.cancel().unwrap();
    assert_eq!(c3.status().unwrap(), Status::Canceled);
    assert_eq!(
        p3.status().unwrap(),
        Status::Scheduled,
        "the parent is untouched"
    );
}

#[test]
fn parents_that_already_ended_decide_at_enqueue() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let done = q.job("ok", &1).result_ttl(secs(1000)).enqueue().unwrap();
    let failed = q.enqueue("fail", &()).unwrap();
    f.burst(&handlers());
    let after_done = q.job("ok", &2).depends_on(&done).enqueue().unwrap();
    assert_eq!(after_done.status().unwrap(), Status::Queued);
    let after_failed = q.job("ok", &3).depends_on(&failed).enqueue().unwrap();
    assert_eq!(after_failed.status().unwrap(), Status::Canceled);
    let tolerant = q
        .job("ok", &4)
        .depends_on(Dependency::on(failed.id()).allow_failure())
        .enqueue()
        .unwrap();
    assert_eq!(tolerant.status().unwrap(), Status::Queued);
}

#[test]
fn missing_or_self_parents_are_clear_errors_and_nothing_is_written() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let err = q.job("ok", &1).depends_on("nope").enqueue().unwrap_err();
    assert!(
        matches!(
            &err,
            Error::InvalidArgument {
                what: "depends_on",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("\"nope\", which does not exist"),
        "{err}"
    );
    let err = q
        .job("ok", &1)
        .id("me")
        .depends_on("me")
        .enqueue()
        .unwrap_err();
    assert!(err.to_string().contains("cannot depend on itself"), "{err}");
    assert!(f.store.job("me").unwrap().is_none());
    assert_eq!(q.count().unwrap() + q.deferred().count().unwrap(), 0);
}

#[test]
fn enqueue_many_links_parents_inside_the_batch_and_is_all_or_nothing() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    // A chain inside one batch: each job depends on the one before it.
    let jobs = q
        .enqueue_many([
            q.job("ok", &1).id("a"),
            q.job("ok", &2).id("b").depends_on("a"),
            q.job("ok", &3).id("c").depends_on("b"),
        ])
        .unwrap();
    assert_eq!(jobs[2].status().unwrap(), Status::Deferred);
    let stats = f.burst(&handlers());
    assert_eq!(stats.succeeded, 3);
    // A job depending on a later job of the batch (a would-be cycle) fails
    // the whole batch.
    let err = q
        .enqueue_many([
            q.job("ok", &1).id("x").depends_on("y"),
            q.job("ok", &2).id("y").depends_on("x"),
        ])
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    assert!(f.store.job("x").unwrap().is_none());
    assert!(f.store.job("y").unwrap().is_none());
}

#[test]
fn dependents_are_released_across_a_reopen() {
    let f = Fixture::new();
    let q = f.store.queue("default");
    let parent = q.enqueue("ok", &1).unwrap();
    let child = q.job("ok", &2).depends_on(&parent).enqueue().unwrap();
    let (path, clock, child_id) = (f.path.clone(), f.clock.clone(), child.id().to_owned());
    drop((q, parent, child));
    drop(f.store);
    let store = common::open_manual(&path, &clock);
    assert_eq!(
        store.job(&child_id).unwrap().unwrap().status().unwrap(),
        Status::Deferred
    );
    common::burst(&store, &handlers());
    assert_eq!(
        store.job(&child_id).unwrap().unwrap().status().unwrap(),
        Status::Finished
    );
}
