//! One task driving the nodes of many groups of one process, with one clock.
//!
//! A node started with [`Builder::host`](crate::Builder::host) runs no task of its own
//! (beyond its applier): its protocol state is a value in a [`GroupHost`]'s task. That task
//! waits for any of its nodes to have input (each node's channels wake it with the node's
//! own waker, which puts the node on the host's awake list), gives each awake node a turn,
//! and on each tick of its one timer ticks every node whose group is not quiet. Thousands
//! of groups then cost one timer and one task instead of thousands, and the ticks of all
//! of them fall in the same pass, so that the messages they send at a tick leave together.

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use futures::task::AtomicWaker;
use tokio::sync::oneshot;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::group::Group;
use crate::handle::Stopped;
use crate::state_machine::StateMachine;

/// How long a pass of a host's task may run before it lets the runtime's other tasks run.
const YIELD_AFTER: Duration = Duration::from_millis(1);

/// A task that drives the nodes of many groups, with one timer. Cloning shares it.
///
/// Give it to the builder of each node it should drive ([`Builder::host`](crate::Builder::host)),
/// typically every node of one process, which then usually also share one transport
/// ([`GroupMux`](crate::GroupMux)) and one log. Every node on a host must have the host's
/// tick interval ([`Config::tick_interval`](crate::Config::tick_interval)).
///
/// The task runs on the tokio runtime [`GroupHost::new`] was called on. It ends once every
/// clone of the host is dropped and every node it drives has stopped; a node stops as one
/// that runs its own task does ([`Raft::shutdown`](crate::Raft::shutdown), or when its last
/// handle is dropped).
///
/// One task runs the protocol of all its nodes, one at a time: a process with more cores
/// than hosts leaves the rest to the applier tasks, transport and log. Several hosts (one
/// per node of a process, say) spread the nodes over cores.
#[derive(Clone)]
pub struct GroupHost {
    inner: Arc<Handle>,
}

impl std::fmt::Debug for GroupHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupHost")
            .field("tick_interval", &self.inner.tick)
            .field("nodes", &self.nodes())
            .finish()
    }
}

/// Held by every clone of a host: when the last goes, the task is told.
struct Handle {
    shared: Arc<Shared>,
    tick: Duration,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.waker.wake();
    }
}

/// What the host's task shares with its handles and with its nodes' wakers.
struct Shared {
    queue: Mutex<Queue>,
    /// The task's waker.
    waker: AtomicWaker,
}

#[derive(Default)]
struct Queue {
    /// Nodes handed to the host, not yet taken in by its task.
    new: Vec<Box<dyn Hosted>>,
    /// The slots of the nodes woken since the task last looked.
    awake: Vec<usize>,
    /// Every handle is gone.
    closed: bool,
    /// Nodes the task drives (for [`GroupHost::nodes`]).
    nodes: usize,
    /// Of those, the nodes whose clocks run (for [`GroupHost::ticking`]).
    ticking: usize,
    /// The longest pass so far (for [`GroupHost::take_slowest_pass`]).
    slowest: Duration,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A node's waker: puts the node on its host's awake list (once until its next turn).
struct NodeWake {
    slot: usize,
    queued: AtomicBool,
    shared: Arc<Shared>,
}

impl Wake for NodeWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.shared.lock().awake.push(self.slot);
            self.shared.waker.wake();
        }
    }
}

/// A node as its host drives it: a [`Group`] and where its outcome goes.
pub(crate) trait Hosted: Send {
    /// What the node does before its first turn.
    fn begin(&mut self);
    /// One turn: a tick due at `tick`, or (with `None`) the input queued on its channels,
    /// polled with `cx`.
    fn turn(&mut self, cx: &mut Context<'_>, tick: Option<Instant>) -> Turn;
    /// Stops the node (it finished): the rest runs as a task of its own.
    fn finish(self: Box<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>>;
    /// The node's tracing span.
    fn span(&self) -> &tracing::Span;
}

/// How a node's turn left it.
pub(crate) struct Turn {
    /// The node has finished: it leaves the host.
    finished: bool,
    /// Its clock must run (see [`Group::ticking`]).
    ticking: bool,
    /// Input was left on its channels: it wants another turn.
    more: bool,
}

/// A [`Group`] on a host, and where its handle waits for what it leaves.
pub(crate) struct HostedGroup<SM: StateMachine> {
    pub(crate) group: Group<SM>,
    pub(crate) done: oneshot::Sender<Stopped<SM>>,
    pub(crate) span: tracing::Span,
}

impl<SM: StateMachine> Hosted for HostedGroup<SM> {
    fn begin(&mut self) {
        self.group.begin();
    }

    fn turn(&mut self, cx: &mut Context<'_>, tick: Option<Instant>) -> Turn {
        let g = &mut self.group;
        g.start_turn();
        let more = match tick {
            Some(due) => {
                g.tick_at(due);
                false
            }
            None => g.poll_inputs(cx),
        };
        let finished = g.end_turn();
        Turn {
            finished,
            ticking: g.ticking(),
            more,
        }
    }

    fn finish(self: Box<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        use tracing::Instrument;
        let HostedGroup { group, done, span } = *self;
        Box::pin(
            async move {
                let stopped = group.finish().await;
                let _ = done.send(stopped);
            }
            .instrument(span),
        )
    }

    fn span(&self) -> &tracing::Span {
        &self.span
    }
}

impl GroupHost {
    /// Starts a host whose one timer ticks every `tick_interval` (the
    /// [`Config::tick_interval`](crate::Config::tick_interval) of every node it will
    /// drive), on the current tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, or with a zero `tick_interval`.
    pub fn new(tick_interval: Duration) -> GroupHost {
        assert!(
            !tick_interval.is_zero(),
            "a host's tick interval must be positive"
        );
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            waker: AtomicWaker::new(),
        });
        let task = HostTask {
            shared: shared.clone(),
            slots: Vec::new(),
            free: Vec::new(),
            ticking: Vec::new(),
            clocks: 0,
            ticked: false,
            ticker: None,
            tick: tick_interval,
        };
        // Unconstrained: the runtime's budget of polls per task is meant for one task's
        // channels, and a host polls those of thousands of nodes. Spent, it would answer
        // `Pending` to every node after the first few hundred of a pass. The host yields
        // by itself instead (see `YIELD_AFTER`).
        tokio::spawn(tokio::task::unconstrained(task.run()));
        GroupHost {
            inner: Arc::new(Handle {
                shared,
                tick: tick_interval,
            }),
        }
    }

    /// The interval of the host's timer.
    pub fn tick_interval(&self) -> Duration {
        self.inner.tick
    }

    /// The nodes the host drives now (those handed to it and not yet stopped).
    pub fn nodes(&self) -> usize {
        let q = self.inner.shared.lock();
        q.nodes + q.new.len()
    }

    /// The nodes whose clocks run now: those of groups that are not quiet (or that wait on
    /// a deadline). The host's timer does nothing for the others.
    pub fn ticking(&self) -> usize {
        self.inner.shared.lock().ticking
    }

    /// The longest pass of the host's task (a tick of its nodes, or a turn of each node
    /// woken) since the last call, and starts measuring anew. Every node of the host waits
    /// for a pass to end before its next turn: passes that come near an election timeout
    /// make followers campaign against leaders that are alive (use a longer tick, or more
    /// hosts).
    pub fn take_slowest_pass(&self) -> Duration {
        std::mem::take(&mut self.inner.shared.lock().slowest)
    }

    /// Hands a node to the host's task.
    pub(crate) fn add(&self, node: Box<dyn Hosted>) {
        self.inner.shared.lock().new.push(node);
        self.inner.shared.waker.wake();
    }
}

struct Slot {
    node: Box<dyn Hosted>,
    /// The node's tracing span, entered for its turns.
    span: tracing::Span,
    wake: Arc<NodeWake>,
    waker: Waker,
    /// Its clock must run (as of its last turn).
    ticking: bool,
    /// It is on the host's list of nodes to tick.
    listed: bool,
}

/// The host's task.
struct HostTask {
    shared: Arc<Shared>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    /// The slots of the nodes to tick, each once (some may have stopped needing it: they
    /// leave the list at the next tick).
    ticking: Vec<usize>,
    /// The nodes whose clocks run.
    clocks: usize,
    /// The last pass was a tick: input goes first in the next.
    ticked: bool,
    /// The timer, while some node ticks (made anew when one starts ticking again, so that
    /// the ticks missed while every group was quiet do not all fire at once).
    ticker: Option<Interval>,
    tick: Duration,
}

/// What the task was woken for.
enum Work {
    /// New nodes, or woken ones.
    Nodes(Vec<Box<dyn Hosted>>, Vec<usize>),
    Tick(Instant),
    /// Every handle is gone and no node is left.
    Done,
}

impl HostTask {
    async fn run(mut self) {
        loop {
            let work = std::future::poll_fn(|cx| self.poll_work(cx)).await;
            let pass = Instant::now();
            match work {
                Work::Done => return,
                Work::Tick(due) => self.tick(due),
                Work::Nodes(new, awake) => {
                    for node in new {
                        self.insert(node);
                    }
                    for slot in awake {
                        self.turn(slot, None);
                    }
                }
            }
            let took = pass.elapsed();
            {
                let mut q = self.shared.lock();
                q.ticking = self.clocks;
                q.slowest = q.slowest.max(took);
            }
            // A long pass lets the runtime's other tasks run before the next.
            if took >= YIELD_AFTER {
                tokio::task::yield_now().await;
            }
        }
    }

    fn poll_work(&mut self, cx: &mut Context<'_>) -> Poll<Work> {
        self.shared.waker.register(cx.waker());
        // Ticks and input take turns: busy nodes must not starve the clocks of the others
        // (or their own), and a host that fell behind must not run tick after tick (its
        // followers would count an election timeout without reading the heartbeats
        // waiting for them).
        let input_first = std::mem::take(&mut self.ticked);
        if input_first && let Some(work) = self.take_nodes() {
            return Poll::Ready(work);
        }
        if self.ticking.is_empty() {
            self.ticker = None;
        } else {
            let tick = self.tick;
            let ticker = self.ticker.get_or_insert_with(|| {
                // After a pause, missed ticks fire at once, one per pass: the protocol's
                // clocks catch up within a few passes (see `Group::tick_due`).
                let mut t = tokio::time::interval_at(Instant::now() + tick, tick);
                t.set_missed_tick_behavior(MissedTickBehavior::Burst);
                t
            });
            if let Poll::Ready(due) = ticker.poll_tick(cx) {
                self.ticked = true;
                return Poll::Ready(Work::Tick(due));
            }
        }
        if let Some(work) = self.take_nodes() {
            return Poll::Ready(work);
        }
        let q = self.shared.lock();
        if q.closed && q.nodes == 0 {
            return Poll::Ready(Work::Done);
        }
        Poll::Pending
    }

    /// The nodes handed over and woken since the last look, if any.
    fn take_nodes(&self) -> Option<Work> {
        let mut q = self.shared.lock();
        if q.new.is_empty() && q.awake.is_empty() {
            return None;
        }
        let new = std::mem::take(&mut q.new);
        let awake = std::mem::take(&mut q.awake);
        Some(Work::Nodes(new, awake))
    }

    fn insert(&mut self, mut node: Box<dyn Hosted>) {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        let span = node.span().clone();
        {
            let _entered = span.enter();
            node.begin();
        }
        let wake = Arc::new(NodeWake {
            slot,
            queued: AtomicBool::new(false),
            shared: self.shared.clone(),
        });
        let waker = Waker::from(wake.clone());
        self.slots[slot] = Some(Slot {
            node,
            span,
            wake,
            waker,
            ticking: false,
            listed: false,
        });
        self.shared.lock().nodes += 1;
        // Its first turn registers its waker with its channels.
        self.turn(slot, None);
    }

    fn tick(&mut self, due: Instant) {
        let listed = std::mem::take(&mut self.ticking);
        for &slot in &listed {
            if self.entry(slot).is_some_and(|e| e.ticking) {
                self.turn(slot, Some(due));
            }
        }
        // The nodes that still tick stay on the list, with those that started meanwhile.
        let mut kept = Vec::with_capacity(listed.len());
        for slot in listed {
            if let Some(entry) = self.entry(slot) {
                if entry.ticking {
                    kept.push(slot);
                } else {
                    entry.listed = false;
                }
            }
        }
        kept.append(&mut self.ticking);
        self.ticking = kept;
    }

    fn entry(&mut self, slot: usize) -> Option<&mut Slot> {
        self.slots.get_mut(slot).and_then(Option::as_mut)
    }

    /// Gives the node in `slot` a turn (a tick, or its input); removes it if it finished.
    fn turn(&mut self, slot: usize, tick: Option<Instant>) {
        let Some(Some(entry)) = self.slots.get_mut(slot) else {
            // A wake of a node that has left.
            return;
        };
        if tick.is_none() {
            // Wakes from here on queue it again.
            entry.wake.queued.store(false, Ordering::Release);
        }
        let Slot {
            node, waker, span, ..
        } = entry;
        let mut cx = Context::from_waker(waker);
        let outcome = {
            let _entered = span.enter();
            std::panic::catch_unwind(AssertUnwindSafe(|| node.turn(&mut cx, tick)))
        };
        let turn = match outcome {
            Ok(turn) => turn,
            Err(_) => {
                // The node is lost (its handle's shutdown finds nothing to return); the
                // others go on.
                tracing::error!(parent: &*span, "a node's turn panicked; it is dropped");
                self.remove(slot);
                return;
            }
        };
        if turn.finished {
            if let Some(entry) = self.remove(slot) {
                tokio::spawn(entry.node.finish());
            }
            return;
        }
        if turn.more {
            entry.waker.wake_by_ref();
        }
        if entry.ticking != turn.ticking {
            entry.ticking = turn.ticking;
            if turn.ticking {
                self.clocks += 1;
            } else {
                self.clocks -= 1;
            }
        }
        if turn.ticking && !entry.listed {
            entry.listed = true;
            self.ticking.push(slot);
        }
    }

    fn remove(&mut self, slot: usize) -> Option<Slot> {
        let entry = self.slots.get_mut(slot)?.take()?;
        // The slot is taken again only by a node added in a later pass: by then it is on
        // no list.
        if entry.listed {
            self.ticking.retain(|&s| s != slot);
        }
        if entry.ticking {
            self.clocks -= 1;
        }
        self.free.push(slot);
        self.shared.lock().nodes -= 1;
        Some(entry)
    }
}
