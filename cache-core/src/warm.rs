//! Cache warming: named warmers that load and store a set of keys, run at start, after a flush
//! and on an interval, with bounded concurrency, a progress log and stats.
//!
//! A warmer is an async closure given a [`Warm`] handle; for each key it wants present it calls
//! [`Warm::load`] (or [`Warm::try_load`]) with the key, its policy and the loader, exactly as a
//! read would. Each load is a read-through (`get_or_load`): a key already cached is left as it
//! is (counted as `present`), a missing one is loaded and stored with the same race guard as a
//! read (an invalidation that lands during the load wins), and concurrent readers of the same
//! key share the warmer's load. At most [`WarmSchedule::concurrency`] loads of one run are in
//! flight at once; the run ends when the closure has returned and every load has finished.
//!
//! ```
//! use std::time::Duration;
//! use cache_core::{Cache, Policy};
//! use cache_core::warm::WarmSchedule;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let cache = Cache::builder().namespace("docs_warm").build().unwrap();
//! cache.register_warmer(
//!     "top-trigs",
//!     WarmSchedule::new().concurrency(8).every(Duration::from_secs(600)),
//!     |warm| async move {
//!         for id in [1u32, 2, 3] {
//!             let key = warm.cache().key("trig").id(id).build();
//!             warm.load(key, Policy::ttl(Duration::from_secs(3600)), move || async move {
//!                 format!("trig {id}") // the database query
//!             })
//!             .await;
//!         }
//!     },
//! );
//! // It runs at start (in the background): wait for that first run.
//! let report = cache.warmed("top-trigs", 1).await.unwrap();
//! assert_eq!((report.keys, report.loaded), (3, 3));
//! // Run it now and wait for it (the admin endpoint and the CLI do the same): all present.
//! let again = cache.warm("top-trigs").await.unwrap().expect("not running");
//! assert_eq!(again.present, 3);
//! # });
//! ```
//!
//! **When warmers run.** At registration (the "start" of a service registers its warmers at
//! start), unless [`WarmSchedule::at_start`] is off; after [`Cache::clear`] (a flush of the
//! namespace) and [`Cache::delete_pattern`] unless [`WarmSchedule::after_flush`] is off; every
//! [`WarmSchedule::every`] when set; and on demand with [`Cache::warm`]. A warmer runs one run at
//! a time: a trigger while it runs is skipped (logged). The interval task ends when the last
//! handle of the cache is dropped. Triggers need a tokio runtime; outside one, only
//! [`Cache::warm`] runs warmers.
//!
//! **What is logged and counted.** `cache_warm_started`, `cache_warm_progress` (every 1 000
//! keys) and `cache_warm_finished` (keys, loaded, present, failed, duration) `tracing` events;
//! [`Cache::warm_status`] (also in the admin stats, `warmers`) gives each warmer's runs and last
//! run.
//!
//! Warmers fill the cache through the engine, so they never serve or store anything a read would
//! not: bad loaders fail their keys only (counted in `failed`, nothing stored).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{watch, Semaphore};
use tracing::info;

use crate::{Cache, CacheError, CacheKey, CacheStatus, Policy};

/// Keys between two progress log events.
const PROGRESS_EVERY: u64 = 1_000;

/// When and how a warmer runs ([`Cache::register_warmer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarmSchedule {
    at_start: bool,
    after_flush: bool,
    every: Option<Duration>,
    concurrency: usize,
}

impl Default for WarmSchedule {
    fn default() -> Self {
        WarmSchedule::new()
    }
}

impl WarmSchedule {
    /// At start and after a flush, no interval, 4 loads at a time.
    pub fn new() -> WarmSchedule {
        WarmSchedule {
            at_start: true,
            after_flush: true,
            every: None,
            concurrency: 4,
        }
    }

    /// Whether the warmer runs when registered (default `true`).
    pub fn at_start(mut self, yes: bool) -> Self {
        self.at_start = yes;
        self
    }

    /// Whether the warmer runs after [`Cache::clear`] and [`Cache::delete_pattern`] (default
    /// `true`).
    pub fn after_flush(mut self, yes: bool) -> Self {
        self.after_flush = yes;
        self
    }

    /// Runs the warmer again every `interval` (measured from the start of a run).
    pub fn every(mut self, interval: Duration) -> Self {
        self.every = Some(interval.max(Duration::from_millis(1)));
        self
    }

    /// Loads in flight at once in one run (at least 1; default 4).
    pub fn concurrency(mut self, loads: usize) -> Self {
        self.concurrency = loads.max(1);
        self
    }
}

/// What one warmer run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct WarmReport {
    /// The warmer.
    pub name: String,
    /// Keys the run asked for.
    pub keys: u64,
    /// Keys loaded by the run's loaders (missing before).
    pub loaded: u64,
    /// Keys already cached (left as they were).
    pub present: u64,
    /// Keys whose loader failed (nothing stored).
    pub failed: u64,
    /// Duration of the run, in milliseconds.
    pub duration_ms: u64,
}

/// A registered warmer's state ([`Cache::warm_status`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct WarmerStatus {
    /// The warmer.
    pub name: String,
    /// Completed runs.
    pub runs: u64,
    /// Whether a run is in progress.
    pub running: bool,
    /// Triggers skipped because a run was in progress.
    pub skipped: u64,
    /// The last completed run, if any.
    pub last: Option<WarmReport>,
}

type RunFn = dyn Fn(Warm) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync;

/// A registered warmer.
pub(crate) struct Warmer {
    name: String,
    schedule: WarmSchedule,
    run: Box<RunFn>,
    running: AtomicBool,
    skipped: AtomicU64,
    /// Completed runs, and the last report.
    done: watch::Sender<(u64, Option<WarmReport>)>,
}

/// The handle a warmer is given for one run: loads keys through the cache, at most
/// [`WarmSchedule::concurrency`] at a time.
#[derive(Clone)]
pub struct Warm {
    cache: Cache,
    name: Arc<str>,
    permits: Arc<Semaphore>,
    tasks: Arc<Mutex<tokio::task::JoinSet<()>>>,
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    keys: AtomicU64,
    loaded: AtomicU64,
    present: AtomicU64,
    failed: AtomicU64,
}

impl std::fmt::Debug for Warm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warm")
            .field("warmer", &self.name)
            .finish_non_exhaustive()
    }
}

impl Warm {
    /// The cache being warmed (to build keys).
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Makes `key` present: a read-through with `loader` (see the [module docs](self)). Waits
    /// for a free load slot, then returns while the load runs; the run waits for it.
    pub async fn load<T, F, Fut>(&self, key: CacheKey, policy: impl Into<Policy>, loader: F)
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        self.try_load(key, policy, move || async move {
            Ok::<T, std::convert::Infallible>(loader().await)
        })
        .await;
    }

    /// Like [`load`](Self::load) for a fallible loader: an error counts the key as failed and
    /// stores nothing.
    pub async fn try_load<T, E, F, Fut>(&self, key: CacheKey, policy: impl Into<Policy>, loader: F)
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        E: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let (cache, policy) = (self.cache.clone(), policy.into());
        self.spawn(async move {
            match cache.fetch(&key, policy, loader).await {
                Ok(f) if f.status == CacheStatus::Hit || f.status == CacheStatus::Stale => {
                    WarmResult::Present
                }
                Ok(_) => WarmResult::Loaded,
                Err(_) => WarmResult::Failed,
            }
        })
        .await;
    }
}

/// What warming one key did, for [`Warm::spawn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WarmResult {
    /// It was cached already.
    Present,
    /// It was loaded and stored.
    Loaded,
    /// Its load failed (nothing stored).
    Failed,
}

/// The marker of a request sent by a warmer (a request extension): the analytics layers do not
/// record it, so warming does not count as traffic.
#[derive(Debug, Clone, Copy, Default)]
pub struct WarmRequest;

impl Warm {
    /// Runs one unit of warming that is not a [`load`](Self::load) (for example a request
    /// replayed through a service's cache layer), in a load slot, counted by what it returns.
    /// Waits for a free slot, then returns while it runs; the run waits for it.
    pub async fn spawn<Fut>(&self, unit: Fut)
    where
        Fut: Future<Output = WarmResult> + Send + 'static,
    {
        let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await else {
            return;
        };
        let this = self.clone();
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            let _permit = permit;
            this.count(unit.await);
        });
    }

    /// Counts one key warmed.
    fn count(&self, result: WarmResult) {
        let n = self.counts.keys.fetch_add(1, Ordering::Relaxed) + 1;
        if n % PROGRESS_EVERY == 0 {
            info!(name: "cache_warm_progress", event = "cache_warm_progress", warmer = %self.name, keys = n, "cache warming in progress");
        }
        let slot = match result {
            WarmResult::Present => &self.counts.present,
            WarmResult::Loaded => &self.counts.loaded,
            WarmResult::Failed => &self.counts.failed,
        };
        slot.fetch_add(1, Ordering::Relaxed);
    }
}

/// Why a run starts (for the log).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Trigger {
    Start,
    Flush,
    Interval,
    Demand,
}

impl std::fmt::Debug for Warmer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warmer")
            .field("name", &self.name)
            .field("schedule", &self.schedule)
            .finish_non_exhaustive()
    }
}

impl Warmer {
    fn status(&self) -> WarmerStatus {
        let (runs, last) = self.done.borrow().clone();
        WarmerStatus {
            name: self.name.clone(),
            runs,
            running: self.running.load(Ordering::Acquire),
            skipped: self.skipped.load(Ordering::Relaxed),
            last,
        }
    }

    /// One run, unless one is in progress (`None`).
    async fn run_once(&self, cache: &Cache, trigger: Trigger) -> Option<WarmReport> {
        if self.running.swap(true, Ordering::AcqRel) {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            info!(name: "cache_warm_skipped", event = "cache_warm_skipped", warmer = %self.name, trigger = ?trigger, "cache warmer already running; trigger skipped");
            return None;
        }
        let started = Instant::now();
        info!(name: "cache_warm_started", event = "cache_warm_started", warmer = %self.name, trigger = ?trigger, "cache warming started");
        let warm = Warm {
            cache: cache.clone(),
            name: Arc::from(self.name.as_str()),
            permits: Arc::new(Semaphore::new(self.schedule.concurrency)),
            tasks: Arc::new(Mutex::new(tokio::task::JoinSet::new())),
            counts: Arc::new(Counts::default()),
        };
        (self.run)(warm.clone()).await;
        loop {
            let next = {
                let mut tasks = warm.tasks.lock().unwrap_or_else(PoisonError::into_inner);
                // A task that finished is taken out without waiting; otherwise wait below.
                match tasks.try_join_next() {
                    Some(_) => continue,
                    None if tasks.is_empty() => break,
                    None => std::mem::take(&mut *tasks),
                }
            };
            let mut next = next;
            while next.join_next().await.is_some() {}
        }
        let c = &warm.counts;
        let report = WarmReport {
            name: self.name.clone(),
            keys: c.keys.load(Ordering::Relaxed),
            loaded: c.loaded.load(Ordering::Relaxed),
            present: c.present.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        info!(
            name: "cache_warm_finished", event = "cache_warm_finished",
            warmer = %self.name,
            keys = report.keys,
            loaded = report.loaded,
            present = report.present,
            failed = report.failed,
            duration_ms = report.duration_ms,
            "cache warming finished"
        );
        self.running.store(false, Ordering::Release);
        self.done.send_modify(|(runs, last)| {
            *runs += 1;
            *last = Some(report.clone());
        });
        Some(report)
    }
}

impl Cache {
    /// Registers a warmer named `name` (see the [`warm`](crate::warm) module docs); a warmer
    /// registered under the same name replaces the old one for later triggers. Runs it now
    /// when [`WarmSchedule::at_start`] (in the background), and starts its interval task when
    /// [`WarmSchedule::every`] is set.
    pub fn register_warmer<F, Fut>(&self, name: &str, schedule: WarmSchedule, warmer: F)
    where
        F: Fn(Warm) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let entry = Arc::new(Warmer {
            name: name.to_owned(),
            schedule,
            run: Box::new(move |w| Box::pin(warmer(w))),
            running: AtomicBool::new(false),
            skipped: AtomicU64::new(0),
            done: watch::channel((0, None)).0,
        });
        {
            let mut all = self
                .warmers()
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            all.retain(|w| w.name != name);
            all.push(Arc::clone(&entry));
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if schedule.at_start {
            let (cache, w) = (self.clone(), Arc::clone(&entry));
            handle.spawn(async move {
                w.run_once(&cache, Trigger::Start).await;
            });
        }
        if let Some(every) = schedule.every {
            let (weak, w) = (self.downgrade(), Arc::downgrade(&entry));
            handle.spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await; // the first tick is now: the start run covers it
                loop {
                    tick.tick().await;
                    // Stops with the cache, or when the warmer was replaced.
                    let (Some(cache), Some(w)) = (weak.upgrade(), w.upgrade()) else {
                        return;
                    };
                    w.run_once(&cache, Trigger::Interval).await;
                }
            });
        }
    }

    /// Runs the warmer `name` now and waits for the run; its report. `None` when a run was
    /// already in progress (the trigger is skipped).
    ///
    /// # Errors
    /// [`CacheError::InvalidArgument`] when no warmer has that name.
    pub async fn warm(&self, name: &str) -> Result<Option<WarmReport>, CacheError> {
        let w = self.warmer(name)?;
        Ok(w.run_once(self, Trigger::Demand).await)
    }

    /// Waits until the warmer `name` has completed at least `runs` runs (since registration);
    /// its last report.
    ///
    /// # Errors
    /// [`CacheError::InvalidArgument`] when no warmer has that name.
    pub async fn warmed(&self, name: &str, runs: u64) -> Result<WarmReport, CacheError> {
        let w = self.warmer(name)?;
        let mut rx = w.done.subscribe();
        let state = rx
            .wait_for(|(n, _)| *n >= runs)
            .await
            .map_err(|_| CacheError::InvalidArgument(format!("warmer `{name}` was dropped")))?;
        Ok(state.1.clone().unwrap_or_default())
    }

    /// Every registered warmer's state, in registration order.
    pub fn warm_status(&self) -> Vec<WarmerStatus> {
        self.warmers()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|w| w.status())
            .collect()
    }

    /// Runs, in the background, the warmers that run after a flush.
    pub(crate) fn after_flush(&self) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let due: Vec<Arc<Warmer>> = self
            .warmers()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|w| w.schedule.after_flush)
            .cloned()
            .collect();
        for w in due {
            let cache = self.clone();
            handle.spawn(async move {
                w.run_once(&cache, Trigger::Flush).await;
            });
        }
    }

    fn warmer(&self, name: &str) -> Result<Arc<Warmer>, CacheError> {
        self.warmers()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|w| w.name == name)
            .cloned()
            .ok_or_else(|| CacheError::InvalidArgument(format!("no warmer named `{name}`")))
    }
}
