//! `Handlers`: the named functions jobs call, and what a running job sees.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::clock::dur_ms;
use crate::engine::encode_json;
use crate::error::Result;
use crate::Store;

/// Why a job's attempt failed: a message recorded with the attempt. Any
/// `std::error::Error` converts into it, so handlers can use `?`.
///
/// Like `anyhow::Error`, `JobError` does not itself implement
/// `std::error::Error` (that is what lets every error convert into it).
///
/// # Examples
///
/// ```
/// use dueq::JobError;
///
/// fn parse(s: &str) -> Result<u32, JobError> {
///     let n: u32 = s.parse()?; // a ParseIntError becomes a JobError
///     if n == 0 {
///         return Err(JobError::new("zero is not allowed"));
///     }
///     Ok(n)
/// }
/// assert_eq!(parse("0").unwrap_err().message(), "zero is not allowed");
/// assert!(parse("x").is_err());
/// ```
pub struct JobError {
    message: String,
}

impl JobError {
    /// An error with this message.
    pub fn new(message: impl std::fmt::Display) -> JobError {
        JobError {
            message: message.to_string(),
        }
    }

    /// The message recorded with the failed attempt.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for JobError {
    fn from(e: E) -> JobError {
        let mut message = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        JobError { message }
    }
}

impl std::fmt::Debug for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("JobError").field(&self.message).finish()
    }
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A type-erased handler: JSON arguments in, JSON result or error message out.
pub(crate) type Erased =
    Arc<dyn Fn(&Context, &[u8], usize) -> std::result::Result<Vec<u8>, String> + Send + Sync>;

/// The functions jobs call, by name. Closures cannot be stored on disk, so a
/// job names its handler and a worker looks the name up here.
///
/// # Examples
///
/// ```
/// use dueq::{Handlers, JobError};
///
/// let mut handlers = Handlers::new();
/// handlers.register("count_words", |text: String| -> Result<usize, JobError> {
///     Ok(text.split_whitespace().count())
/// });
/// handlers.register_with_context("import", |ctx, path: String| -> Result<(), JobError> {
///     ctx.heartbeat()?; // extend the lease in a long job
///     let _ = (path, ctx.attempt());
///     Ok(())
/// });
/// assert!(handlers.contains("import"));
/// ```
#[derive(Clone, Default)]
pub struct Handlers {
    map: HashMap<String, Erased>,
    callbacks: HashMap<String, ErasedCallback>,
}

pub(crate) type ErasedCallback =
    Arc<dyn Fn(&Callback<'_>) -> std::result::Result<(), JobError> + Send + Sync>;

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.map.keys().collect();
        names.sort();
        let mut callbacks: Vec<&String> = self.callbacks.keys().collect();
        callbacks.sort();
        f.debug_struct("Handlers")
            .field("names", &names)
            .field("callbacks", &callbacks)
            .finish()
    }
}

impl Handlers {
    /// No handlers.
    pub fn new() -> Handlers {
        Handlers::default()
    }

    /// Registers `f` under `name`, replacing any handler of that name.
    ///
    /// A job's arguments are decoded from JSON into `A`; if they do not
    /// decode, the attempt fails with an error naming the handler and the
    /// type. The `Ok` value is stored as the job's result (JSON); an `Err`
    /// or a panic is a failed attempt, retried by the job's policy.
    pub fn register<A, R, E, F>(&mut self, name: impl Into<String>, f: F) -> &mut Handlers
    where
        A: DeserializeOwned,
        R: Serialize,
        E: Into<JobError>,
        F: Fn(A) -> std::result::Result<R, E> + Send + Sync + 'static,
    {
        self.register_with_context(name, move |_: &Context, args: A| f(args))
    }

    /// Registers `f`, which also gets the run's [`Context`] (job id,
    /// attempt, heartbeat), under `name`.
    pub fn register_with_context<A, R, E, F>(
        &mut self,
        name: impl Into<String>,
        f: F,
    ) -> &mut Handlers
    where
        A: DeserializeOwned,
        R: Serialize,
        E: Into<JobError>,
        F: Fn(&Context, A) -> std::result::Result<R, E> + Send + Sync + 'static,
    {
        let name = name.into();
        let handler_name = name.clone();
        let erased: Erased = Arc::new(move |ctx: &Context, args: &[u8], limit: usize| {
            let args: A = serde_json::from_slice(args).map_err(|e| {
                format!(
                    "the arguments do not decode into the argument type `{}` of handler {:?}: {e}",
                    std::any::type_name::<A>(),
                    handler_name
                )
            })?;
            let value = f(ctx, args).map_err(|e| e.into().message)?;
            encode_json(&value, "result", limit).map_err(|e| e.to_string())
        });
        self.map.insert(name, erased);
        self
    }

    /// Whether a handler is registered under `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Erased> {
        self.map.get(name)
    }

    /// Registers a callback under `name`, for jobs enqueued with
    /// [`JobBuilder::on_success`](crate::JobBuilder::on_success),
    /// [`on_failure`](crate::JobBuilder::on_failure) or
    /// [`on_stopped`](crate::JobBuilder::on_stopped) naming it (rq's
    /// callbacks; named, like handlers, because closures cannot be stored).
    ///
    /// A callback runs on the worker thread right after the run, before its
    /// outcome is recorded. As in rq, an `on_success` callback that fails or
    /// panics fails the attempt; an `on_failure` or `on_stopped` one that
    /// fails adds its error to the job's. A callback has its own time limit
    /// (the worker's [`callback_timeout`](crate::WorkerBuilder::callback_timeout),
    /// 60 s by default, rq's): past it, the attempt is recorded as failed
    /// with a timeout error, like a run past its `job_timeout`. An unknown
    /// callback name fails the attempt with an error naming it.
    ///
    /// # Examples
    ///
    /// ```
    /// use dueq::{Callback, CallbackKind, Handlers, JobError};
    ///
    /// let mut handlers = Handlers::new();
    /// handlers.callback("log", |cb: &Callback| -> Result<(), JobError> {
    ///     match cb.kind() {
    ///         CallbackKind::Success => println!("{} returned {:?}", cb.job_id(), cb.result::<i64>()?),
    ///         _ => println!("{} failed: {:?}", cb.job_id(), cb.error()),
    ///     }
    ///     Ok(())
    /// });
    /// ```
    pub fn callback<E, F>(&mut self, name: impl Into<String>, f: F) -> &mut Handlers
    where
        E: Into<JobError>,
        F: Fn(&Callback<'_>) -> std::result::Result<(), E> + Send + Sync + 'static,
    {
        self.callbacks.insert(
            name.into(),
            Arc::new(move |cb: &Callback<'_>| f(cb).map_err(Into::into)),
        );
        self
    }

    /// Whether a callback is registered under `name`.
    pub fn contains_callback(&self, name: &str) -> bool {
        self.callbacks.contains_key(name)
    }

    pub(crate) fn get_callback(&self, name: &str) -> Option<&ErasedCallback> {
        self.callbacks.get(name)
    }
}

/// Which callback is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallbackKind {
    /// After a successful run (`on_success`).
    Success,
    /// After a failed attempt, retried or not (`on_failure`).
    Failure,
    /// After a run that was stopped (`on_stopped`).
    Stopped,
}

/// What a callback sees: the job and how its run ended.
pub struct Callback<'a> {
    pub(crate) kind: CallbackKind,
    pub(crate) ctx: &'a Context,
    pub(crate) result: Option<&'a [u8]>,
    pub(crate) error: Option<&'a str>,
}

impl std::fmt::Debug for Callback<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callback")
            .field("kind", &self.kind)
            .field("job_id", &self.ctx.id)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl Callback<'_> {
    /// Which callback this is.
    pub fn kind(&self) -> CallbackKind {
        self.kind
    }

    /// The job's id.
    pub fn job_id(&self) -> &str {
        &self.ctx.id
    }

    /// The job's queue.
    pub fn queue(&self) -> &str {
        &self.ctx.queue
    }

    /// The job's handler name.
    pub fn handler(&self) -> &str {
        &self.ctx.handler
    }

    /// The attempt that just ended (1 for the first).
    pub fn attempt(&self) -> u32 {
        self.ctx.attempt
    }

    /// The value the run returned, decoded as `T` (`None` unless it
    /// succeeded).
    ///
    /// # Errors
    ///
    /// [`Error::Decode`](crate::Error::Decode) if it does not decode as `T`.
    pub fn result<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        self.result
            .map(|r| crate::engine::decode_json(r, "the result"))
            .transpose()
    }

    /// The run's error (`None` if it succeeded).
    pub fn error(&self) -> Option<&str> {
        self.error
    }

    /// Whether the callback's time limit has passed: a long callback checks
    /// this and returns.
    pub fn should_stop(&self) -> bool {
        self.ctx.should_stop()
    }

    /// The run's context (to update the job's `meta`, say).
    pub fn context(&self) -> &Context {
        self.ctx
    }
}

/// The state of one run shared by its runner thread and the dispatcher.
#[derive(Debug)]
pub(crate) struct RunState {
    /// When the run (or its current callback) must end, in the clock's
    /// monotonic ms (`Store::mono_ms`);
    /// `u64::MAX`: no limit.
    pub(crate) deadline: std::sync::atomic::AtomicU64,
    /// The dispatcher recorded the run as timed out.
    pub(crate) timed_out: std::sync::atomic::AtomicBool,
    /// When its handler started (store-clock ms); `u64::MAX` while it waits
    /// in a worker's prefetch.
    pub(crate) started_at: std::sync::atomic::AtomicU64,
}

impl RunState {
    pub(crate) fn new() -> RunState {
        RunState {
            deadline: std::sync::atomic::AtomicU64::new(u64::MAX),
            timed_out: std::sync::atomic::AtomicBool::new(false),
            started_at: std::sync::atomic::AtomicU64::new(u64::MAX),
        }
    }
}

/// What a running job can see and do: its id and attempt, and its lease.
pub struct Context {
    pub(crate) store: Store,
    pub(crate) id: String,
    pub(crate) queue: String,
    pub(crate) handler: String,
    pub(crate) attempt: u32,
    pub(crate) token: u64,
    pub(crate) lease: Duration,
    pub(crate) run: Arc<RunState>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("id", &self.id)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// The job's id.
    pub fn job_id(&self) -> &str {
        &self.id
    }

    /// The job's queue.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The handler name the job was enqueued with.
    pub fn handler(&self) -> &str {
        &self.handler
    }

    /// Which run this is: 1 for the first, 2 for the first retry, ...
    /// Runs lost to a crash count too.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The run's lease token. Tokens grow with every run, across restarts.
    pub fn lease_token(&self) -> u64 {
        self.token
    }

    /// Whether the run should stop: its `job_timeout` (or, in a callback,
    /// the callback's time limit) has passed, or [`Job::stop`](crate::Job::stop)
    /// was called. A handler that loops checks this (or [`Context::check`])
    /// and returns; dueq cannot kill a thread.
    pub fn should_stop(&self) -> bool {
        use std::sync::atomic::Ordering;
        self.run.timed_out.load(Ordering::SeqCst)
            || self.store.mono_ms() >= self.run.deadline.load(Ordering::SeqCst)
            || self.store.engine().stop_requested(&self.id, self.token)
    }

    /// `Err` if the run should stop (see [`Context::should_stop`]), for
    /// `ctx.check()?` in a loop.
    ///
    /// # Errors
    ///
    /// A [`JobError`] saying why the run must stop.
    pub fn check(&self) -> std::result::Result<(), JobError> {
        if self.store.engine().stop_requested(&self.id, self.token) {
            return Err(JobError::new("stopped: job.stop() was called"));
        }
        if self.should_stop() {
            return Err(JobError::new("timeout: the run passed its time limit"));
        }
        Ok(())
    }

    /// Sets `key` in the job's `meta` to `value`, durably and without
    /// touching the other keys (for progress, say). Readers see it at once
    /// through [`Job::meta`](crate::Job::meta).
    ///
    /// # Errors
    ///
    /// [`Error::Encode`](crate::Error::Encode) or
    /// [`Error::PayloadTooLarge`](crate::Error::PayloadTooLarge) for a value
    /// that does not encode or fit; [`Error::NoSuchJob`](crate::Error::NoSuchJob)
    /// if the job was deleted; storage errors.
    pub fn set_meta<V: Serialize + ?Sized>(&self, key: &str, value: &V) -> Result<()> {
        let bytes = encode_json(value, "meta", self.store.max_payload())?;
        self.store
            .engine()
            .update_meta(&self.id, key, Some(&bytes))?;
        self.store.commit()
    }

    /// Extends the run's lease by the worker's lease duration from now, and
    /// tells the handler whether its run still holds the job. The pool
    /// renews the leases of its runs by itself; long handlers call this to
    /// find out early that they were fenced (the job was deleted, or timed
    /// out) and can stop.
    ///
    /// # Errors
    ///
    /// [`Error::LeaseLost`](crate::Error::LeaseLost) if this run was fenced
    /// (its lease lapsed and the job was taken over, or it was deleted): stop
    /// working, the outcome will not be recorded. Storage errors.
    pub fn heartbeat(&self) -> Result<()> {
        self.store.engine().heartbeat(
            &self.id,
            self.token,
            dur_ms(self.lease),
            self.store.now_ms(),
        )
    }
}
