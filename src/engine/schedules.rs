//! Cron and interval schedules, kept in the `schedules` tree (name →
//! versioned `ScheduleRecord`).
//!
//! A fire is one transaction that enqueues the job (id
//! `cron-{name}-{instant ms}`) and advances the schedule's `next_fire`: a
//! schedule fires at most once per due instant, across restarts and
//! crashes. Fires missed while no worker ran are coalesced: the schedule
//! fires once, for the instant it was due, and its next fire is the first
//! instant after now.

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use sled::Transactional;

use super::codec::{decode_schedule, encode_schedule};
use super::ops::{abort, new_record, write, Engine, NewJob};
use crate::error::{Error, Result};
use crate::retry::Retry;

/// When a schedule fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Spec {
    /// A cron expression (5 fields, or 6 with seconds first), in UTC.
    Cron(String),
    /// Every so many ms, from when the schedule was created.
    Every(u64),
}

/// One schedule as stored (schedule format version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ScheduleRecord {
    pub(crate) name: String,
    pub(crate) spec: Spec,
    pub(crate) queue: String,
    pub(crate) handler: String,
    /// The job's arguments, JSON.
    pub(crate) args: Vec<u8>,
    pub(crate) retry: Option<Retry>,
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) result_ttl_ms: u64,
    pub(crate) failure_ttl_ms: u64,
    /// The next instant it fires at (store-clock ms).
    pub(crate) next_fire: u64,
    pub(crate) paused: bool,
    pub(crate) last_fire: Option<u64>,
    pub(crate) last_job: Option<String>,
    /// Fires so far.
    pub(crate) fired: u64,
}

impl ScheduleRecord {
    /// The job id of the fire at `instant`.
    pub(crate) fn job_id(&self, instant: u64) -> String {
        format!("cron-{}-{instant}", self.name)
    }
}

impl Engine {
    /// Recomputes the earliest `next_fire` of the active schedules.
    pub(crate) fn refresh_next_schedule(&self) -> Result<()> {
        let mut next = u64::MAX;
        for s in self.schedule_records()? {
            if !s.paused {
                next = next.min(s.next_fire);
            }
        }
        self.next_schedule.store(next, Ordering::SeqCst);
        Ok(())
    }

    /// When the next schedule is due, if any is active.
    pub(crate) fn next_schedule(&self) -> Option<u64> {
        Some(self.next_schedule.load(Ordering::SeqCst)).filter(|&t| t != u64::MAX)
    }

    /// Every schedule, by name.
    pub(crate) fn schedule_records(&self) -> Result<Vec<ScheduleRecord>> {
        self.schedules
            .iter()
            .map(|item| {
                let (name, raw) = item?;
                decode_schedule(&name, &raw)
            })
            .collect()
    }

    pub(crate) fn schedule_record(&self, name: &str) -> Result<Option<ScheduleRecord>> {
        match self.schedules.get(name)? {
            Some(raw) => decode_schedule(name.as_bytes(), &raw).map(Some),
            None => Ok(None),
        }
    }

    /// Creates or replaces a schedule.
    pub(crate) fn put_schedule(&self, record: &ScheduleRecord) -> Result<()> {
        self.schedules
            .insert(record.name.as_bytes(), encode_schedule(record))?;
        self.refresh_next_schedule()?;
        self.signal.notify();
        Ok(())
    }

    /// Changes a schedule with `f`, atomically. `NoSuchSchedule` if there is
    /// none of that name.
    pub(crate) fn update_schedule(
        &self,
        name: &str,
        f: impl Fn(&mut ScheduleRecord),
    ) -> Result<ScheduleRecord> {
        let updated = self.schedules.transaction(|tree| {
            let Some(raw) = tree.get(name.as_bytes())? else {
                return abort(Error::NoSuchSchedule {
                    name: name.to_owned(),
                });
            };
            let mut record = match decode_schedule(name.as_bytes(), &raw) {
                Ok(r) => r,
                Err(e) => return abort(e),
            };
            f(&mut record);
            tree.insert(name.as_bytes(), encode_schedule(&record))?;
            Ok(record)
        })?;
        self.refresh_next_schedule()?;
        self.signal.notify();
        Ok(updated)
    }

    /// Removes a schedule; `false` if there was none.
    pub(crate) fn remove_schedule(&self, name: &str) -> Result<bool> {
        let had = self.schedules.remove(name)?.is_some();
        self.refresh_next_schedule()?;
        Ok(had)
    }

    /// Fires every active schedule due by `now`: each fire enqueues its job
    /// and advances the schedule in one transaction. `next_after(spec, t)`
    /// is the first instant of `spec` strictly after `t`. Returns how many
    /// fired.
    pub(crate) fn fire_schedules(
        &self,
        now: u64,
        next_after: impl Fn(&Spec, u64) -> Result<u64>,
    ) -> Result<usize> {
        if self.next_schedule().is_none_or(|t| t > now) {
            return Ok(0);
        }
        let mut fired = 0;
        for schedule in self.schedule_records()? {
            if schedule.paused || schedule.next_fire > now {
                continue;
            }
            let instant = schedule.next_fire;
            let next = next_after(&schedule.spec, now)?;
            let plan = self.plan_queues(&[schedule.queue.as_str()]);
            let seq_guard = self.seq_lock.read();
            let id = schedule.job_id(instant);
            let job = NewJob {
                id: id.clone(),
                auto_id: false,
                queue: schedule.queue.clone(),
                handler: schedule.handler.clone(),
                args: schedule.args.clone(),
                description: Some(format!("schedule {:?}, due {instant}", schedule.name)),
                retry: schedule.retry.clone(),
                result_ttl_ms: schedule.result_ttl_ms,
                failure_ttl_ms: schedule.failure_ttl_ms,
                due: now,
                meta: b"{}".to_vec(),
                timeout_ms: schedule.timeout_ms,
                ttl_ms: None,
                at_front: false,
                depends_on: Vec::new(),
                callbacks: Default::default(),
                repeat: None,
                limit: None,
            };
            let record = new_record(job, plan.id(&schedule.queue), self.next_seq()?, now);
            let trees = &self.trees;
            let done = (&trees.jobs, &trees.index, &trees.queues, &self.schedules).transaction(
                |(jobs, index, queues, schedules)| {
                    let Some(raw) = schedules.get(schedule.name.as_bytes())? else {
                        return Ok(false); // removed meanwhile
                    };
                    let mut current = match decode_schedule(schedule.name.as_bytes(), &raw) {
                        Ok(r) => r,
                        Err(e) => return abort(e),
                    };
                    if current.paused || current.next_fire != instant {
                        return Ok(false); // another worker fired it, or it changed
                    }
                    for (name, id) in plan.new_queues() {
                        queues.insert(name.as_bytes(), &id.to_be_bytes())?;
                    }
                    if jobs.get(id.as_bytes())?.is_none() {
                        write(jobs, index, &record)?;
                    }
                    current.next_fire = next;
                    current.last_fire = Some(instant);
                    current.last_job = Some(id.clone());
                    current.fired += 1;
                    schedules.insert(schedule.name.as_bytes(), encode_schedule(&current))?;
                    Ok(true)
                },
            )?;
            drop(seq_guard);
            plan.publish();
            fired += usize::from(done);
        }
        self.refresh_next_schedule()?;
        if fired > 0 {
            self.signal.notify();
        }
        Ok(fired)
    }
}
