//! The replicated state: keys and values in an embedded database (redb), with the index of
//! the last entry applied to them.
//!
//! The state lives on disk and outlives the process. Every batch of committed commands is
//! applied in one database transaction that also records the batch's last index, so the
//! state and its applied index never disagree: after a restart the runtime delivers only
//! the entries after that index, and nothing is replayed from the beginning.
//!
//! A snapshot is a read transaction (redb keeps older versions of pages for it), streamed
//! as records while new commands go on being applied. A snapshot from the leader is
//! restored into a new database file beside the current one, which replaces it by a rename
//! once it is complete: a failure or a crash part way leaves the current state whole.
//!
//! Snapshot format: `KVSNAP01`, then one record per key in key order: key length (u32 LE),
//! key, value length (u32 LE), value.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use raft_runtime::{Applied, Index, SnapshotStream, StateMachine, StateMachineError};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

/// Keys and their values.
const DATA: TableDefinition<&str, &[u8]> = TableDefinition::new("data");
/// The applied index, under [`APPLIED`].
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const APPLIED: &str = "applied";

const DB_FILE: &str = "kv.redb";
/// Where a snapshot from the leader is restored before it replaces [`DB_FILE`].
const RESTORE_FILE: &str = "kv.redb.restore";

const SNAPSHOT_MAGIC: &[u8; 8] = b"KVSNAP01";
/// About how much of a snapshot one chunk holds.
const SNAPSHOT_CHUNK: usize = 64 << 10;
/// About how much of a snapshot being restored is written in one transaction.
const RESTORE_BATCH: usize = 4 << 20;

/// The longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// The longest value accepted, in bytes.
pub const MAX_VALUE_LEN: usize = 1 << 20;

/// What clients ask the cluster to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Sets `key` to `value`.
    Put {
        /// The key.
        key: String,
        /// The new value.
        value: Bytes,
    },
    /// Removes `key`.
    Delete {
        /// The key.
        key: String,
    },
    /// Sets `key` to `new` (removes it if `None`) if its value is `expected` (absent if
    /// `None`).
    CompareAndSwap {
        /// The key.
        key: String,
        /// The value the key must have for the swap to happen.
        expected: Option<Bytes>,
        /// The value to set, or `None` to remove the key.
        new: Option<Bytes>,
    },
}

/// The answer to a [`Command`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The key's value before a put or a delete.
    Previous(Option<Bytes>),
    /// Whether a compare-and-swap swapped, and the key's value after it.
    Swapped {
        /// Whether the value was `expected`, and so was replaced.
        swapped: bool,
        /// The key's value now.
        current: Option<Bytes>,
    },
    /// The command was refused, the same way on every node (a key or value too long).
    Refused(String),
}

/// Why the store could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The database failed.
    #[error("{path}: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: redb::Error,
    },
    /// A file operation around the database failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// A page of a scan ([`KvStore::scan`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanPage {
    /// The keys, in order, with their values.
    pub entries: Vec<(String, Bytes)>,
    /// The first key after the page, if the page ended before the scan's end.
    pub next: Option<String>,
}

struct Inner {
    dir: PathBuf,
    db: Arc<Database>,
}

/// The key-value state machine. Clones share the same database.
#[derive(Clone)]
pub struct KvStore {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for KvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStore")
            .field("dir", &self.lock().dir)
            .finish_non_exhaustive()
    }
}

fn db_error(path: &Path, e: impl Into<redb::Error>) -> KvError {
    KvError::Database {
        path: path.to_path_buf(),
        source: e.into(),
    }
}

fn sm_error(e: impl std::error::Error + Send + Sync + 'static) -> StateMachineError {
    StateMachineError::new(e)
}

/// The memory redb may use to cache pages of one database. Its default, 1 GiB, let a node
/// restoring a 1 GiB snapshot grow by about as much (measured: +909 MiB for a 995 MiB
/// snapshot), and a restore holds two databases open. The state is on disk, and the
/// operating system's page cache keeps what is read often.
const DB_CACHE: usize = 16 << 20;

/// The page cache of a database being restored. Its keys arrive in order, so its writes
/// touch only the right-most path of the tree, and the database it replaces keeps its own
/// cache meanwhile.
const RESTORE_CACHE: usize = 4 << 20;

/// Opens (or creates) the database at `path` with both tables in it, with a page cache of
/// `cache` bytes.
fn open_db(path: &Path, cache: usize) -> Result<Database, KvError> {
    let db = Database::builder()
        .set_cache_size(cache)
        .create(path)
        .map_err(|e| db_error(path, e))?;
    let txn = db.begin_write().map_err(|e| db_error(path, e))?;
    txn.open_table(DATA).map_err(|e| db_error(path, e))?;
    txn.open_table(META).map_err(|e| db_error(path, e))?;
    txn.commit().map_err(|e| db_error(path, e))?;
    Ok(db)
}

fn sync_dir(dir: &Path) -> Result<(), KvError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| KvError::Io {
            op: "fsync",
            path: dir.to_path_buf(),
            source,
        })
}

impl KvStore {
    /// Opens the store in `dir` (creating both), discarding a restore that a crash
    /// interrupted.
    pub fn open(dir: impl AsRef<Path>) -> Result<KvStore, KvError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|source| KvError::Io {
            op: "create directory",
            path: dir.clone(),
            source,
        })?;
        let leftover = dir.join(RESTORE_FILE);
        match fs::remove_file(&leftover) {
            Ok(()) => sync_dir(&dir)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(KvError::Io {
                    op: "remove",
                    path: leftover,
                    source,
                });
            }
        }
        let db = open_db(&dir.join(DB_FILE), DB_CACHE)?;
        Ok(KvStore {
            inner: Arc::new(Mutex::new(Inner {
                dir,
                db: Arc::new(db),
            })),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn db(&self) -> Arc<Database> {
        self.lock().db.clone()
    }

    /// Runs `f` in a read transaction of the current database; an error names its file.
    fn read<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, KvError> {
        let (db, path) = {
            let inner = self.lock();
            (inner.db.clone(), inner.dir.join(DB_FILE))
        };
        db.begin_read()
            .map_err(redb::Error::from)
            .and_then(|txn| f(&txn))
            .map_err(|e| db_error(&path, e))
    }

    /// The value of `key` in the local state.
    pub fn get(&self, key: &str) -> Result<Option<Bytes>, KvError> {
        self.read(|txn| {
            let table = txn.open_table(DATA)?;
            Ok(table.get(key)?.map(|v| Bytes::copy_from_slice(v.value())))
        })
    }

    /// Up to `limit` keys from `from` (included) on, in order, with their values.
    pub fn range(&self, from: &str, limit: usize) -> Result<Vec<(String, Bytes)>, KvError> {
        Ok(self.scan(from, None, "", limit, usize::MAX)?.entries)
    }

    /// A page of a scan of the local state: the keys from `start` (included) on, below
    /// `end` (excluded) if given, that begin with `prefix`, in key order, with their
    /// values. The page ends after `limit` keys, or once its keys and values add up to
    /// `max_bytes` or more (it always holds at least one key, however large); `next` is
    /// then the first key left out, where the next page starts.
    ///
    /// Everything is read in one read transaction: the page is the state as of one applied
    /// index, whatever is being applied meanwhile.
    pub fn scan(
        &self,
        start: &str,
        end: Option<&str>,
        prefix: &str,
        limit: usize,
        max_bytes: usize,
    ) -> Result<ScanPage, KvError> {
        // Keys that begin with the prefix sort from the prefix on, together.
        let from = start.max(prefix);
        let mut page = ScanPage::default();
        if limit == 0 || end.is_some_and(|end| from >= end) {
            return Ok(page);
        }
        self.read(|txn| {
            let table = txn.open_table(DATA)?;
            let range = match end {
                Some(end) => table.range(from..end)?,
                None => table.range(from..)?,
            };
            let mut bytes = 0;
            for item in range {
                let (k, v) = item?;
                let key = k.value();
                if !key.starts_with(prefix) {
                    break;
                }
                if page.entries.len() == limit || (bytes >= max_bytes && !page.entries.is_empty()) {
                    page.next = Some(key.to_string());
                    break;
                }
                bytes += key.len() + v.value().len();
                page.entries
                    .push((key.to_string(), Bytes::copy_from_slice(v.value())));
            }
            Ok(page)
        })
    }

    /// The number of keys in the local state.
    pub fn len(&self) -> Result<u64, KvError> {
        self.read(|txn| Ok(redb::ReadableTableMetadata::len(&txn.open_table(DATA)?)?))
    }

    /// Whether the local state holds no key.
    pub fn is_empty(&self) -> Result<bool, KvError> {
        Ok(self.len()? == 0)
    }

    /// The applied index as committed in the database.
    pub fn applied(&self) -> Result<Index, KvError> {
        self.read(|txn| Ok(txn.open_table(META)?.get(APPLIED)?.map_or(0, |v| v.value())))
    }
}

/// Applies one command to the open table; deterministic on every node.
fn apply_one(table: &mut redb::Table<&str, &[u8]>, command: Command) -> Result<Response, redb::Error> {
    let too_long = |key: &str, value: Option<&Bytes>| {
        if key.len() > MAX_KEY_LEN {
            return Some(format!(
                "a key is at most {MAX_KEY_LEN} bytes, this one is {}",
                key.len()
            ));
        }
        value.filter(|v| v.len() > MAX_VALUE_LEN).map(|v| {
            format!(
                "a value is at most {MAX_VALUE_LEN} bytes, this one is {}",
                v.len()
            )
        })
    };
    Ok(match command {
        Command::Put { key, value } => {
            if let Some(reason) = too_long(&key, Some(&value)) {
                return Ok(Response::Refused(reason));
            }
            let previous = table.insert(key.as_str(), value.as_ref())?;
            Response::Previous(previous.map(|v| Bytes::copy_from_slice(v.value())))
        }
        Command::Delete { key } => {
            if let Some(reason) = too_long(&key, None) {
                return Ok(Response::Refused(reason));
            }
            let previous = table.remove(key.as_str())?;
            Response::Previous(previous.map(|v| Bytes::copy_from_slice(v.value())))
        }
        Command::CompareAndSwap { key, expected, new } => {
            if let Some(reason) = too_long(&key, new.as_ref()) {
                return Ok(Response::Refused(reason));
            }
            let current = table
                .get(key.as_str())?
                .map(|v| Bytes::copy_from_slice(v.value()));
            if current != expected {
                return Ok(Response::Swapped {
                    swapped: false,
                    current,
                });
            }
            match &new {
                Some(value) => {
                    table.insert(key.as_str(), value.as_ref())?;
                }
                None => {
                    table.remove(key.as_str())?;
                }
            }
            Response::Swapped {
                swapped: true,
                current: new,
            }
        }
    })
}

/// Reads a snapshot's records as its chunks arrive (a record may span chunks).
struct RecordReader {
    buf: BytesMut,
    magic_seen: bool,
}

impl RecordReader {
    fn new() -> Self {
        RecordReader {
            buf: BytesMut::new(),
            magic_seen: false,
        }
    }

    /// The next whole record in what arrived so far, if any.
    fn next_record(&mut self) -> Result<Option<(String, Bytes)>, StateMachineError> {
        if !self.magic_seen {
            if self.buf.len() < SNAPSHOT_MAGIC.len() {
                return Ok(None);
            }
            if &self.buf[..SNAPSHOT_MAGIC.len()] != SNAPSHOT_MAGIC {
                return Err(StateMachineError::msg("not a key-value snapshot (bad magic)"));
            }
            let _ = self.buf.split_to(SNAPSHOT_MAGIC.len());
            self.magic_seen = true;
        }
        let Some(key_len) = self.len_at(0, MAX_KEY_LEN, "key")? else {
            return Ok(None);
        };
        let Some(value_len) = self.len_at(4 + key_len, MAX_VALUE_LEN, "value")? else {
            return Ok(None);
        };
        if self.buf.len() < 8 + key_len + value_len {
            return Ok(None);
        }
        let record = self.buf.split_to(8 + key_len + value_len).freeze();
        let key = std::str::from_utf8(&record[4..4 + key_len])
            .map_err(|_| StateMachineError::msg("a snapshot key is not UTF-8"))?
            .to_string();
        Ok(Some((key, record.slice(8 + key_len..))))
    }

    /// The length field at `at`, if it arrived, checked against `max`.
    fn len_at(&self, at: usize, max: usize, what: &str) -> Result<Option<usize>, StateMachineError> {
        let Some(field) = self.buf.get(at..at + 4) else {
            return Ok(None);
        };
        let len = u32::from_le_bytes([field[0], field[1], field[2], field[3]]) as usize;
        if len > max {
            return Err(StateMachineError::msg(format!(
                "a snapshot {what} claims {len} bytes, more than the {max} allowed"
            )));
        }
        Ok(Some(len))
    }

    /// Whether everything that arrived was read (a snapshot must end on a record).
    fn finished(&self) -> bool {
        self.magic_seen && self.buf.is_empty()
    }
}

/// Writes `batch` into `db` in one transaction; the last one (with `last`, the applied
/// index) durably.
fn write_batch(
    db: &Database,
    batch: Vec<(String, Bytes)>,
    last: Option<Index>,
) -> Result<(), StateMachineError> {
    let mut txn = db.begin_write().map_err(sm_error)?;
    // Only the last transaction must be durable: the file counts only once it is renamed.
    let durability = if last.is_some() {
        Durability::Immediate
    } else {
        Durability::None
    };
    txn.set_durability(durability).map_err(sm_error)?;
    {
        let mut table = txn.open_table(DATA).map_err(sm_error)?;
        for (k, v) in batch {
            table.insert(k.as_str(), v.as_ref()).map_err(sm_error)?;
        }
        if let Some(index) = last {
            let mut meta = txn.open_table(META).map_err(sm_error)?;
            meta.insert(APPLIED, index).map_err(sm_error)?;
        }
    }
    txn.commit().map_err(sm_error)
}

/// Writes the records of `data` into a new database at `path`, a transaction every few
/// MiB on tokio's blocking threads, with `index` as its applied index; closes it.
async fn restore_into(path: &Path, index: Index, mut data: SnapshotStream) -> Result<(), StateMachineError> {
    let db = {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || open_db(&path, RESTORE_CACHE))
            .await
            .map_err(sm_error)?
    };
    let db = Arc::new(db.map_err(sm_error)?);
    let mut reader = RecordReader::new();
    let mut batch: Vec<(String, Bytes)> = Vec::new();
    let mut batch_bytes = 0usize;
    let write = |batch: Vec<(String, Bytes)>, last: Option<Index>| {
        let db = db.clone();
        async move {
            tokio::task::spawn_blocking(move || write_batch(&db, batch, last))
                .await
                .map_err(sm_error)?
        }
    };
    while let Some(chunk) = data.next_chunk().await.map_err(sm_error)? {
        reader.buf.extend_from_slice(&chunk);
        while let Some((key, value)) = reader.next_record()? {
            batch_bytes += key.len() + value.len();
            batch.push((key, value));
        }
        if batch_bytes >= RESTORE_BATCH {
            write(std::mem::take(&mut batch), None).await?;
            batch_bytes = 0;
        }
    }
    if !reader.finished() {
        return Err(StateMachineError::msg("the snapshot ends inside a record"));
    }
    write(batch, Some(index)).await
}

#[async_trait]
impl StateMachine for KvStore {
    type Command = Command;
    type Response = Response;

    async fn apply(
        &mut self,
        batch: Vec<Applied<Command>>,
        applied: Index,
    ) -> Result<Vec<Response>, StateMachineError> {
        let db = self.db();
        // One transaction: the batch's effects and the applied index commit together. It
        // ends in an fsync, so it runs on a blocking thread, not on the runtime's.
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_write().map_err(sm_error)?;
            let mut responses = Vec::with_capacity(batch.len());
            {
                let mut table = txn.open_table(DATA).map_err(sm_error)?;
                for c in batch {
                    responses.push(apply_one(&mut table, c.command).map_err(sm_error)?);
                }
                let mut meta = txn.open_table(META).map_err(sm_error)?;
                meta.insert(APPLIED, applied).map_err(sm_error)?;
            }
            txn.commit().map_err(sm_error)?;
            Ok(responses)
        })
        .await
        .map_err(sm_error)?
    }

    async fn applied_index(&self) -> Result<Index, StateMachineError> {
        self.applied().map_err(sm_error)
    }

    async fn snapshot(&mut self) -> Result<SnapshotStream, StateMachineError> {
        // The read transaction is the point-in-time view; the records are read from it as
        // the runtime reads the stream, on tokio's blocking threads.
        let txn = self.db().begin_read().map_err(sm_error)?;
        let table = txn.open_table(DATA).map_err(sm_error)?;
        let range = table.range_owned(..).map_err(sm_error)?;
        let first = Bytes::from_static(SNAPSHOT_MAGIC);
        let records = futures::stream::try_unfold(Some(range), |range| async move {
            let Some(mut range) = range else {
                return Ok(None);
            };
            let (range, chunk) = tokio::task::spawn_blocking(move || {
                let mut chunk = Vec::with_capacity(SNAPSHOT_CHUNK);
                while chunk.len() < SNAPSHOT_CHUNK {
                    let Some(item) = range.next() else {
                        return Ok::<_, std::io::Error>((None, chunk));
                    };
                    let (k, v) = item.map_err(std::io::Error::other)?;
                    let (k, v) = (k.value().as_bytes(), v.value());
                    chunk.extend_from_slice(&(k.len() as u32).to_le_bytes());
                    chunk.extend_from_slice(k);
                    chunk.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    chunk.extend_from_slice(v);
                }
                Ok((Some(range), chunk))
            })
            .await
            .map_err(std::io::Error::other)??;
            if chunk.is_empty() && range.is_none() {
                return Ok(None);
            }
            Ok(Some((Bytes::from(chunk), range)))
        });
        Ok(SnapshotStream::new(
            futures::stream::once(async { Ok(first) }).chain(records),
        ))
    }

    async fn restore(&mut self, index: Index, data: SnapshotStream) -> Result<(), StateMachineError> {
        let (dir, current) = {
            let inner = self.lock();
            (inner.dir.clone(), inner.dir.join(DB_FILE))
        };
        let staging = dir.join(RESTORE_FILE);
        let _ = fs::remove_file(&staging);
        if let Err(e) = restore_into(&staging, index, data).await {
            let _ = fs::remove_file(&staging);
            return Err(e);
        }
        // The new file replaces the current one at once; a view still being read keeps
        // the old file open. Renaming, syncing and opening block: not on the runtime.
        let db = tokio::task::spawn_blocking(move || {
            fs::rename(&staging, &current).map_err(sm_error)?;
            sync_dir(&dir).map_err(sm_error)?;
            open_db(&current, DB_CACHE).map_err(sm_error)
        })
        .await
        .map_err(sm_error)??;
        self.lock().db = Arc::new(db);
        Ok(())
    }
}
