//! Synchronous queues (rq's `is_async=False`): jobs run inline at enqueue.

mod common;

use std::sync::{Arc, Mutex};

use common::{secs, Fixture};
use dueq::{Handlers, JobError, Retry, Status};

fn handlers(log: &Arc<Mutex<Vec<String>>>) -> Handlers {
    let mut h = Handlers::new();
    let l = log.clone();
    h.register("add", move |(a, b): (i32, i32)| -> Result<i32, JobError> {
        l.lock().unwrap().push(format!("add {a} {b}"));
        Ok(a + b)
    });
    h.register("fail", |_: ()| -> Result<(), JobError> {
        Err(JobError::new("nope"))
    });
    h.register("panic", |_: ()| -> Result<(), JobError> {
        panic!("inline panic")
    });
    let l = log.clone();
    h.callback("note", move |cb: &dueq::Callback| -> Result<(), JobError> {
        l.lock()
            .unwrap()
            .push(format!("{:?} {}", cb.kind(), cb.job_id()));
        Ok(())
    });
    h
}

#[test]
fn enqueue_runs_the_job_inline_with_results_and_callbacks() {
    let f = Fixture::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    let q = f.store.queue("default").sync(handlers(&log));
    let job = q
        .job("add", &(2, 3))
        .id("j")
        .on_success("note")
        .enqueue()
        .unwrap();
    assert_eq!(job.status().unwrap(), Status::Finished);
    assert_eq!(job.result::<i32>().unwrap(), Some(5));
    assert_eq!(*log.lock().unwrap(), ["add 2 3", "Success j"]);
    assert_eq!(job.info().unwrap().attempts_log.len(), 1);
}

#[test]
fn a_failure_is_final_with_no_retries_and_on_failure_runs() {
    let f = Fixture::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    let q = f.store.queue("default").sync(handlers(&log));
    let job = q
        .job("fail", &())
        .id("f")
        .retry(Retry::max(3))
        .on_failure("note")
        .enqueue()
        .unwrap();
    assert_eq!(job.status().unwrap(), Status::Failed);
    assert_eq!(job.info().unwrap().attempts, 1);
    assert_eq!(job.error().unwrap().as_deref(), Some("nope"));
    assert_eq!(*log.lock().unwrap(), ["Failure f"]);
    let panicked = q.enqueue("panic", &()).unwrap();
    assert_eq!(panicked.status().unwrap(), Status::Failed);
    assert!(panicked.error().unwrap().unwrap().contains("inline panic"));
    // The policy is kept: requeued for a worker, the job retries again.
    job.requeue().unwrap();
    assert_eq!(job.info().unwrap().retry, Some(Retry::max(3)));
}

#[test]
fn dependents_run_inline_and_later_jobs_wait_for_workers() {
    let f = Fixture::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    let q = f.store.queue("default").sync(handlers(&log));
    let later = q.enqueue_in(secs(60), "add", &(9, 9)).unwrap();
    assert_eq!(later.status().unwrap(), Status::Scheduled);
    // A parent not yet run (scheduled) keeps its dependent deferred...
    let child = q.job("add", &(1, 1)).depends_on(&later).enqueue().unwrap();
    assert_eq!(child.status().unwrap(), Status::Deferred);
    // ...and a batch with a chain runs the whole chain inline.
    let jobs = q
        .enqueue_many([
            q.job("add", &(1, 2)).id("p"),
            q.job("add", &(3, 4)).id("c").depends_on("p"),
        ])
        .unwrap();
    assert!(jobs.iter().all(|j| j.status().unwrap() == Status::Finished));
    assert_eq!(*log.lock().unwrap(), ["add 1 2", "add 3 4"]);
    // Jobs of another (asynchronous) queue in the batch are left queued.
    let other = f.store.queue("other");
    let jobs = q
        .enqueue_many([other.job("add", &(5, 5)), q.job("add", &(6, 6))])
        .unwrap();
    assert_eq!(jobs[0].status().unwrap(), Status::Queued);
    assert_eq!(jobs[1].status().unwrap(), Status::Finished);
}
