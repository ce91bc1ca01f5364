//! rq parity under pressure: `unique` ids under a race, and the busy time a
//! worker reports, in `WorkerStats` and in the Prometheus text.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use dueq::{Error, Handlers, JobError, Status, Store, Worker};

/// Two threads enqueue a `unique` job with the same id at the same moment,
/// round after round: each round exactly one enqueue is accepted, the other
/// gets `DuplicateJobId`, and the store holds the winner's job only (it is
/// neither lost nor overwritten by the loser).
#[test]
fn racing_unique_enqueues_of_one_id_accept_exactly_one() {
    const ROUNDS: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("jobs.dueq")).unwrap();
    let barrier = Arc::new(Barrier::new(2));
    let racers: Vec<_> = (0..2u32)
        .map(|racer| {
            let q = store.queue("default");
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                (0..ROUNDS)
                    .map(|round| {
                        barrier.wait();
                        q.job("echo", &racer)
                            .id(format!("race-{round}"))
                            .unique()
                            .enqueue()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let results: Vec<Vec<dueq::Result<dueq::Job>>> =
        racers.into_iter().map(|t| t.join().unwrap()).collect();

    assert_eq!(results[0].len(), ROUNDS);
    for (round, (a, b)) in results[0].iter().zip(&results[1]).enumerate() {
        let id = format!("race-{round}");
        let (winner, loser) = match (a, b) {
            (Ok(_), Err(e)) => (0u32, e),
            (Err(e), Ok(_)) => (1u32, e),
            _ => panic!("round {round}: exactly one enqueue must win: {a:?} / {b:?}"),
        };
        assert!(
            matches!(loser, Error::DuplicateJobId { id: taken } if *taken == id),
            "round {round}: {loser:?}"
        );
        let job = store
            .job(&id)
            .unwrap()
            .unwrap_or_else(|| panic!("round {round}: the winner's job is stored"));
        assert_eq!(
            job.info().unwrap().args_json,
            winner.to_string(),
            "round {round}: the stored job is the winner's"
        );
    }
    let q = store.queue("default");
    assert_eq!(q.count().unwrap(), ROUNDS, "one job per round");
    let mut ids = q.job_ids().unwrap();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), ROUNDS);
    assert_eq!(store.stats().unwrap().total(), ROUNDS);
}

/// How long each handler run takes, at least.
const RUN: Duration = Duration::from_millis(40);

/// A worker with one thread runs jobs whose handler takes at least `RUN`;
/// failed runs count as busy time too. The busy time it reports is at
/// least the sum of the runs and at most the wall time they took (one
/// thread cannot be busy longer than that), and `dueq::prometheus` renders
/// the same figure as `dueq_worker_busy_seconds_total`.
///
/// Busy time is measured with `Instant` around each run (see
/// `worker::run_jobs`), not with the store's injectable clock, so the
/// handler sleeps: a `ManualClock` advanced by the handler would not move
/// it.
#[test]
fn worker_busy_time_matches_the_runs_and_prometheus_shows_it() {
    const JOBS: u32 = 4;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("jobs.dueq")).unwrap();
    let mut handlers = Handlers::new();
    handlers.register("work", |n: u32| -> Result<u32, JobError> {
        std::thread::sleep(RUN);
        if n % 2 == 1 {
            return Err(JobError::new("odd"));
        }
        Ok(n)
    });

    let begun = Instant::now();
    let worker = Worker::builder(&store, handlers)
        .threads(1)
        .start()
        .unwrap();
    let q = store.queue("default");
    let jobs: Vec<_> = (0..JOBS).map(|n| q.enqueue("work", &n).unwrap()).collect();
    for job in &jobs {
        let status = job.wait(Duration::from_secs(30)).unwrap();
        assert!(status.is_final(), "{status:?}");
    }
    let wall = begun.elapsed();

    let stats = worker.stats();
    assert_eq!((stats.succeeded, stats.failed), (2, 2));
    assert_eq!(jobs[1].status().unwrap(), Status::Failed);
    let least = RUN * JOBS;
    assert!(
        stats.busy >= least,
        "busy {:?} is less than the {JOBS} runs of {RUN:?}",
        stats.busy
    );
    assert!(
        stats.busy <= wall,
        "one thread was busy {:?}, longer than the {wall:?} it all took",
        stats.busy
    );

    // The store's figures sum its live workers: here, this one.
    let store_stats = store.stats().unwrap();
    assert_eq!(store_stats.workers.busy, stats.busy);
    let text = dueq::prometheus(&store_stats);
    assert!(
        text.contains("# TYPE dueq_worker_busy_seconds_total counter\n"),
        "{text}"
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("dueq_worker_busy_seconds_total "))
        .unwrap_or_else(|| panic!("no busy seconds sample in:\n{text}"));
    let value = line["dueq_worker_busy_seconds_total ".len()..].to_owned();
    assert_eq!(value, format!("{:.3}", stats.busy.as_secs_f64()), "{line}");
    let seconds: f64 = value.parse().unwrap();
    // The sample has millisecond precision.
    assert!(seconds + 0.0005 >= least.as_secs_f64(), "{line}");
    assert!(seconds - 0.0005 <= wall.as_secs_f64(), "{line}");

    let last = worker.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!(last.busy, stats.busy, "no run after the jobs ended");
}
