//! Blocking helpers over the polled store, for tools, tests and start-up paths. The data path
//! of the appliance drives [`CoreStore::poll`] from its reactor instead.

use std::time::Duration;

use crate::engine::{CoreStore, Event, Outcome};
use crate::error::{GetError, PutError};
use crate::key::ShardKey;
use crate::record::{RecordHeader, ShardMeta};
use crate::walk::{WalkCursor, WalkError, WalkStep};

impl CoreStore {
    /// Polls (blocking on the devices in between) until the request `token` completes.
    pub fn wait_for(&mut self, token: u64) -> Outcome {
        let mut events: Vec<Event> = Vec::new();
        loop {
            self.poll(&mut events);
            if let Some(position) = events.iter().position(|event| event.token == token) {
                let event = events.swap_remove(position);
                assert!(
                    events.is_empty(),
                    "blocking use while other requests are in flight"
                );
                return event.outcome;
            }
            self.wait(Duration::from_millis(10));
        }
    }

    pub fn put(&mut self, key: ShardKey, meta: ShardMeta, data: &[u8]) -> Result<(), PutError> {
        let token = self.private_token();
        self.submit_put(key, meta, data, token);
        match self.wait_for(token) {
            Outcome::Put(result) => result,
            other => panic!("put completed as {other:?}"),
        }
    }

    /// [`CoreStore::submit_repair`], blocking.
    pub fn repair(&mut self, key: ShardKey, meta: ShardMeta, data: &[u8]) -> Result<(), PutError> {
        let token = self.private_token();
        self.submit_repair(key, meta, data, token);
        match self.wait_for(token) {
            Outcome::Put(result) => result,
            other => panic!("repair completed as {other:?}"),
        }
    }

    pub fn delete(&mut self, key: ShardKey, version: u64) -> Result<bool, PutError> {
        let token = self.private_token();
        self.submit_delete(key, version, token);
        match self.wait_for(token) {
            Outcome::Delete(result) => result,
            other => panic!("delete completed as {other:?}"),
        }
    }

    /// Reads a shard into a fresh vector.
    pub fn get(&mut self, key: ShardKey) -> Result<(RecordHeader, Vec<u8>), GetError> {
        let token = self.private_token();
        self.submit_get(key, token);
        match self.wait_for(token) {
            Outcome::Get(Ok(done)) => {
                let data = done.data().to_vec();
                let header = done.header;
                self.recycle(done.buf);
                Ok((header, data))
            }
            Outcome::Get(Err(error)) => Err(error),
            other => panic!("get completed as {other:?}"),
        }
    }

    /// One step of a walk ([`CoreStore::submit_walk`]), blocking.
    pub fn walk(&mut self, cursor: WalkCursor, max_bytes: usize) -> Result<WalkStep, WalkError> {
        let token = self.private_token();
        self.submit_walk(cursor, max_bytes, token);
        match self.wait_for(token) {
            Outcome::Walk(result) => result,
            other => panic!("walk completed as {other:?}"),
        }
    }

    /// Polls until nothing is in flight, compaction included.
    pub fn run_until_idle(&mut self) {
        let mut events = Vec::new();
        while !self.is_idle() {
            self.poll(&mut events);
            self.wait(Duration::from_millis(10));
        }
        self.poll(&mut events);
        assert!(events.is_empty(), "events nobody waited for: {events:?}");
    }
}
