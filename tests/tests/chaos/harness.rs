//! The chaos harness: one example service under load on a Redis-backed cache, each fault in
//! turn, and per fault the measurements of the report (see `tests/chaos.rs` for what is
//! asserted and how to run it).
//!
//! A run of one service, per fault (a *phase*):
//!
//! 1. warm: every probe entity's reads and the hit probe are read twice (cached);
//! 2. load: `tasks` keep-alive clients at `rps` requests per second in total (reads of entities
//!    and lists, writes: creates, updates, deletes), for `pre`;
//! 3. the fault, for `fault`; meanwhile each probe entity (a known-cached entity) is written
//!    once, spread over the window, besides the load's own writes;
//! 4. the fault ends; "Redis answers again" is the instant a fresh connection's `SET` succeeds;
//!    from there the hit probe (an entity no one writes) is read every 10 ms until it answers
//!    `X-Cache-Status: HIT`;
//! 5. the load goes on for `post`, then stops;
//! 6. stale check: every entity written in the phase (load and probes) and the global lists
//!    are read through the API and compared with the database's current rows (read directly
//!    with the example's own query functions): a body that differs is a stale read;
//! 7. `FLUSHALL`, so that the next phase starts from an empty cache and its numbers are its
//!    own.
#![allow(unreachable_pub, dead_code)]

use std::collections::BTreeSet;
use std::fmt::{Debug, Write as _};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cache_tests::http::{HttpClient, HttpResponse};
use cache_tests::{EvictionPolicy, PauseMode, RedisServer};
use serde_json::Value;

/// One fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// No fault: the reference row.
    Baseline,
    /// `SIGKILL`, then a new server on the same port (empty).
    KillRestart,
    /// `SIGSTOP` / `SIGCONT`: connections stay open, nothing answers.
    Sigstop,
    /// `DEBUG SLEEP`: the server is busy and answers everything afterwards.
    DebugSleep,
    /// `CLIENT PAUSE WRITE`: reads answer, writes (and scripts) wait.
    ClientPauseWrite,
    /// `CLIENT PAUSE ALL`: every command waits.
    ClientPauseAll,
    /// `maxmemory` reached with `noeviction`: writes fail with `OOM`.
    FullNoEviction,
    /// `maxmemory` reached with `allkeys-lru`: writes evict any key.
    FullAllKeysLru,
    /// `CLIENT KILL TYPE normal` every 100 ms: connections reset.
    KillClients,
}

impl Fault {
    /// Every fault, in the order a run injects them.
    pub const ALL: [Fault; 9] = [
        Fault::Baseline,
        Fault::KillRestart,
        Fault::Sigstop,
        Fault::DebugSleep,
        Fault::ClientPauseWrite,
        Fault::ClientPauseAll,
        Fault::FullNoEviction,
        Fault::FullAllKeysLru,
        Fault::KillClients,
    ];

    /// The name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Baseline => "baseline (no fault)",
            Fault::KillRestart => "kill + restart",
            Fault::Sigstop => "SIGSTOP/SIGCONT",
            Fault::DebugSleep => "DEBUG SLEEP",
            Fault::ClientPauseWrite => "CLIENT PAUSE WRITE",
            Fault::ClientPauseAll => "CLIENT PAUSE ALL",
            Fault::FullNoEviction => "maxmemory noeviction",
            Fault::FullAllKeysLru => "maxmemory allkeys-lru",
            Fault::KillClients => "CLIENT KILL (every 100ms)",
        }
    }

    /// The name `CHAOS_FAULTS` uses.
    pub fn slug(self) -> &'static str {
        match self {
            Fault::Baseline => "baseline",
            Fault::KillRestart => "kill",
            Fault::Sigstop => "sigstop",
            Fault::DebugSleep => "debug-sleep",
            Fault::ClientPauseWrite => "pause-write",
            Fault::ClientPauseAll => "pause-all",
            Fault::FullNoEviction => "oom",
            Fault::FullAllKeysLru => "lru",
            Fault::KillClients => "kill-clients",
        }
    }
}

/// How long and how hard a run is (see `tests/chaos.rs` for the variables).
#[derive(Debug, Clone)]
pub struct Plan {
    /// `CHAOS_FULL=1`.
    pub full: bool,
    /// Unmeasured load before the first fault.
    pub warm_up: Duration,
    /// Load before the fault.
    pub pre: Duration,
    /// The fault window.
    pub fault: Duration,
    /// Load after Redis answers again.
    pub post: Duration,
    /// How long the first HIT is waited for (then reported as not seen).
    pub hit_wait: Duration,
    /// The first HIT must come within this (asserted).
    pub hit_within: Duration,
    /// Requests per second of the load, in total.
    pub rps: u32,
    /// Concurrent keep-alive clients.
    pub tasks: usize,
    /// Percentage of writes in the load.
    pub write_percent: u32,
    /// A request slower than this is a failure.
    pub request_timeout: Duration,
    /// Wait before stale reads are read again (lost or late?).
    pub stale_grace: Duration,
    /// The faults injected, in order.
    pub faults: Vec<Fault>,
    /// Faults left out of this run (the rotating subset of the bounded form).
    pub skipped: Vec<Fault>,
    /// PRNG seed of the load (and of the rotating subset).
    pub seed: u64,
    /// `CHAOS_ASSERT=0` turns the assertions off (report only).
    pub assert: bool,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_num<T: std::str::FromStr>(name: &str) -> Option<T> {
    env(name).map(|v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?}: not a number"))
    })
}

impl Plan {
    /// The plan from the environment: bounded unless `CHAOS_FULL=1`.
    ///
    /// `CHAOS_SUBSET=n` runs the baseline and `n` of the other faults per service, chosen by
    /// the seed (so the subset rotates between runs), for machines where every fault takes
    /// too long; `CHAOS_FAULTS` names them instead.
    pub fn from_env() -> Plan {
        let full = env("CHAOS_FULL").is_some_and(|v| v != "0");
        let fault = env_num::<f64>("CHAOS_SECONDS")
            .map(Duration::from_secs_f64)
            .unwrap_or(if full {
                Duration::from_secs(10)
            } else {
                Duration::from_millis(1000)
            });
        let seed = env_num::<u64>("CHAOS_SEED").unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() ^ u64::from(d.subsec_nanos()))
                .unwrap_or(0)
        });
        let mut faults: Vec<Fault> = match env("CHAOS_FAULTS") {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    *Fault::ALL
                        .iter()
                        .find(|f| f.slug() == s)
                        .unwrap_or_else(|| {
                            panic!(
                                "CHAOS_FAULTS: unknown fault {s:?}; known: {}",
                                Fault::ALL.map(Fault::slug).join(",")
                            )
                        })
                })
                .collect(),
            None => Fault::ALL.to_vec(),
        };
        let mut skipped = Vec::new();
        if let (Some(bounded_faults), None) =
            (env_num::<usize>("CHAOS_SUBSET"), env("CHAOS_FAULTS"))
        {
            // The rotating subset: the baseline, then `bounded_faults` of the others, chosen by
            // the seed (printed, so a run is reproducible with CHAOS_SEED).
            let mut others: Vec<Fault> = faults
                .iter()
                .copied()
                .filter(|f| *f != Fault::Baseline)
                .collect();
            if bounded_faults < others.len() {
                fastrand::Rng::with_seed(seed).shuffle(&mut others);
                skipped = others.split_off(bounded_faults);
                let keep = others;
                faults.retain(|f| *f == Fault::Baseline || keep.contains(f));
            }
        }
        let scale = |fraction: f64| fault.mul_f64(fraction).max(Duration::from_millis(300));
        Plan {
            full,
            warm_up: if full {
                Duration::from_secs(3)
            } else {
                Duration::from_secs(1)
            },
            pre: scale(if full { 0.3 } else { 0.4 }),
            fault,
            post: scale(0.5),
            hit_wait: if full {
                Duration::from_secs(30)
            } else {
                Duration::from_secs(5)
            },
            hit_within: Duration::from_millis(env_num("CHAOS_HIT_WITHIN_MS").unwrap_or(1000)),
            rps: env_num("CHAOS_RPS").unwrap_or(300),
            tasks: env_num("CHAOS_TASKS").unwrap_or(32),
            write_percent: env_num("CHAOS_WRITE_PERCENT").unwrap_or(10),
            request_timeout: fault + Duration::from_secs(10),
            stale_grace: if full {
                Duration::from_secs(5)
            } else {
                Duration::from_secs(1)
            },
            faults,
            skipped,
            seed,
            assert: env("CHAOS_ASSERT").is_none_or(|v| v != "0"),
        }
    }
}

/// One request of the load (or a probe write).
#[derive(Debug, Clone)]
pub struct Req<Op> {
    /// `GET`, `POST`, ...
    pub method: &'static str,
    /// Path and query.
    pub path: String,
    /// Extra headers (`X-User-Id`, ...).
    pub headers: Vec<(&'static str, String)>,
    /// A JSON body (sent with `Content-Type: application/json`).
    pub body: Option<Value>,
    /// The statuses that count as success.
    pub expect: &'static [u16],
    /// Whether it writes.
    pub write: bool,
    /// What the service needs to know about it afterwards.
    pub op: Op,
}

impl<Op> Req<Op> {
    /// A `GET` expecting 200.
    pub fn get(path: String, headers: Vec<(&'static str, String)>, op: Op) -> Req<Op> {
        Req {
            method: "GET",
            path,
            headers,
            body: None,
            expect: &[200],
            write: false,
            op,
        }
    }
}

/// A read compared with the database in the stale check.
#[derive(Debug, Clone)]
pub struct Checked {
    /// What was read.
    pub path: String,
    /// `Some(description)` when the body was older than the database.
    pub stale: Option<String>,
    /// `Some(description)` when the read failed (5xx, connection error).
    pub error: Option<String>,
}

/// An example service under test.
pub trait Service: Send + Sync + 'static {
    /// What [`Service::written`] needs about a request.
    type Op: Send + Sync + 'static;
    /// The state of one load task (its own entities, its PRNG).
    type Task: Send + 'static;
    /// A written entity, checked after each fault.
    type Entity: Clone + Ord + Debug + Send + Sync + 'static;

    /// `gallery (axum)`, `trigs (actix-web)`.
    fn name(&self) -> &'static str;
    /// Where it listens (loopback).
    fn addr(&self) -> SocketAddr;
    /// The state of load task `index`.
    fn new_task(&self, index: usize, seed: u64) -> Self::Task;
    /// The next request of a load task.
    fn next_request(&self, task: &mut Self::Task) -> Req<Self::Op>;
    /// The entities `req` wrote: known ones from the request, created ones from `reply` (a
    /// 2xx reply, or `None` when the request failed). Updates the task's own entities.
    fn written(
        &self,
        task: Option<&mut Self::Task>,
        req: &Req<Self::Op>,
        reply: Option<&HttpResponse>,
    ) -> Vec<Self::Entity>;
    /// Entities created at start, read before each fault and written during it.
    fn probes(&self) -> Vec<Self::Entity>;
    /// The reads that show a probe entity (warmed before each fault).
    fn probe_reads(&self, probe: &Self::Entity) -> Vec<(String, Vec<(&'static str, String)>)>;
    /// A write to a probe entity (the `seq`-th of the run).
    fn probe_write(&self, probe: &Self::Entity, seq: u64) -> Req<Self::Op>;
    /// A cached read no one writes: polled for the first HIT after each fault.
    fn hit_probe(&self) -> String;
    /// The route group of a read whose `X-Cache-Status` the report tallies during the fault
    /// (`None`: not tallied).
    fn status_group(&self, path: &str) -> Option<&'static str>;
    /// Compares every read showing `entity` with the database.
    fn check(
        &self,
        client: &mut HttpClient,
        entity: &Self::Entity,
    ) -> impl std::future::Future<Output = Vec<Checked>>;
    /// Compares the global lists (touched by every write) with the database.
    fn check_globals(
        &self,
        client: &mut HttpClient,
    ) -> impl std::future::Future<Output = Vec<Checked>>;
}

/// `GET path` with `headers`, compared with `truth` (the database's current value as JSON;
/// `None`: the row does not exist, the API must answer 404).
pub async fn compare(
    client: &mut HttpClient,
    path: &str,
    headers: &[(&str, String)],
    truth: Option<Value>,
) -> Checked {
    let hdrs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut out = Checked {
        path: path.to_owned(),
        stale: None,
        error: None,
    };
    let reply = match tokio::time::timeout(
        Duration::from_secs(10),
        client.request("GET", path, &hdrs, None),
    )
    .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            out.error = Some(format!("GET {path}: {e}"));
            return out;
        }
        Err(_) => {
            out.error = Some(format!("GET {path}: no reply within 10 s"));
            return out;
        }
    };
    let cache = reply.cache_status().unwrap_or("-").to_owned();
    match (truth, reply.status) {
        (None, 404) => {}
        (None, 200) => {
            out.stale = Some(format!(
                "GET {path} [{cache}]: served a row the database no longer has"
            ));
        }
        (Some(truth), 200) => match serde_json::from_slice::<Value>(&reply.body) {
            Ok(body) if body == truth => {}
            Ok(body) => {
                out.stale = Some(format!(
                    "GET {path} [{cache}]: {}",
                    describe_difference(&body, &truth)
                ));
            }
            Err(e) => out.error = Some(format!("GET {path}: body is not JSON: {e}")),
        },
        (Some(_), 404) => {
            out.stale = Some(format!(
                "GET {path} [{cache}]: 404 for a row the database has"
            ));
        }
        (_, status) => {
            out.error = Some(format!(
                "GET {path}: {status} {}",
                truncate(&reply.text(), 200)
            ));
        }
    }
    out
}

/// Which fields differ (served vs database), briefly: objects field by field, arrays by
/// length or their first differing element, two levels deep.
pub fn describe_difference(served: &Value, truth: &Value) -> String {
    describe(served, truth, 2)
}

fn describe(served: &Value, truth: &Value, depth: usize) -> String {
    match (served, truth) {
        (Value::Object(a), Value::Object(b)) if depth > 0 => {
            let mut parts = Vec::new();
            for (k, vb) in b {
                match a.get(k) {
                    Some(va) if va == vb => {}
                    Some(va) => parts.push(format!("{k}: {}", describe(va, vb, depth - 1))),
                    None => parts.push(format!("{k}: missing")),
                }
            }
            if parts.is_empty() {
                "extra fields served".into()
            } else {
                parts.join("; ")
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() != b.len() => {
            format!("served {} elements / db {}", a.len(), b.len())
        }
        (Value::Array(a), Value::Array(b)) if depth > 0 => {
            match a.iter().zip(b).position(|(x, y)| x != y) {
                Some(i) => format!("[{i}] {}", describe(&a[i], &b[i], depth - 1)),
                None => "equal".into(),
            }
        }
        _ => format!(
            "served {} / db {}",
            truncate(&served.to_string(), 80),
            truncate(&truth.to_string(), 80)
        ),
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        s.to_owned()
    } else {
        let mut end = n;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    }
}

/// One request's outcome.
#[derive(Debug, Clone)]
struct Sample {
    write: bool,
    /// When it was sent.
    at: Instant,
    micros: u64,
    ok: bool,
    /// The route group ([`Service::status_group`]) and `X-Cache-Status` of a read.
    status: Option<(&'static str, String)>,
}

/// What a load task (or the probe writer) hands back.
struct Outcome<E> {
    samples: Vec<Sample>,
    failures: Vec<String>,
    written: Vec<E>,
}

impl<E> Default for Outcome<E> {
    fn default() -> Self {
        Outcome {
            samples: Vec::new(),
            failures: Vec::new(),
            written: Vec::new(),
        }
    }
}

impl<E> Outcome<E> {
    fn absorb(&mut self, other: Outcome<E>) {
        self.samples.extend(other.samples);
        self.failures.extend(other.failures);
        self.written.extend(other.written);
    }
}

/// Sends `req` on `client`; records the sample, a failure, and what it wrote.
async fn send<S: Service>(
    svc: &S,
    client: &mut HttpClient,
    task: Option<&mut S::Task>,
    req: &Req<S::Op>,
    timeout: Duration,
    out: &mut Outcome<S::Entity>,
) {
    let body = req.body.as_ref().map(|b| b.to_string().into_bytes());
    let mut headers: Vec<(&str, &str)> =
        req.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    let started = Instant::now();
    let result = tokio::time::timeout(
        timeout,
        client.request(req.method, &req.path, &headers, body.as_deref()),
    )
    .await;
    let micros = started.elapsed().as_micros() as u64;
    let status = match &result {
        Ok(Ok(reply)) if !req.write => svc.status_group(&req.path).map(|g| {
            (
                g,
                reply
                    .cache_status()
                    .map_or_else(|| format!("{} (no status)", reply.status), str::to_owned),
            )
        }),
        _ => None,
    };
    let (ok, reply) = match result {
        Ok(Ok(reply)) if req.expect.contains(&reply.status) => (true, Some(reply)),
        Ok(Ok(reply)) => {
            out.failures.push(format!(
                "{} {}: {} {}",
                req.method,
                req.path,
                reply.status,
                truncate(&reply.text(), 160)
            ));
            (false, None)
        }
        Ok(Err(e)) => {
            out.failures
                .push(format!("{} {}: {e}", req.method, req.path));
            (false, None)
        }
        Err(_) => {
            // Drop the connection: its reply may still come.
            *client = HttpClient::new(client.addr());
            out.failures.push(format!(
                "{} {}: no reply within {} ms",
                req.method,
                req.path,
                timeout.as_millis()
            ));
            (false, None)
        }
    };
    out.samples.push(Sample {
        write: req.write,
        at: started,
        micros,
        ok,
        status,
    });
    if req.write {
        out.written.extend(svc.written(task, req, reply.as_ref()));
    }
}

/// One load task: paced requests until `stop`.
async fn load_task<S: Service>(
    svc: Arc<S>,
    mut task: S::Task,
    stop: Arc<AtomicBool>,
    interval: Duration,
    offset: Duration,
    timeout: Duration,
) -> (S::Task, Outcome<S::Entity>) {
    let mut client = HttpClient::new(svc.addr());
    let mut out = Outcome::default();
    let mut next = Instant::now() + offset;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep_until(next.into()).await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        // Open loop without bursts: a late request does not make the next ones early.
        next = (next + interval).max(Instant::now());
        let req = svc.next_request(&mut task);
        send(&*svc, &mut client, Some(&mut task), &req, timeout, &mut out).await;
    }
    (task, out)
}

/// Latency figures in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    pub n: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

fn latency(mut micros: Vec<u64>) -> Latency {
    if micros.is_empty() {
        return Latency::default();
    }
    micros.sort_unstable();
    let at = |p: f64| {
        let i = ((micros.len() as f64 * p).ceil() as usize).clamp(1, micros.len()) - 1;
        micros[i] as f64 / 1000.0
    };
    Latency {
        n: micros.len(),
        p50: at(0.50),
        p99: at(0.99),
        max: micros[micros.len() - 1] as f64 / 1000.0,
    }
}

/// The measurements of one fault.
#[derive(Debug, Clone)]
pub struct PhaseReport {
    pub fault: Fault,
    /// Requests of the load and the probe writes.
    pub requests: u64,
    /// Failed requests (unexpected status, connection error, timeout), including the hit
    /// probe's polls and the stale check's reads.
    pub failures: u64,
    pub failure_examples: Vec<String>,
    pub reads: Latency,
    pub writes: Latency,
    /// Writes sent while the fault was active (load + probes).
    pub fault_writes: u64,
    /// The fault window as it happened.
    pub fault_window: Duration,
    /// From Redis answering again to the first HIT of the hit probe (`None`: not within
    /// `hit_wait`).
    pub first_hit: Option<Duration>,
    /// Reads compared with the database, and how many were stale.
    pub checked: u64,
    pub stale: u64,
    /// Of the stale reads, how many were still stale when read again after a grace period
    /// (lost invalidations, as opposed to late ones).
    pub still_stale: u64,
    pub stale_examples: Vec<String>,
    /// Paths stale at the check and fresh after the grace period.
    pub healed: Vec<String>,
    /// `X-Cache-Status` of the tallied route groups during the fault: (group, status, count).
    pub fault_statuses: Vec<(&'static str, String, u64)>,
    /// What the fault did (fill sizes, killed connections).
    pub note: String,
}

/// The whole run of one service.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub service: &'static str,
    pub plan: Plan,
    pub phases: Vec<PhaseReport>,
    pub seconds: f64,
}

/// Waits until a fresh connection's `SET` succeeds (Redis answers again, writes included);
/// returns that instant. Blocking; bounded by `limit`.
fn wait_answering(server: &RedisServer, limit: Duration) -> Instant {
    let deadline = Instant::now() + limit;
    let client = server.client();
    loop {
        let ok = client
            .get_connection_with_timeout(Duration::from_millis(200))
            .and_then(|mut con| {
                con.set_read_timeout(Some(Duration::from_millis(200)))?;
                redis::cmd("SET")
                    .arg("cache-tests-chaos:alive")
                    .arg(1)
                    .query::<()>(&mut con)
            })
            .is_ok();
        if ok {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "Redis did not answer again within {limit:?} after the fault"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs every fault of `plan` against `svc` (on `server`), prints the report and returns it.
pub async fn run<S: Service>(svc: Arc<S>, mut server: RedisServer, plan: Plan) -> RunReport {
    let started = Instant::now();
    let mut tasks: Vec<S::Task> = (0..plan.tasks)
        .map(|i| svc.new_task(i, plan.seed.wrapping_add(i as u64 * 7919)))
        .collect();
    let probes = svc.probes();
    let mut probe_seq = 0u64;
    let mut report = RunReport {
        service: svc.name(),
        plan: plan.clone(),
        phases: Vec::new(),
        seconds: 0.0,
    };
    progress(&format!(
        "chaos {}: seed {} ({}), faults: {}{}",
        svc.name(),
        plan.seed,
        if plan.full { "full" } else { "bounded" },
        plan.faults
            .iter()
            .map(|f| f.slug())
            .collect::<Vec<_>>()
            .join(","),
        if plan.skipped.is_empty() {
            String::new()
        } else {
            format!(
                " (skipped this run: {}; without CHAOS_SUBSET all run)",
                plan.skipped
                    .iter()
                    .map(|f| f.slug())
                    .collect::<Vec<_>>()
                    .join(",")
            )
        }
    ));
    warm_up(&svc, &server, &plan, &mut tasks).await;
    for &fault in &plan.faults {
        let phase = run_phase(
            &svc,
            &mut server,
            &plan,
            fault,
            &mut tasks,
            &probes,
            &mut probe_seq,
        )
        .await;
        progress(&format!("chaos {}: {}", svc.name(), format_row(&phase)));
        report.phases.push(phase);
    }
    report.seconds = started.elapsed().as_secs_f64();
    report
}

/// Unmeasured load for `plan.warm_up` (the machine settles after seeding, connections are
/// open), then an empty cache.
async fn warm_up<S: Service>(
    svc: &Arc<S>,
    server: &RedisServer,
    plan: &Plan,
    tasks: &mut Vec<S::Task>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let interval = Duration::from_secs_f64(plan.tasks as f64 / f64::from(plan.rps.max(1)));
    let handles: Vec<_> = tasks
        .drain(..)
        .enumerate()
        .map(|(i, task)| {
            let offset = interval.mul_f64(i as f64 / plan.tasks as f64);
            tokio::spawn(load_task(
                svc.clone(),
                task,
                stop.clone(),
                interval,
                offset,
                plan.request_timeout,
            ))
        })
        .collect();
    tokio::time::sleep(plan.warm_up).await;
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let (task, _) = h.await.expect("load task panicked");
        tasks.push(task);
    }
    server.flushall().await;
}

async fn run_phase<S: Service>(
    svc: &Arc<S>,
    server: &mut RedisServer,
    plan: &Plan,
    fault: Fault,
    tasks: &mut Vec<S::Task>,
    probes: &[S::Entity],
    probe_seq: &mut u64,
) -> PhaseReport {
    let mut client = HttpClient::new(svc.addr());
    let mut extra_failures: Vec<String> = Vec::new();

    // 1. Warm the probes and the hit probe.
    for p in probes {
        for (path, headers) in svc.probe_reads(p) {
            for _ in 0..2 {
                let c = compare_status(&mut client, &path, &headers).await;
                extra_failures.extend(c);
            }
        }
    }
    for _ in 0..2 {
        extra_failures.extend(compare_status(&mut client, &svc.hit_probe(), &[]).await);
    }

    // 2. Start the load.
    let stop = Arc::new(AtomicBool::new(false));
    let interval = Duration::from_secs_f64(plan.tasks as f64 / f64::from(plan.rps.max(1)));
    let mut handles = Vec::with_capacity(plan.tasks);
    for (i, task) in tasks.drain(..).enumerate() {
        let offset = interval.mul_f64(i as f64 / plan.tasks as f64);
        handles.push(tokio::spawn(load_task(
            svc.clone(),
            task,
            stop.clone(),
            interval,
            offset,
            plan.request_timeout,
        )));
    }
    tokio::time::sleep(plan.pre).await;

    // 3. The fault, with the probe writes spread over its window.
    let fault_start = Instant::now();
    let mut probe_handles = Vec::new();
    for (i, p) in probes.iter().enumerate() {
        let at = fault_start + plan.fault.mul_f64((i as f64 + 0.5) / probes.len() as f64);
        let req = svc.probe_write(p, *probe_seq);
        *probe_seq += 1;
        let svc = svc.clone();
        let timeout = plan.request_timeout;
        probe_handles.push(tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            let mut client = HttpClient::new(svc.addr());
            let mut out = Outcome::default();
            send(&*svc, &mut client, None, &req, timeout, &mut out).await;
            out
        }));
    }
    let mut note = String::new();
    let recovered_at = match fault {
        Fault::Baseline => {
            tokio::time::sleep(plan.fault).await;
            Instant::now()
        }
        Fault::KillRestart => {
            server.kill();
            tokio::time::sleep(plan.fault).await;
            server.restart();
            wait_answering(server, Duration::from_secs(10))
        }
        Fault::Sigstop => {
            server.pause();
            tokio::time::sleep(plan.fault).await;
            server.resume();
            wait_answering(server, Duration::from_secs(10))
        }
        Fault::DebugSleep => {
            // Blocks this thread (the test's; the load and the service run on the runtime's
            // workers) until the server answers the DEBUG SLEEP.
            server.debug_sleep(plan.fault).wait()
        }
        Fault::ClientPauseWrite | Fault::ClientPauseAll => {
            let mode = if fault == Fault::ClientPauseWrite {
                PauseMode::Write
            } else {
                PauseMode::All
            };
            server.client_pause(plan.fault, mode);
            tokio::time::sleep(plan.fault).await;
            wait_answering(server, Duration::from_secs(10))
        }
        Fault::FullNoEviction | Fault::FullAllKeysLru => {
            let policy = if fault == Fault::FullNoEviction {
                EvictionPolicy::NoEviction
            } else {
                EvictionPolicy::AllKeysLru
            };
            let fill = server.fill_to_maxmemory(policy);
            assert!(fill.full, "the fill did not make the server full: {fill:?}");
            let rest = plan.fault.saturating_sub(fault_start.elapsed());
            tokio::time::sleep(rest).await;
            let evicted_during = server.info_field("stats", "evicted_keys");
            let removed = server.reset_memory();
            let _ = write!(
                note,
                "maxmemory {} KiB: {} filler keys, {} OOM, {} keys evicted since the server \
                 started",
                fill.maxmemory / 1024,
                removed,
                fill.oom_errors,
                evicted_during
            );
            wait_answering(server, Duration::from_secs(10))
        }
        Fault::KillClients => {
            let mut killed = 0;
            let end = fault_start + plan.fault;
            while Instant::now() < end {
                killed += server.kill_clients();
                tokio::time::sleep(Duration::from_millis(100).min(end - Instant::now())).await;
            }
            let _ = write!(note, "{killed} connections killed");
            wait_answering(server, Duration::from_secs(10))
        }
    };
    let fault_window = recovered_at.saturating_duration_since(fault_start);

    // 4. The first HIT after Redis answers again.
    let mut first_hit = None;
    let hit_path = svc.hit_probe();
    let mut poll = HttpClient::new(svc.addr());
    while recovered_at.elapsed() < plan.hit_wait {
        match tokio::time::timeout(Duration::from_secs(5), poll.get(&hit_path)).await {
            Ok(Ok(r)) if r.status == 200 => {
                if r.cache_status() == Some("HIT") {
                    first_hit = Some(recovered_at.elapsed());
                    break;
                }
            }
            Ok(Ok(r)) => extra_failures.push(format!("GET {hit_path}: {}", r.status)),
            Ok(Err(e)) => extra_failures.push(format!("GET {hit_path}: {e}")),
            Err(_) => extra_failures.push(format!("GET {hit_path}: no reply within 5 s")),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // 5. Load after the fault, then stop.
    let post_end = recovered_at + plan.post;
    tokio::time::sleep_until(post_end.into()).await;
    stop.store(true, Ordering::Relaxed);
    let mut out: Outcome<S::Entity> = Outcome::default();
    for h in handles {
        let (task, o) = h.await.expect("load task panicked");
        tasks.push(task);
        out.absorb(o);
    }
    for h in probe_handles {
        out.absorb(h.await.expect("probe writer panicked"));
    }
    let fault_writes = out
        .samples
        .iter()
        .filter(|s| s.write && s.at >= fault_start && s.at < recovered_at)
        .count() as u64;

    // 6. Stale check.
    let mut entities: BTreeSet<S::Entity> = out.written.iter().cloned().collect();
    entities.extend(probes.iter().cloned());
    let mut checks = svc.check_globals(&mut client).await;
    let mut stale_entities: Vec<Option<&S::Entity>> = Vec::new();
    if checks.iter().any(|c| c.stale.is_some()) {
        stale_entities.push(None);
    }
    for e in &entities {
        let c = svc.check(&mut client, e).await;
        if c.iter().any(|c| c.stale.is_some()) {
            stale_entities.push(Some(e));
        }
        checks.extend(c);
    }
    let stale: Vec<String> = checks.iter().filter_map(|c| c.stale.clone()).collect();
    extra_failures.extend(checks.iter().filter_map(|c| c.error.clone()));
    // Lost or late? Read the stale ones again after a grace period.
    let mut still_stale = 0u64;
    let mut healed = Vec::new();
    if !stale_entities.is_empty() {
        tokio::time::sleep(plan.stale_grace).await;
        for e in stale_entities {
            let again = match e {
                None => svc.check_globals(&mut client).await,
                Some(e) => svc.check(&mut client, e).await,
            };
            for c in again {
                if c.stale.is_some() {
                    still_stale += 1;
                } else if checks
                    .iter()
                    .any(|first| first.path == c.path && first.stale.is_some())
                {
                    healed.push(c.path);
                }
            }
        }
    }

    // 7. A clean cache for the next phase.
    server.flushall().await;

    let reads = latency(
        out.samples
            .iter()
            .filter(|s| !s.write)
            .map(|s| s.micros)
            .collect(),
    );
    let writes = latency(
        out.samples
            .iter()
            .filter(|s| s.write)
            .map(|s| s.micros)
            .collect(),
    );
    let failures =
        out.samples.iter().filter(|s| !s.ok).count() as u64 + extra_failures.len() as u64;
    let mut fault_statuses: Vec<(&'static str, String, u64)> = Vec::new();
    for s in &out.samples {
        let Some((group, status)) = &s.status else {
            continue;
        };
        if s.at < fault_start || s.at >= recovered_at {
            continue;
        }
        match fault_statuses
            .iter_mut()
            .find(|(g, st, _)| g == group && st == status)
        {
            Some(entry) => entry.2 += 1,
            None => fault_statuses.push((group, status.clone(), 1)),
        }
    }
    fault_statuses.sort();
    let mut failure_examples = out.failures;
    failure_examples.extend(extra_failures);
    failure_examples.truncate(8);
    PhaseReport {
        fault,
        requests: out.samples.len() as u64,
        failures,
        failure_examples,
        reads,
        writes,
        fault_writes,
        fault_window,
        first_hit,
        checked: checks.len() as u64,
        stale: stale.len() as u64,
        still_stale,
        stale_examples: stale.into_iter().take(6).collect(),
        healed,
        fault_statuses,
        note,
    }
}

/// A GET that must answer 200 (warming); returns the failure, if any.
async fn compare_status(
    client: &mut HttpClient,
    path: &str,
    headers: &[(&'static str, String)],
) -> Option<String> {
    let hdrs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    match tokio::time::timeout(
        Duration::from_secs(10),
        client.request("GET", path, &hdrs, None),
    )
    .await
    {
        Ok(Ok(r)) if r.status == 200 => None,
        Ok(Ok(r)) => Some(format!("warm GET {path}: {}", r.status)),
        Ok(Err(e)) => Some(format!("warm GET {path}: {e}")),
        Err(_) => Some(format!("warm GET {path}: no reply within 10 s")),
    }
}

/// Writes a progress line to stderr, past the test harness' capture.
pub fn progress(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

const HEADER: &str = "fault                      |  reqs | fail | read p50/p99/max ms      | write p50/max ms  | fault writes | window ms | 1st HIT ms | stale/checked (still stale after grace)";

fn format_row(p: &PhaseReport) -> String {
    format!(
        "{:<26} | {:>5} | {:>4} | {:>6.1} {:>7.1} {:>8.1} | {:>6.1} {:>9.1} | {:>12} | {:>9} | {:>10} | {:>5}/{} ({})",
        p.fault.name(),
        p.requests,
        p.failures,
        p.reads.p50,
        p.reads.p99,
        p.reads.max,
        p.writes.p50,
        p.writes.max,
        p.fault_writes,
        p.fault_window.as_millis(),
        p.first_hit
            .map(|d| format!("{:.0}", d.as_secs_f64() * 1000.0))
            .unwrap_or_else(|| "never".into()),
        p.stale,
        p.checked,
        p.still_stale
    )
}

/// The report as text: the table, then the details of failures and stale reads.
pub fn format_report(r: &RunReport) -> String {
    let plan = &r.plan;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# chaos: {} on a Redis-backed cache ({} form, seed {}), {:.1} s",
        r.service,
        if plan.full { "full" } else { "bounded" },
        plan.seed,
        r.seconds
    );
    let _ = writeln!(
        out,
        "# load: {} keep-alive clients, {} req/s, {}% writes; {:.0} s warm-up, then per fault: \
         {:.1} s load, {:.1} s fault, {:.1} s load after Redis answers again; first HIT polled \
         every 10 ms for up to {:.0} s; stale reads read again after {:.0} s",
        plan.tasks,
        plan.rps,
        plan.write_percent,
        plan.warm_up.as_secs_f64(),
        plan.pre.as_secs_f64(),
        plan.fault.as_secs_f64(),
        plan.post.as_secs_f64(),
        plan.hit_wait.as_secs_f64(),
        plan.stale_grace.as_secs_f64()
    );
    if !plan.skipped.is_empty() {
        let _ = writeln!(
            out,
            "# skipped in this run (CHAOS_SUBSET, a rotating subset chosen by the seed): {}",
            plan.skipped
                .iter()
                .map(|f| f.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let _ = writeln!(out, "{HEADER}");
    for p in &r.phases {
        let _ = writeln!(out, "{}", format_row(p));
    }
    for p in &r.phases {
        let _ = writeln!(out, "## {}", p.fault.name());
        if !p.note.is_empty() {
            let _ = writeln!(out, "  fault: {}", p.note);
        }
        if !p.fault_statuses.is_empty() {
            let mut line = String::new();
            let mut last = "";
            for (group, status, n) in &p.fault_statuses {
                if *group != last {
                    let _ = write!(line, "{}{group}: ", if last.is_empty() { "" } else { "; " });
                    last = group;
                } else {
                    line.push_str(", ");
                }
                let _ = write!(line, "{status} {n}");
            }
            let _ = writeln!(out, "  X-Cache-Status during the fault: {line}");
        }
        for f in &p.failure_examples {
            let _ = writeln!(out, "  failure: {f}");
        }
        for s in &p.stale_examples {
            let _ = writeln!(out, "  stale: {s}");
        }
        if !p.healed.is_empty() {
            let _ = writeln!(
                out,
                "  fresh after the grace period: {}",
                p.healed.join(", ")
            );
        }
    }
    out
}

/// Prints the report on stderr (not captured by the test harness) and writes it to
/// `$CARGO_TARGET_TMPDIR/chaos/{file}.txt`; returns that path.
pub fn publish(r: &RunReport, file: &str) -> PathBuf {
    let text = format_report(r);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("chaos");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{file}.txt"));
    let written = std::fs::write(&path, &text).is_ok();
    progress(&format!(
        "\n{text}{}",
        if written {
            format!("# report written to {}\n", path.display())
        } else {
            String::new()
        }
    ));
    path
}
