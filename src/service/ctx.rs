//! What the tasks of one data core share: its store, its pending operations, its timers, the
//! inboxes of every core, and the object state it owns. Everything here belongs to one thread;
//! tasks borrow it between awaits only.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ds_store::{CoreStore, GetDone, GetError, Outcome, PutError, ShardKey, ShardMeta};

use crate::config::ObjectsConfig;
use crate::node::overlay::{MemberList, MembersWatch};
use crate::reactor::executor::Executor;
use crate::reactor::lock::LockTable;
use crate::reactor::mailbox::Inbox;
use crate::reactor::slots::{self, Slots};
use crate::reactor::timer::{self, Timers};
use crate::service::owner::{OwnerState, ShardOp, ShardReply};
use crate::service::peer::{CallResult, Peers};

/// How long a request waits for a node that just started to find its cluster.
const JOIN_WAIT: Duration = Duration::from_secs(5);
/// Reply buffers a core keeps for reuse, and the smallest worth keeping.
const SEND_POOL_MAX: usize = 64;
const SEND_POOL_MIN_BYTES: usize = 64 << 10;

/// A question for the management thread's overlay, answered into core `core`'s inbox as
/// `Message::Reply { tag, reply: ShardReply::Document(..) }` (the OVERLAY document).
pub struct OverlayQuery {
    /// Also the `n` nodes responsible for this key.
    pub responsible: Option<(u128, usize)>,
    pub core: usize,
    pub tag: usize,
}

/// What cores send each other.
pub enum Message {
    /// Run a shard operation on the core that owns the shard; answer `from` with `tag`.
    Request {
        from: usize,
        tag: usize,
        op: ShardOp,
    },
    Reply {
        tag: usize,
        reply: ShardReply,
    },
}

pub struct CoreCtx {
    pub core: usize,
    pub cores: usize,
    pub node_id: u128,
    pub executor: Executor,
    pub store: RefCell<CoreStore>,
    pub store_slots: Rc<RefCell<Slots<Outcome>>>,
    pub reply_slots: Rc<RefCell<Slots<ShardReply>>>,
    pub timers: Rc<RefCell<Timers>>,
    pub inboxes: Vec<Arc<Inbox<Message>>>,
    pub owner: RefCell<OwnerState>,
    pub stripe_locks: Rc<RefCell<LockTable<(u128, u32)>>>,
    pub meta_locks: Rc<RefCell<LockTable<u128>>>,
    pub net: RefCell<Box<dyn ds_net::Transport>>,
    pub conns: RefCell<crate::service::conn::Conns>,
    pub metrics: RefCell<crate::stats::metrics::CoreMetrics>,
    /// Device slot -> path, for STAT.
    device_names: Vec<(u8, String)>,
    /// Reply buffers handed back by the transport once sent, for the next replies.
    send_pool: RefCell<Vec<Vec<u8>>>,
    /// Frames refused by the decoder (malformed, bad checksums, wrong version).
    pub protocol_errors: Cell<u64>,
    /// Where OVERLAY requests go (the management thread), when the node runs an overlay.
    pub overlay: RefCell<Option<std::sync::mpsc::SyncSender<OverlayQuery>>>,
    /// Set to stop the core's loop.
    pub stopping: Cell<bool>,
    /// Connections to other nodes and the calls in flight on them.
    pub peers: RefCell<Peers>,
    pub peer_slots: Rc<RefCell<Slots<CallResult>>>,
    /// The node was configured with seeds: it is part of a cluster of more than itself.
    pub expect_peers: Cell<bool>,
    /// The nodes serving data, as the overlay publishes them (none: this node alone).
    pub members: RefCell<Option<Arc<MembersWatch>>>,
    /// The copy of the member list this core works with, refreshed when the generation moves.
    member_list: RefCell<Arc<MemberList>>,
    /// Versions of the writes this core coordinates.
    pub hlc: RefCell<ds_objects::Hlc>,
    /// One codec per stripe layout in use (they keep their work buffers).
    pub codecs: RefCell<HashMap<ds_objects::StripeLayout, ds_objects::EcCodec>>,
    /// Largest end of the writes this core started per object, so a read-modify-write keeps the
    /// bytes of a write whose size update is still in flight.
    pub write_ends: RefCell<HashMap<u128, u64>>,
    /// Size growth this core coordinates: the largest size asked for and the largest made
    /// durable per object, and a lock so one metadata update serves every PUT waiting.
    pub grows: RefCell<HashMap<u128, (u64, u64)>>,
    pub grow_locks: Rc<RefCell<LockTable<u128>>>,
    pub policy: RefCell<ObjectsConfig>,
    /// The node's repair table (what this core's walker reports; drain requests).
    pub repair_board: RefCell<Option<Arc<crate::repair::board::RepairBoard>>>,
    /// Record buffers this core's connections hold PUT payloads in (see `service::payload`).
    pub record_payloads: Arc<std::sync::atomic::AtomicUsize>,
    /// Erasure coding done by this core as coordinator.
    pub coding: RefCell<crate::stats::metrics::ClusterCounters>,
}

impl CoreCtx {
    pub fn new(
        core: usize,
        cores: usize,
        store: CoreStore,
        inboxes: Vec<Arc<Inbox<Message>>>,
        net: Box<dyn ds_net::Transport>,
    ) -> Rc<Self> {
        let node_id = store.node_id();
        let device_names = store
            .devices()
            .into_iter()
            .map(|(slot, name, _)| (slot, name))
            .collect();
        Rc::new(Self {
            core,
            cores,
            node_id,
            executor: Executor::new(),
            store: RefCell::new(store),
            store_slots: Rc::default(),
            reply_slots: Rc::default(),
            timers: Rc::default(),
            inboxes,
            owner: RefCell::new(OwnerState::default()),
            stripe_locks: Rc::default(),
            meta_locks: Rc::default(),
            net: RefCell::new(net),
            conns: RefCell::default(),
            metrics: RefCell::new(crate::stats::metrics::CoreMetrics::new(core)),
            device_names,
            send_pool: RefCell::default(),
            protocol_errors: Cell::new(0),
            overlay: RefCell::new(None),
            stopping: Cell::new(false),
            peers: RefCell::default(),
            peer_slots: Rc::default(),
            expect_peers: Cell::new(false),
            members: RefCell::new(None),
            member_list: RefCell::default(),
            hlc: RefCell::default(),
            codecs: RefCell::default(),
            write_ends: RefCell::default(),
            grows: RefCell::default(),
            grow_locks: Rc::default(),
            policy: RefCell::default(),
            coding: RefCell::default(),
            record_payloads: Arc::default(),
            repair_board: RefCell::new(None),
        })
    }

    /// Waits (at most [`JOIN_WAIT`]) until the overlay runs and, when the node has seeds, knows
    /// another member: a node that just started must not take itself for the whole cluster
    /// (it would find no metadata copies but its own, or place every shard on itself).
    pub async fn members_ready(&self) {
        let deadline = Instant::now() + JOIN_WAIT;
        while Instant::now() < deadline {
            let list = self.member_list();
            if list.generation > 0 && (!self.expect_peers.get() || list.len() > 1) {
                return;
            }
            self.sleep(Duration::from_millis(20)).await;
        }
    }

    /// The nodes serving data as last published (this node alone when there is no overlay).
    pub fn member_list(&self) -> Arc<MemberList> {
        let watch = self.members.borrow();
        let Some(watch) = watch.as_ref() else {
            return Arc::new(MemberList {
                generation: 1,
                members: vec![crate::node::overlay::Member {
                    id: self.node_id,
                    data: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                }],
            });
        };
        let mut held = self.member_list.borrow_mut();
        if watch.generation() != held.generation {
            *held = watch.current();
        }
        held.clone()
    }

    /// The path of device `slot`.
    pub fn device_name(&self, slot: u8) -> String {
        self.device_names
            .iter()
            .find(|(s, _)| *s == slot)
            .map_or_else(|| format!("device {slot}"), |(_, name)| name.clone())
    }

    /// An empty buffer for a reply of about `bytes`, reused when one is at hand.
    pub fn take_send_buf(&self, bytes: usize) -> Vec<u8> {
        let mut pool = self.send_pool.borrow_mut();
        match pool.iter().rposition(|b| b.capacity() >= bytes) {
            Some(at) => pool.swap_remove(at),
            None => Vec::with_capacity(bytes),
        }
    }

    /// Keeps a sent buffer for reuse (a bounded number; small ones are not worth keeping).
    pub fn give_send_buf(&self, mut buf: Vec<u8>) {
        let mut pool = self.send_pool.borrow_mut();
        if pool.len() < SEND_POOL_MAX && buf.capacity() >= SEND_POOL_MIN_BYTES {
            buf.clear();
            pool.push(buf);
        }
    }

    pub async fn sleep(&self, duration: Duration) {
        timer::sleep_until(self.timers.clone(), Instant::now() + duration).await
    }

    async fn store_op(&self, submit: impl FnOnce(&mut CoreStore, u64)) -> Outcome {
        let id = self.store_slots.borrow_mut().open();
        submit(&mut self.store.borrow_mut(), id as u64);
        slots::wait(self.store_slots.clone(), id).await
    }

    pub async fn get(&self, key: ShardKey) -> Result<GetDone, GetError> {
        match self.store_op(|s, t| s.submit_get(key, t)).await {
            Outcome::Get(result) => result,
            other => unreachable!("get answered with {other:?}"),
        }
    }

    pub async fn put(&self, key: ShardKey, meta: ShardMeta, data: &[u8]) -> Result<(), PutError> {
        match self.store_op(|s, t| s.submit_put(key, meta, data, t)).await {
            Outcome::Put(result) => result,
            other => unreachable!("put answered with {other:?}"),
        }
    }

    /// [`CoreCtx::put`] of bytes handed over, which the store keeps instead of copying while
    /// the put waits.
    pub async fn put_owned(
        &self,
        key: ShardKey,
        meta: ShardMeta,
        data: crate::service::owner::OwnedBytes,
        data_crc: Option<u32>,
    ) -> Result<(), PutError> {
        match self
            .store_op(|s, t| s.submit_put_owned(key, meta, Box::new(data), data_crc, t))
            .await
        {
            Outcome::Put(result) => result,
            other => unreachable!("put answered with {other:?}"),
        }
    }

    /// [`CoreCtx::put_owned`] of a record buffer, which the store writes as it is (zero-copy).
    pub async fn put_record(
        &self,
        key: ShardKey,
        meta: ShardMeta,
        record: crate::service::payload::RecordPayload,
        data_crc: Option<u32>,
    ) -> Result<(), PutError> {
        let (buf, len) = record.into_parts();
        match self
            .store_op(|s, t| s.submit_put_buf(key, meta, buf, len, data_crc, t))
            .await
        {
            Outcome::Put(result) => result,
            other => unreachable!("put answered with {other:?}"),
        }
    }

    /// Reads the next step of a walk over this core's records.
    pub async fn walk(
        &self,
        cursor: ds_store::WalkCursor,
        max_bytes: usize,
    ) -> Result<ds_store::WalkStep, ds_store::WalkError> {
        match self
            .store_op(|s, t| s.submit_walk(cursor, max_bytes, t))
            .await
        {
            Outcome::Walk(result) => result,
            other => unreachable!("walk answered with {other:?}"),
        }
    }

    /// Rewrites a damaged record at its own version (scrub and repair of a corrupt shard).
    pub async fn repair_put(
        &self,
        key: ShardKey,
        meta: ShardMeta,
        data: &[u8],
    ) -> Result<(), PutError> {
        match self
            .store_op(|s, t| s.submit_repair(key, meta, data, t))
            .await
        {
            Outcome::Put(result) => result,
            other => unreachable!("repair answered with {other:?}"),
        }
    }

    pub async fn delete(&self, key: ShardKey, version: u64) -> Result<bool, PutError> {
        match self.store_op(|s, t| s.submit_delete(key, version, t)).await {
            Outcome::Delete(result) => result,
            other => unreachable!("delete answered with {other:?}"),
        }
    }

    /// Sends `message` to `core`, waiting while its inbox is full.
    pub async fn send_to(&self, core: usize, mut message: Message) {
        loop {
            match self.inboxes[core].push(message) {
                Ok(()) => return,
                Err(back) => {
                    message = back;
                    self.sleep(Duration::from_micros(50)).await;
                }
            }
        }
    }

    /// Runs `op` on the core that owns its shard: here, or over that core's inbox.
    pub async fn call(self: &Rc<Self>, owner: usize, op: ShardOp) -> ShardReply {
        if owner == self.core {
            return crate::service::owner::execute(self, op).await;
        }
        let tag = self.reply_slots.borrow_mut().open();
        let from = self.core;
        self.send_to(owner, Message::Request { from, tag, op })
            .await;
        slots::wait(self.reply_slots.clone(), tag).await
    }

    /// Asks the management thread's overlay; `None` when the node runs none or it is gone.
    pub async fn ask_overlay(&self, responsible: Option<(u128, usize)>) -> Option<ShardReply> {
        let sender = self.overlay.borrow().clone()?;
        let tag = self.reply_slots.borrow_mut().open();
        let query = OverlayQuery {
            responsible,
            core: self.core,
            tag,
        };
        if sender.try_send(query).is_err() {
            // Full or gone: nothing will answer, so the slot goes back at once.
            self.reply_slots.borrow_mut().cancel(tag);
            return None;
        }
        Some(slots::wait(self.reply_slots.clone(), tag).await)
    }

    /// Hands a message from the inbox to whoever waits for it.
    pub fn deliver(self: &Rc<Self>, message: Message) {
        match message {
            Message::Request { from, tag, op } => {
                let ctx = self.clone();
                self.executor.spawn(async move {
                    let reply = crate::service::owner::execute(&ctx, op).await;
                    ctx.send_to(from, Message::Reply { tag, reply }).await;
                });
            }
            Message::Reply { tag, reply } => {
                self.reply_slots.borrow_mut().complete(tag, reply);
            }
        }
    }

    /// Hands store events to the tasks waiting for them; returns how many.
    pub fn poll_store(&self, events: &mut Vec<ds_store::Event>) -> usize {
        let got = self.store.borrow_mut().poll(events);
        let mut slots = self.store_slots.borrow_mut();
        for event in events.drain(..) {
            if let Some(buf) = event.buf {
                self.store.borrow_mut().recycle(buf);
            }
            slots.complete(event.token as usize, event.outcome);
        }
        got
    }
}
