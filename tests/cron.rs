//! Cron and interval schedules kept in the store, fired by workers on a
//! `ManualClock`: at most once per due instant, across restarts; missed
//! instants are coalesced into one fire.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{burst, open_manual, secs, t0, Fixture};
use dueq::{Error, Handlers, JobError, Status};

fn handlers() -> Handlers {
    let mut h = Handlers::new();
    h.register("report", |what: String| -> Result<String, JobError> {
        Ok(format!("report on {what}"))
    });
    h
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

#[test]
fn an_interval_schedule_fires_once_per_instant() {
    let f = Fixture::new();
    let info = f.store.every("tick", secs(60), "report", &"ticks").unwrap();
    assert_eq!(info.spec, "every 60s");
    assert_eq!(info.next_fire, Some(t0() + chrono::Duration::seconds(60)));
    assert_eq!(f.burst(&handlers()).succeeded, 0, "not due yet");

    f.advance(secs(60));
    assert_eq!(f.burst(&handlers()).succeeded, 1);
    assert_eq!(f.burst(&handlers()).succeeded, 0, "once per instant");
    let s = &f.store.schedules().unwrap()[0];
    assert_eq!(s.fired, 1);
    assert_eq!(s.last_fire, Some(t0() + chrono::Duration::seconds(60)));
    let job = f
        .store
        .job(s.last_job.as_deref().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(job.status().unwrap(), Status::Finished);
    assert_eq!(job.result::<String>().unwrap().unwrap(), "report on ticks");
    assert_eq!(s.next_fire, Some(t0() + chrono::Duration::seconds(120)));
}

#[test]
fn a_cron_schedule_fires_at_its_instants_and_coalesces_missed_ones() {
    let f = Fixture::new(); // 2026-01-01T00:00:00Z
    f.store
        .schedule("nightly", "report", &"sales")
        .cron("0 3 * * *")
        .queue("reports")
        .create()
        .unwrap();
    let run = |f: &Fixture| {
        dueq::Worker::builder(&f.store, handlers())
            .queues(["reports"])
            .threads(1)
            .burst()
            .unwrap()
            .succeeded
    };
    f.clock.set(at("2026-01-01T02:59:59Z"));
    assert_eq!(run(&f), 0);
    f.clock.set(at("2026-01-01T03:00:00Z"));
    assert_eq!(run(&f), 1);
    let s = &f.store.schedules().unwrap()[0];
    assert_eq!(s.last_job.as_deref(), Some("cron-nightly-1767236400000"));
    assert_eq!(s.next_fire, Some(at("2026-01-02T03:00:00Z")));

    // Three nights pass with no worker: one fire, not three.
    f.clock.set(at("2026-01-04T12:00:00Z"));
    assert_eq!(run(&f), 1);
    let s = &f.store.schedules().unwrap()[0];
    assert_eq!(s.fired, 2);
    assert_eq!(
        s.last_fire,
        Some(at("2026-01-02T03:00:00Z")),
        "the instant it was due"
    );
    assert_eq!(s.next_fire, Some(at("2026-01-05T03:00:00Z")));
    // (The first night's job expired after its 500 s result_ttl.)
    assert_eq!(
        f.store.queue("reports").finished().job_ids().unwrap(),
        vec!["cron-nightly-1767322800000".to_owned()]
    );
}

#[test]
fn schedules_and_their_fires_survive_a_reopen() {
    let f = Fixture::new();
    f.store.every("tick", secs(10), "report", &"x").unwrap();
    f.advance(secs(10));
    f.burst(&handlers());
    let (path, clock) = (f.path.clone(), f.clock.clone());
    drop(f.store);
    let store = open_manual(&path, &clock);
    // Same instant after the reopen: nothing fires twice.
    assert_eq!(burst(&store, &handlers()).succeeded, 0);
    let s = &store.schedules().unwrap()[0];
    assert_eq!(s.fired, 1);
    clock.advance(secs(10));
    assert_eq!(burst(&store, &handlers()).succeeded, 1);
    assert_eq!(store.schedules().unwrap()[0].fired, 2);
}

#[test]
fn pause_resume_and_remove() {
    let f = Fixture::new();
    f.store.every("tick", secs(10), "report", &"x").unwrap();
    let paused = f.store.pause_schedule("tick").unwrap();
    assert!(paused.paused && paused.next_fire.is_none());
    f.advance(secs(35));
    assert_eq!(f.burst(&handlers()).succeeded, 0, "paused");
    let resumed = f.store.resume_schedule("tick").unwrap();
    // Instants passed while paused are skipped.
    assert_eq!(
        resumed.next_fire,
        Some(t0() + chrono::Duration::seconds(45))
    );
    f.advance(secs(10));
    assert_eq!(f.burst(&handlers()).succeeded, 1);
    f.store.remove_schedule("tick").unwrap();
    assert!(f.store.schedules().unwrap().is_empty());
    f.advance(secs(100));
    assert_eq!(f.burst(&handlers()).succeeded, 0);
    for err in [
        f.store.remove_schedule("tick").unwrap_err(),
        f.store.pause_schedule("nope").unwrap_err(),
        f.store.resume_schedule("nope").unwrap_err(),
    ] {
        assert!(matches!(err, Error::NoSuchSchedule { .. }), "{err:?}");
    }
}

#[test]
fn bad_schedules_are_clear_errors_and_nothing_is_stored() {
    let f = Fixture::new();
    let err = f
        .store
        .cron("bad", "61 * * * *", "report", &())
        .unwrap_err();
    assert!(matches!(err, Error::InvalidCron { .. }), "{err:?}");
    assert!(err.to_string().contains("\"61 * * * *\""), "{err}");
    assert!(
        err.to_string().contains("0 3 * * *"),
        "names the form: {err}"
    );
    let err = f.store.cron("bad", "not cron", "report", &()).unwrap_err();
    assert!(matches!(err, Error::InvalidCron { .. }));
    let err = f
        .store
        .cron("has space", "0 3 * * *", "report", &())
        .unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidArgument {
            what: "schedule name",
            ..
        }
    ));
    let err = f.store.schedule("x", "report", &()).create().unwrap_err();
    assert!(
        err.to_string().contains(".cron(expr) or .every(interval)"),
        "{err}"
    );
    let err = f
        .store
        .every("x", Duration::ZERO, "report", &())
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { what: "every", .. }));
    assert!(f.store.schedules().unwrap().is_empty());
}

#[test]
fn replacing_a_schedule_keeps_its_count_and_takes_the_new_timing() {
    let f = Fixture::new();
    f.store.every("tick", secs(10), "report", &"x").unwrap();
    f.advance(secs(10));
    f.burst(&handlers());
    let s = f.store.every("tick", secs(60), "report", &"y").unwrap();
    assert_eq!(s.fired, 1);
    assert_eq!(s.args_json, "\"y\"");
    assert_eq!(s.next_fire, Some(t0() + chrono::Duration::seconds(70)));
}
