//! Closed-loop clients: each one sends a request, waits for its answer, and sends the next.
//!
//! Measuring must cost little next to what it measures (a proposal in configuration `a`
//! takes a few microseconds of CPU). So a client keeps its latencies in a small buffer of
//! its own and, when the buffer is full, records them in one of a few shared histograms
//! under a lock held for a moment; the histograms are merged once, at the end. Memory
//! stays bounded however long the run: a buffer per client and a fixed number of
//! histograms, never a latency per operation.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// What became of one request.
#[derive(Debug)]
pub enum Outcome {
    /// Applied, and answered.
    Done,
    /// Definitely not applied (busy, no leader), for this reason: sent again.
    Rejected(String),
    /// Failed with an unknown outcome, or the cluster could not be reached: counted as a
    /// failure and not sent again.
    Failed(String),
}

/// One client: sends one request at a time.
pub trait Client: Send + 'static {
    /// Sends one request and waits for its outcome.
    fn call(&mut self) -> impl Future<Output = Outcome> + Send;

    /// Operations one completed request counts for: the commands of a batch, 1 otherwise.
    /// The same for every client of a load.
    fn ops_per_call(&self) -> u64 {
        1
    }
}

/// When a run's measured part ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// After this long.
    After(Duration),
    /// After this many completed operations (over all clients), or after `limit` if the
    /// cluster is slower than that.
    Ops {
        /// The operations to complete.
        count: u64,
        /// The longest the measured part may last.
        limit: Duration,
    },
}

/// Latencies are recorded in nanoseconds, up to this (larger values count as this).
const HIGHEST_NS: u64 = 100_000_000_000;
/// Latencies a client buffers before recording them in a shared histogram.
const BUFFER: usize = 128;
/// Shared histograms; clients pick one by their number.
const SHARDS: usize = 8;
/// Operations a client claims at a time from the budget of a [`Stop::Ops`] run.
const TICKETS: i64 = 16;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_NS, 3).expect("valid histogram bounds")
}

/// The start and end of the measured part, sent to the clients once they are all spawned.
#[derive(Clone, Copy, Debug)]
struct Window {
    from: Instant,
    until: Instant,
}

/// What the clients share.
struct Shared {
    /// The operations still to do in a [`Stop::Ops`] run.
    tickets: Option<AtomicI64>,
    completed: AtomicU64,
    /// Set by [`Load::halt`]: every client stops after its current request.
    halted: AtomicBool,
    /// Operations a completed request counts for ([`Client::ops_per_call`]).
    per_call: u64,
    rejected: Mutex<BTreeMap<String, u64>>,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Shared {
    fn record(&self, shard: usize, latencies: &mut Vec<u64>) {
        if latencies.is_empty() {
            return;
        }
        {
            let mut h = self.shards[shard].lock().expect("histogram lock");
            for &ns in latencies.iter() {
                h.saturating_record(ns);
            }
        }
        self.completed
            .fetch_add(latencies.len() as u64 * self.per_call, Ordering::Relaxed);
        latencies.clear();
    }

    fn fail(&self, error: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().expect("error lock");
        if first.is_none() {
            *first = Some(error);
        }
    }

    /// Claims up to [`TICKETS`] operations of the budget; 0 when it is spent.
    fn claim(&self, tickets: &AtomicI64) -> i64 {
        let before = tickets.fetch_sub(TICKETS, Ordering::Relaxed);
        before.clamp(0, TICKETS)
    }
}

/// Clients at work.
pub struct Load {
    shared: Arc<Shared>,
    tasks: JoinSet<Option<Instant>>,
    window: Window,
}

/// Operations completed in the measured part so far (recorded in batches, so a little
/// behind).
#[derive(Clone)]
pub struct Progress(Arc<Shared>);

impl Progress {
    /// Operations completed and recorded.
    pub fn completed(&self) -> u64 {
        self.0.completed.load(Ordering::Relaxed)
    }
}

/// The figures of the measured part of a run.
#[derive(Debug)]
pub struct Measured {
    /// Operations completed (requests completed times [`Client::ops_per_call`]).
    pub ops: u64,
    /// From the start of the measured part to the last completion.
    pub seconds: f64,
    /// Latency of each completed request, in nanoseconds, from its first attempt.
    pub latencies: Histogram<u64>,
    /// Attempts refused as definitely not applied (and sent again), by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Operations that failed.
    pub failed: u64,
    /// The first failure's reason.
    pub first_error: Option<String>,
}

impl Load {
    /// Starts `clients`: they run unmeasured for `warmup`, then measured until `stop`.
    /// A [`Stop::Ops`] run completes at least its count of operations: with requests that
    /// count for several, the number of requests that makes the count.
    pub fn start<C: Client>(clients: Vec<C>, warmup: Duration, stop: Stop) -> Load {
        let per_call = clients.first().map_or(1, Client::ops_per_call).max(1);
        let shared = Arc::new(Shared {
            tickets: match stop {
                Stop::Ops { count, .. } => Some(AtomicI64::new(
                    count.div_ceil(per_call).min(i64::MAX as u64) as i64,
                )),
                Stop::After(_) => None,
            },
            completed: AtomicU64::new(0),
            halted: AtomicBool::new(false),
            per_call,
            rejected: Mutex::new(BTreeMap::new()),
            failed: AtomicU64::new(0),
            first_error: Mutex::new(None),
            shards: (0..SHARDS).map(|_| Mutex::new(histogram())).collect(),
        });
        let (go, ready) = watch::channel(None::<Window>);
        let mut tasks = JoinSet::new();
        for (i, client) in clients.into_iter().enumerate() {
            let shared = shared.clone();
            let mut ready = ready.clone();
            tasks.spawn(async move {
                let window = match ready.wait_for(Option::is_some).await {
                    Ok(w) => w.expect("checked"),
                    Err(_) => return None,
                };
                run_client(client, i % SHARDS, &shared, window).await
            });
        }
        // Every client is spawned: the clock starts now, for all of them.
        let from = Instant::now() + warmup;
        let window = Window {
            from,
            until: from
                + match stop {
                    Stop::After(d) => d,
                    Stop::Ops { limit, .. } => limit,
                },
        };
        let _ = go.send(Some(window));
        Load {
            shared,
            tasks,
            window,
        }
    }

    /// When the measured part starts.
    pub fn measured_from(&self) -> Instant {
        self.window.from
    }

    /// When the measured part ends at the latest.
    pub fn deadline(&self) -> Instant {
        self.window.until
    }

    /// A view of how many operations the measured part has completed so far, for a
    /// progress display while [`Load::finish`] waits.
    pub fn progress(&self) -> Progress {
        Progress(self.shared.clone())
    }

    /// Ends the measured part now, before its planned end: each client stops after its
    /// current request, and [`Load::finish`] counts up to the last completion.
    pub fn halt(&self) {
        self.shared.halted.store(true, Ordering::Relaxed);
    }

    /// Waits for the clients to stop and merges their figures.
    pub async fn finish(mut self) -> Measured {
        let mut last = None;
        while let Some(done) = self.tasks.join_next().await {
            let end = done.expect("a benchmark client panicked");
            last = last.max(end);
        }
        let mut latencies = histogram();
        for shard in &self.shared.shards {
            latencies
                .add(&*shard.lock().expect("histogram lock"))
                .expect("histograms of the same bounds add");
        }
        let end = last.unwrap_or(self.window.until).max(self.window.from);
        Measured {
            ops: latencies.len() * self.shared.per_call,
            seconds: (end - self.window.from).as_secs_f64(),
            latencies,
            rejected: std::mem::take(&mut *self.shared.rejected.lock().expect("rejections lock")),
            failed: self.shared.failed.load(Ordering::Relaxed),
            first_error: self.shared.first_error.lock().expect("error lock").take(),
        }
    }
}

/// One client's loop; returns when its last measured operation completed.
async fn run_client<C: Client>(
    mut client: C,
    shard: usize,
    shared: &Shared,
    window: Window,
) -> Option<Instant> {
    let mut latencies = Vec::with_capacity(BUFFER);
    let mut last = None;
    let mut tickets = 0;
    // A request starts when the one before it ended: one clock read per request.
    let mut next_start = None;
    loop {
        let start = next_start.take().unwrap_or_else(Instant::now);
        if start >= window.until || shared.halted.load(Ordering::Relaxed) {
            break;
        }
        let measured = start >= window.from;
        if measured && let Some(budget) = &shared.tickets {
            if tickets == 0 {
                tickets = shared.claim(budget);
                if tickets == 0 {
                    break;
                }
            }
            tickets -= 1;
        }
        let mut refusals = 0u32;
        let done = loop {
            match client.call().await {
                Outcome::Done => break Some(Instant::now()),
                Outcome::Rejected(reason) => {
                    if measured {
                        *shared
                            .rejected
                            .lock()
                            .expect("rejections lock")
                            .entry(reason)
                            .or_default() += 1;
                    }
                    if Instant::now() >= window.until {
                        break None;
                    }
                    // Busy: give the cluster a moment, and back off a little if it stays so.
                    refusals += 1;
                    if refusals < 16 {
                        tokio::task::yield_now().await;
                    } else {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                Outcome::Failed(error) => {
                    if measured {
                        shared.fail(error);
                    }
                    // Do not spin against a cluster that is not there.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    break None;
                }
            }
        };
        next_start = done;
        if let Some(end) = done
            && measured
        {
            latencies.push((end - start).as_nanos().min(u128::from(HIGHEST_NS)) as u64);
            if latencies.len() == BUFFER {
                shared.record(shard, &mut latencies);
            }
            last = Some(end);
        }
    }
    shared.record(shard, &mut latencies);
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers after `delay`; refuses every `refuse_every`-th request.
    struct Fake {
        delay: Duration,
        calls: u64,
        refuse_every: u64,
    }

    impl Client for Fake {
        fn call(&mut self) -> impl Future<Output = Outcome> + Send {
            self.calls += 1;
            let refuse = self.refuse_every > 0 && self.calls % self.refuse_every == 0;
            let delay = self.delay;
            async move {
                tokio::time::sleep(delay).await;
                if refuse {
                    Outcome::Rejected("busy".to_string())
                } else {
                    Outcome::Done
                }
            }
        }
    }

    /// Counts for `per_call` operations per request.
    struct Batched(u64);

    impl Client for Batched {
        fn ops_per_call(&self) -> u64 {
            self.0
        }

        async fn call(&mut self) -> Outcome {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Outcome::Done
        }
    }

    #[tokio::test]
    async fn requests_that_carry_several_operations_count_them_all() {
        let stop = Stop::Ops {
            count: 100,
            limit: Duration::from_secs(30),
        };
        let m = Load::start(vec![Batched(4), Batched(4), Batched(4)], Duration::ZERO, stop)
            .finish()
            .await;
        assert_eq!(m.ops, 100, "{m:?}");
        assert_eq!(m.latencies.len(), 25, "one latency per request: {m:?}");
    }

    fn fakes(n: usize, refuse_every: u64) -> Vec<Fake> {
        (0..n)
            .map(|_| Fake {
                delay: Duration::from_millis(1),
                calls: 0,
                refuse_every,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_timed_run_measures_only_after_the_warmup() {
        let load = Load::start(
            fakes(4, 0),
            Duration::from_millis(50),
            Stop::After(Duration::from_millis(200)),
        );
        let m = load.finish().await;
        assert!(m.ops > 0 && m.failed == 0, "{m:?}");
        assert!(m.seconds >= 0.2 && m.seconds < 1.0, "{m:?}");
        assert!(m.latencies.value_at_quantile(0.5) >= 1_000_000, "{m:?}");
    }

    #[tokio::test]
    async fn a_counted_run_does_exactly_that_many_and_retries_refusals() {
        let stop = Stop::Ops {
            count: 100,
            limit: Duration::from_secs(30),
        };
        let m = Load::start(fakes(7, 3), Duration::ZERO, stop).finish().await;
        assert_eq!(m.ops, 100, "{m:?}");
        assert!(m.rejected["busy"] > 0, "{m:?}");
    }
}
