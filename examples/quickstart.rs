//! The seed scenario, "test retry success": a flaky job fails twice with a
//! transient error and succeeds on its third attempt under a linear retry
//! policy (60/60/180 s scaled to 1/1/3 s), and a job that always fails ends
//! in the failed registry with its error.
//!
//! Run it with `cargo run --release --example quickstart`.

use std::time::Duration;

use dueq::{Context, Handlers, JobError, Retry, Status, Store, Worker};

const STORE: &str = "quickstart.dueq";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A fresh store each run, in a directory named here.
    let _ = std::fs::remove_dir_all(STORE);
    let store = Store::open(STORE)?;
    println!("store: {}", std::fs::canonicalize(STORE)?.display());
    let q = store.queue("default");

    // max_retries 3, interval_start 1 s, interval_step 1 s, interval_max 3 s:
    // waits 1, 2, 3 s (the seed's 60/60/180 s, scaled to seconds).
    let flaky = q
        .job("fetch_report", &"https://example.com/report")
        .description("fails twice with a transient error, then succeeds")
        .retry(Retry::max(3).linear(1, 1, 3))
        .enqueue()?;
    let doomed = q
        .job("always_fails", &42)
        .retry(Retry::max(1).intervals([1]))
        .enqueue()?;
    println!(
        "enqueued {} (flaky) and {} (always fails)",
        flaky.id(),
        doomed.id()
    );

    let mut handlers = Handlers::new();
    handlers.register_with_context("fetch_report", |ctx: &Context, url: String| {
        if ctx.attempt() <= 2 {
            println!(
                "  attempt {}: {url}: connection reset (transient)",
                ctx.attempt()
            );
            return Err(JobError::new("connection reset by peer (transient)"));
        }
        println!("  attempt {}: {url}: ok", ctx.attempt());
        Ok(format!("report from {url}: 1024 words"))
    });
    handlers.register("always_fails", |n: u32| -> Result<(), JobError> {
        Err(JobError::new(format!(
            "cannot process {n}: the input is invalid"
        )))
    });
    let worker = Worker::builder(&store, handlers).threads(2).start()?;

    let status = flaky.wait(Duration::from_secs(30))?;
    doomed.wait(Duration::from_secs(30))?;
    let stats = worker.shutdown(Duration::from_secs(10))?;

    let info = flaky.info()?;
    println!("\ntimeline of {} ({}):", info.id, info.handler);
    let t0 = info.enqueued_at;
    let secs = |t: chrono::DateTime<chrono::Utc>| (t - t0).num_milliseconds() as f64 / 1000.0;
    for a in &info.attempts_log {
        let outcome = match &a.error {
            Some(e) => format!("failed: {e}"),
            None => "succeeded".to_owned(),
        };
        print!(
            "  attempt {} at +{:.1}s: {outcome}",
            a.number,
            secs(a.started_at)
        );
        match a.retry_at {
            Some(at) => println!(
                "; retry in {:.1}s",
                (at - a.ended_at).num_milliseconds() as f64 / 1000.0
            ),
            None => println!(),
        }
    }
    println!(
        "final status: {status}; result: {:?}",
        flaky.result::<String>()?.unwrap_or_default()
    );

    let info = doomed.info()?;
    println!(
        "\n{} ended {} after {} attempts; failed registry holds {:?}; error: {}",
        info.id,
        info.status,
        info.attempts,
        q.failed().job_ids()?,
        info.error.as_deref().unwrap_or("-")
    );
    println!(
        "\nworker: {} succeeded, {} failed attempts",
        stats.succeeded, stats.failed
    );

    if status != Status::Finished || info.status != Status::Failed {
        return Err("the quickstart did not end as expected".into());
    }
    Ok(())
}
