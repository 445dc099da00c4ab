//! The durable store of asynchronous calls: a redb file (embedded, no server).
//!
//! Tables: `meta` (call sequence → JSON [`Meta`]), `input` and `output` (sequence → bytes),
//! `counters` (`next` → the next sequence). A call is written (meta and input, one
//! transaction committed with fsync) before its `202` goes out, and stays until it ends; its
//! result replaces its input in one transaction. Writes go through one thread that commits
//! whatever has queued up as one transaction (group commit), so the fsync is shared by every
//! call accepted meanwhile.

use std::path::Path;
use std::sync::mpsc;

use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use gloam_core::ErrorKind;

use crate::state::Refusal;

const META: TableDefinition<u32, &[u8]> = TableDefinition::new("meta");
const INPUT: TableDefinition<u32, &[u8]> = TableDefinition::new("input");
const OUTPUT: TableDefinition<u32, &[u8]> = TableDefinition::new("output");
const COUNTERS: TableDefinition<&str, u32> = TableDefinition::new("counters");

/// Most writes committed in one transaction.
const BATCH: usize = 512;

/// What is known of an asynchronous call besides its input and output.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Meta {
    /// The function called.
    pub function: String,
    /// The gRPC method id (0 for a plain function).
    #[serde(default)]
    pub method_id: u16,
    /// Where the result is POSTed, if anywhere.
    pub callback: Option<String>,
    /// When it was accepted (Unix ms).
    pub accepted_ms: u64,
    /// Times it was started (more than 1: it ran again after an engine restart).
    pub runs: u32,
    /// The result, once it ended.
    pub ended: Option<Ended>,
}

/// How an asynchronous call ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ended {
    /// When (Unix ms).
    pub at_ms: u64,
    /// `None`: success (the output is in `output`); else the error kind's name.
    pub error: Option<String>,
    /// The error message.
    pub message: String,
    /// The callback is still to be delivered.
    pub callback_pending: bool,
}

/// A write for the writer thread.
enum Write {
    Accept {
        seq: u32,
        meta: Vec<u8>,
        input: bytes::Bytes,
        next: u32,
    },
    End {
        seq: u32,
        meta: Vec<u8>,
        output: Option<bytes::Bytes>,
    },
    Meta {
        seq: u32,
        meta: Vec<u8>,
    },
    Remove {
        seq: u32,
    },
}

type Job = (Write, Option<oneshot::Sender<Result<(), Refusal>>>);

/// The store: reads from any thread, writes through the writer thread.
pub struct Store {
    db: std::sync::Arc<Database>,
    writes: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

fn store_error(message: String) -> Refusal {
    Refusal::new(ErrorKind::Io, format!("async store: {message}"))
}

fn db_error(e: impl std::fmt::Display) -> Refusal {
    store_error(e.to_string())
}

fn encode(meta: &Meta) -> Vec<u8> {
    serde_json::to_vec(meta).unwrap_or_default()
}

impl Store {
    /// Opens (or creates) the store at `path` and starts its writer thread.
    pub fn open(path: &Path) -> Result<Store, Refusal> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| store_error(format!("creating {}: {e}", dir.display())))?;
        }
        let db = Database::create(path).map_err(|e| {
            store_error(format!(
                "opening {} (async.store; is another engine using it?): {e}",
                path.display()
            ))
        })?;
        let txn = db.begin_write().map_err(db_error)?;
        for t in [META, INPUT, OUTPUT] {
            txn.open_table(t).map_err(db_error)?;
        }
        txn.open_table(COUNTERS).map_err(db_error)?;
        txn.commit().map_err(db_error)?;
        let db = std::sync::Arc::new(db);
        let (writes, rx) = mpsc::channel::<Job>();
        let writer_db = db.clone();
        std::thread::Builder::new()
            .name("gloam-async-store".into())
            .spawn(move || writer(&writer_db, &rx))
            .map_err(|e| store_error(format!("starting the store's writer: {e}")))?;
        Ok(Store { db, writes })
    }

    /// Every call in the store: sequence and meta; and the next sequence to hand out.
    pub fn load(&self) -> Result<(Vec<(u32, Meta)>, u32), Refusal> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let meta = txn.open_table(META).map_err(db_error)?;
        let mut calls = Vec::new();
        for row in meta.iter().map_err(db_error)? {
            let (k, v) = row.map_err(db_error)?;
            match serde_json::from_slice::<Meta>(v.value()) {
                Ok(m) => calls.push((k.value(), m)),
                Err(e) => tracing::warn!(seq = k.value(), "unreadable async call record: {e}"),
            }
        }
        let counters = txn.open_table(COUNTERS).map_err(db_error)?;
        let next = counters
            .get("next")
            .map_err(db_error)?
            .map_or(1, |v| v.value());
        Ok((calls, next))
    }

    /// The meta of call `seq`.
    pub fn meta(&self, seq: u32) -> Result<Option<Meta>, Refusal> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let t = txn.open_table(META).map_err(db_error)?;
        let v = t.get(seq).map_err(db_error)?;
        Ok(v.and_then(|v| serde_json::from_slice(v.value()).ok()))
    }

    /// The input (`output == false`) or output of call `seq`.
    pub fn bytes(&self, seq: u32, output: bool) -> Result<Option<Vec<u8>>, Refusal> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let t = txn
            .open_table(if output { OUTPUT } else { INPUT })
            .map_err(db_error)?;
        let v = t.get(seq).map_err(db_error)?;
        Ok(v.map(|v| v.value().to_vec()))
    }

    async fn write(&self, w: Write) -> Result<(), Refusal> {
        let (tx, rx) = oneshot::channel();
        self.writes
            .send((w, Some(tx)))
            .map_err(|_| store_error("the store's writer is gone".into()))?;
        rx.await
            .map_err(|_| store_error("the store's writer is gone".into()))?
    }

    /// Stores an accepted call (durably, before it is acknowledged).
    pub async fn accept(
        &self,
        seq: u32,
        meta: &Meta,
        input: bytes::Bytes,
        next: u32,
    ) -> Result<(), Refusal> {
        let meta = encode(meta);
        self.write(Write::Accept {
            seq,
            meta,
            input,
            next,
        })
        .await
    }

    /// Records how call `seq` ended: its meta, its output; its input goes.
    pub async fn end(
        &self,
        seq: u32,
        meta: &Meta,
        output: Option<bytes::Bytes>,
    ) -> Result<(), Refusal> {
        self.write(Write::End {
            seq,
            meta: encode(meta),
            output,
        })
        .await
    }

    /// Replaces the meta of call `seq` (started again, callback delivered or given up),
    /// without waiting: it joins the next commit.
    pub fn update(&self, seq: u32, meta: &Meta) {
        let _ = self.writes.send((
            Write::Meta {
                seq,
                meta: encode(meta),
            },
            None,
        ));
    }

    /// Removes call `seq` (its result expired), without waiting.
    pub fn remove(&self, seq: u32) {
        let _ = self.writes.send((Write::Remove { seq }, None));
    }
}

/// The writer thread: commits every write queued up as one transaction.
fn writer(db: &Database, rx: &mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let result = commit(db, batch.iter().map(|(w, _)| w));
        if let Err(e) = &result {
            tracing::error!("{}", e.message);
        }
        for (_, reply) in batch {
            if let Some(reply) = reply {
                let _ = reply.send(result.clone());
            }
        }
    }
}

fn commit<'a>(db: &Database, writes: impl Iterator<Item = &'a Write>) -> Result<(), Refusal> {
    let txn = db.begin_write().map_err(db_error)?;
    {
        let mut meta = txn.open_table(META).map_err(db_error)?;
        let mut input = txn.open_table(INPUT).map_err(db_error)?;
        let mut output = txn.open_table(OUTPUT).map_err(db_error)?;
        let mut counters = txn.open_table(COUNTERS).map_err(db_error)?;
        for w in writes {
            match w {
                Write::Accept {
                    seq,
                    meta: m,
                    input: i,
                    next,
                } => {
                    meta.insert(*seq, m.as_slice()).map_err(db_error)?;
                    input.insert(*seq, i.as_ref()).map_err(db_error)?;
                    counters.insert("next", *next).map_err(db_error)?;
                }
                Write::Meta { seq, meta: m } => {
                    meta.insert(*seq, m.as_slice()).map_err(db_error)?;
                }
                Write::End {
                    seq,
                    meta: m,
                    output: o,
                } => {
                    meta.insert(*seq, m.as_slice()).map_err(db_error)?;
                    input.remove(*seq).map_err(db_error)?;
                    if let Some(o) = o {
                        output.insert(*seq, o.as_ref()).map_err(db_error)?;
                    }
                }
                Write::Remove { seq } => {
                    meta.remove(*seq).map_err(db_error)?;
                    input.remove(*seq).map_err(db_error)?;
                    output.remove(*seq).map_err(db_error)?;
                }
            }
        }
    }
    txn.commit().map_err(db_error)
}
