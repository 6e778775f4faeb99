//! The spool: the agent's durable, bounded, crash-safe queue of drift events.
//!
//! Every event is appended here before it counts as emitted, and stays until it is
//! acknowledged (by the collector, or once printed in standalone mode). Records are opaque
//! payloads keyed by a sequence number (`seq`) that the caller assigns: strictly increasing,
//! starting at 1.
//!
//! # On-disk format
//!
//! One directory (mode 0700) holding segment files and one ack file:
//!
//! ```text
//! <dir>/00000000000000000042.seg   segment, named by its first seq (zero-padded: names sort)
//! <dir>/00000000000000000097.seg
//! <dir>/ack                        acked seq + last seq
//! <dir>/spare                      a zero-filled file, renamed into place as the next segment
//!
//! segment = header record* zero*
//!   header = "DWSP" | u16 LE version (1) | u16 LE flags (bit 0: snapshot)
//!   record = u32 LE payload len | u32 LE crc32(seq LE ++ payload) | u64 LE seq | payload
//! ack     = "DWAK" | u32 LE version (1) | u64 LE acked | u64 LE last | u32 LE crc32(all before)
//! ```
//!
//! # Preallocation
//!
//! A segment is created `segment_bytes` long and full of zeros, written and fsynced (real
//! zeros, not `fallocate`: an unwritten extent still needs a journal commit at its first
//! write). Appends then overwrite blocks that are already allocated, and the file size does
//! not change, so the fdatasync of a batch flushes data only instead of also committing the
//! inode's new size through the filesystem journal. A background thread prepares the next
//! segment ahead of time (`.spare.tmp`, fsync, renamed to `spare`), which a rollover renames
//! into place; if it is not ready the rollover waits for it, and if it failed the rollover
//! zero-fills the segment itself. A batch that runs past the preallocated end extends the file
//! as before. A snapshot segment is padded with zeros the same way.
//!
//! The records of a segment end at the first record boundary after which the file holds only
//! zeros, or at the end of the file. A record header is never all zeros: seqs start at 1, and
//! readers reject a header of zeros and a seq of 0 explicitly, so padding is never read as a
//! record (nor a zero length with a checksum over zeros). Segments written before
//! preallocation simply end at the end of the file, which the same rule reads. (The version
//! stays 1. An older agent reads the padding of the last segment as a torn tail and truncates
//! it, losing nothing; a padded segment other than the last one, which only happens after
//! `segment_bytes` shrank, is corruption to it.)
//!
//! # Invariants
//!
//! - Seqs strictly increase across the records of all segments taken in name order; every
//!   record's seq is >= its segment's name (the name is a lower bound: an empty segment may be
//!   named after the seq it is waiting for). Payloads are at most 16 MiB; a larger length field
//!   is damage, never an allocation.
//! - Only the last segment is ever written to. A segment is fsynced before the next one is
//!   created, so only the last one can end in a torn write.
//! - `ack` is only replaced atomically (temp file, fsync, rename, directory fsync) and is written
//!   before any segment it releases is deleted; `acked <= last`. The highest seq ever appended is
//!   the largest of `ack.last`, the last record on disk and (newest segment name - 1), so a
//!   fully acked, empty spool still knows it.
//! - A snapshot segment (flag bit 0, written by [`Spool::compact`]) replaces everything older:
//!   it is written under a temp name, fsynced and renamed into place before the older segments
//!   are deleted, and [`Spool::open`] deletes any segment older than the newest snapshot. A
//!   crash therefore leaves the old records or the snapshot, never a mix.
//! - Memory is O(segments): per segment its name, used and file sizes, record count, first/last
//!   seq and an ack cursor. Reads reopen the segment files.
//! - Past a segment's used bytes the file holds only zeros.
//! - Sizes count used bytes (headers and records), not padding: [`Spool::size_bytes`] and the
//!   `max_bytes` bound. The files take up to two segments more (the free space of the last
//!   one, and the spare), plus whatever a last batch writes past the preallocated end.
//!
//! # Quarantine
//!
//! With [`SpoolConfig::quarantine`] set (the daemon sets `<state>/quarantine`), [`Spool::open`]
//! does not stop at [`SpoolError::Corrupt`]: it moves the damaged file (a segment, or the ack
//! file) into the quarantine directory under a timestamped name, reports it in
//! [`Recovery::quarantined`], and opens the rest. The records of a quarantined segment are
//! gone: the caller must re-sync its consumer from its own state (the daemon starts a new
//! stream, which makes the collector ask for a snapshot). Their numbers are not given out
//! again: the last seq is raised to the highest one the damaged segment's record headers
//! still show (walked without checksums; a damaged length field ends the walk early).
//!
//! # A full disk
//!
//! When an append fails because the disk is full (`ENOSPC`, `EDQUOT`), the batch is undone on
//! disk as any failed append, then held in memory instead, and the spool is *unavailable*
//! ([`Spool::unavailable`]) until [`Spool::resume`] writes the held records out. Meanwhile
//! appends go to memory, reads return the records on disk then those in memory, and
//! acknowledgements are kept in memory (the ack file is not written, and no segment is
//! deleted: what is on disk stays as it was, consistent with the ledger saved with it). Held
//! records count towards `max_bytes`; a compaction while unavailable drops the held records
//! (the caller sends a snapshot instead). A crash while unavailable loses the held records,
//! which were never promised durable; the daemon's startup comparison and the collector's
//! anti-entropy bring the collector back to the truth.
//!
//! # fsync policy
//!
//! [`Spool::append`] writes the whole batch, then fdatasyncs once (plus the directory when the
//! batch created a segment): when it returns `Ok`, the batch survives `kill -9` and power loss.
//! If it fails, the batch is zeroed out of the file again (and the file cut back to its old
//! size), so it is all or nothing. [`Spool::ack`]
//! and [`Spool::compact`] are durable when they return; deleting released segments is not (a
//! leftover is deleted again on the next open).
//!
//! # Recovery
//!
//! [`Spool::open`] checks every record of every segment, up to the zero padding. In the last
//! segment, a bad record (short header, length past the end of file or over the limit,
//! checksum mismatch, seq 0, a header of zeros followed by something other than zeros) starts a
//! torn tail: it and everything after it up to the last non-zero byte are overwritten with
//! zeros (so the segment keeps its preallocated space), logged and counted in [`Recovery`]
//! (zeros after the last non-zero byte are padding, not counted). Such a write was never
//! acknowledged by `append`, so nothing promised is lost: blocks of an unsynced batch can reach
//! the disk in any order, so a torn record may be followed by zeros, and zeros by pieces of
//! records. A bad record anywhere else, or one followed by a record that checks out (so the
//! write went on past it: damage, not a torn write), is [`SpoolError::Corrupt`] with the file
//! and byte offset: the spool never guesses past damage. (A damaged length field in the last
//! segment cannot be told from a torn write, and is dropped as one, with a warning.)
//!
//! One process owns a spool directory; nothing locks it against a second one. Inside the agent,
//! the daemon and the shipper share it behind one mutex, and records leave it only by the
//! release policy: see [`shared`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use driftwatch_proto::text::display_path;
use tracing::{info, warn};

/// Default bound on the spool's bytes on disk.
pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;
/// Default size past which a new segment is started.
pub const DEFAULT_SEGMENT_BYTES: u64 = 4 << 20;
/// The largest payload accepted; a larger length on disk is damage.
pub const MAX_RECORD: usize = 16 << 20;

const SEGMENT_MAGIC: &[u8; 4] = b"DWSP";
const ACK_MAGIC: &[u8; 4] = b"DWAK";
const VERSION: u16 = 1;
const FLAG_SNAPSHOT: u16 = 1;
const HEADER_LEN: u64 = 8;
const RECORD_HEADER: u64 = 16;
const ACK_FILE: &str = "ack";
const ACK_LEN: usize = 28;
const SPARE_FILE: &str = "spare";
const SPARE_TMP: &str = ".spare.tmp";

/// Where the spool lives and how big it may grow.
#[derive(Clone, Debug)]
pub struct SpoolConfig {
    /// The spool directory (e.g. `<state_dir>/spool`); created with mode 0700 if missing.
    pub dir: PathBuf,
    /// Bound on the bytes on disk: past it [`Spool::is_full`] asks the caller to compact.
    pub max_bytes: u64,
    /// A new segment file is started once the current one reaches this size; segments are
    /// preallocated (zero-filled) to it.
    pub segment_bytes: u64,
    /// Where [`Spool::open`] moves a corrupt file; `None`: a corrupt file is an error.
    pub quarantine: Option<PathBuf>,
}

impl SpoolConfig {
    /// A config for `dir` with the default sizes.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SpoolConfig {
            dir: dir.into(),
            max_bytes: DEFAULT_MAX_BYTES,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            quarantine: None,
        }
    }
}

/// What [`Spool::open`] found.
#[derive(Debug, Default, Clone)]
pub struct Recovery {
    /// Unacked records kept (those that will be resent).
    pub records: u64,
    /// Bytes of torn or damaged tail truncated from the last segment.
    pub torn_bytes_dropped: u64,
    /// Segment files kept.
    pub segments: usize,
    /// The first unacked seq.
    pub first_seq: Option<u64>,
    /// The highest seq ever appended.
    pub last_seq: Option<u64>,
    /// The acked seq (0 when nothing was acked).
    pub acked: u64,
    /// Corrupt files moved into the quarantine directory.
    pub quarantined: Vec<Quarantined>,
}

/// A spool file [`Spool::open`] found corrupt and moved aside.
#[derive(Debug, Clone)]
pub struct Quarantined {
    pub path: PathBuf,
    pub moved_to: PathBuf,
    /// What is wrong with it: "checksum mismatch at byte 8917".
    pub problem: String,
}

impl Quarantined {
    /// What happened, for the log and the status: the file, what is wrong, what was done, and
    /// `then`, how the caller re-syncs ("the collector gets a snapshot instead").
    pub fn message(&self, then: &str) -> String {
        let what = if self.path.file_name() == Some(std::ffi::OsStr::new(ACK_FILE)) {
            "Spool ack file"
        } else {
            "Spool segment"
        };
        format!(
            "{what} {} is corrupt ({}); moved it to {}; {then}.",
            display_path(&self.path),
            self.problem,
            display_path(&self.moved_to)
        )
    }
}

/// A spool failure. Nothing is changed on disk by a failed call, except as noted.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("cannot {op} {}", display_path(path))]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Damage that is not a torn tail (or an ack file that fails its checks).
    #[error(
        "spool file {} is corrupt at byte {offset}: {reason}",
        display_path(path)
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("seq {seq} must be greater than {after} (seqs start at 1 and strictly increase)")]
    SeqOrder { seq: u64, after: u64 },
    #[error("record {seq} has {len} bytes, over the {MAX_RECORD}-byte limit")]
    TooLarge { seq: u64, len: usize },
    #[error("cannot ack up to {upto}: the last seq appended is {last}")]
    AckBeyondLast { upto: u64, last: u64 },
    /// A failed append could not be undone; reopening runs recovery.
    #[error(
        "the spool in {} could not undo a failed append; reopen it",
        display_path(dir)
    )]
    Poisoned { dir: PathBuf },
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SpoolError {
    let path = path.to_path_buf();
    move |source| SpoolError::Io { op, path, source }
}

/// The in-memory index entry of one segment file.
#[derive(Clone, Debug)]
struct Segment {
    name: u64,
    path: PathBuf,
    /// Bytes used: the header and the records.
    len: u64,
    /// Bytes in the file: `len` plus zero padding.
    file_len: u64,
    records: u64,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    /// Records at the front that are acked, and the byte offset just past them.
    acked_records: u64,
    acked_end: u64,
}

impl Segment {
    fn new(dir: &Path, name: u64) -> Self {
        Segment {
            name,
            path: segment_path(dir, name),
            len: HEADER_LEN,
            file_len: HEADER_LEN,
            records: 0,
            first_seq: None,
            last_seq: None,
            acked_records: 0,
            acked_end: HEADER_LEN,
        }
    }

    fn push(&mut self, seq: u64, bytes: u64) {
        self.len += bytes;
        self.records += 1;
        self.first_seq.get_or_insert(seq);
        self.last_seq = Some(seq);
    }
}

/// The durable event queue. See the module docs for the format and guarantees.
#[derive(Debug)]
pub struct Spool {
    config: SpoolConfig,
    /// Sorted by name; the last one is the one appended to.
    segments: Vec<Segment>,
    /// An open handle on the last segment.
    active: Option<File>,
    acked: u64,
    /// Highest seq ever appended; 0 when none.
    last: u64,
    poisoned: bool,
    /// The thread preparing the spare segment, if one was started since the last rollover.
    spare: Option<JoinHandle<()>>,
    /// Records appended while the disk was full, in order, all after the records on disk.
    held: std::collections::VecDeque<(u64, Vec<u8>)>,
    held_bytes: u64,
    /// Why the spool cannot write ("disk full"), while it cannot.
    unavailable: Option<String>,
    /// `acked` is ahead of the ack file (acknowledged while unavailable).
    ack_pending: bool,
    /// Files moved to quarantine by [`Spool::open`].
    quarantined: u64,
}

impl Drop for Spool {
    fn drop(&mut self) {
        // Nothing may still write into the directory once the spool is gone.
        if let Some(thread) = self.spare.take() {
            let _ = thread.join();
        }
    }
}

impl Spool {
    /// Opens (or creates) the spool, checking every record and recovering from a crash: a torn
    /// tail of the last segment is truncated away and reported, an interrupted compaction is
    /// finished, released segments are deleted. Damage elsewhere is [`SpoolError::Corrupt`],
    /// or, with a quarantine directory configured, the damaged file is moved there and
    /// reported in [`Recovery::quarantined`].
    pub fn open(config: SpoolConfig) -> Result<(Spool, Recovery), SpoolError> {
        let mut quarantined: Vec<Quarantined> = Vec::new();
        // Each round moves one file out of the directory, so this ends.
        loop {
            match Spool::open_checked(config.clone()) {
                Ok((mut spool, mut recovery)) => {
                    // Numbers a quarantined segment held may have reached a consumer: never
                    // reuse them for other events.
                    for q in &quarantined {
                        spool.last = spool.last.max(highest_seq_readable(&q.moved_to));
                    }
                    spool.quarantined = quarantined.len() as u64;
                    recovery.last_seq = spool.last_seq();
                    recovery.quarantined = quarantined;
                    return Ok((spool, recovery));
                }
                Err(SpoolError::Corrupt {
                    path,
                    offset,
                    reason,
                }) if config.quarantine.is_some()
                    && path.parent() == Some(config.dir.as_path()) =>
                {
                    let dir = config.quarantine.as_deref().expect("checked");
                    let moved_to = crate::fsutil::quarantine(&path, dir)
                        .map_err(io_err("move to quarantine", &path))?;
                    quarantined.push(Quarantined {
                        path,
                        moved_to,
                        problem: format!("{reason} at byte {offset}"),
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn open_checked(config: SpoolConfig) -> Result<(Spool, Recovery), SpoolError> {
        let dir = config.dir.clone();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_err("create", &dir))?;
        let (acked, ack_last) = read_ack(&dir)?;
        delete_temp_files(&dir)?;
        let mut files = list_segments(&dir)?;
        if let Some(i) = files.iter().rposition(|(_, path)| is_snapshot(path)) {
            for (_, path) in files.drain(..i) {
                info!(path = %display_path(&path), "Deleting a segment replaced by a snapshot.");
                fs::remove_file(&path).map_err(io_err("delete", &path))?;
            }
            sync_dir(&dir)?;
        }
        let mut recovery = Recovery::default();
        let mut segments = Vec::with_capacity(files.len());
        let mut prev = 0;
        for (i, (name, path)) in files.iter().enumerate() {
            let last_file = i + 1 == files.len();
            if let Some(seg) =
                scan_segment(path, *name, last_file, acked, &mut prev, &mut recovery)?
            {
                segments.push(seg);
            }
        }
        let named = segments
            .last()
            .map_or(0, |s: &Segment| s.name.saturating_sub(1));
        let mut spool = Spool {
            config,
            segments,
            active: None,
            acked,
            last: ack_last.max(prev).max(named),
            poisoned: false,
            spare: None,
            held: Default::default(),
            held_bytes: 0,
            unavailable: None,
            ack_pending: false,
            quarantined: 0,
        };
        spool.prepare_spare();
        spool.release();
        recovery.records = spool.unacked_count();
        recovery.segments = spool.segments.len();
        recovery.last_seq = spool.last_seq();
        recovery.acked = acked;
        Ok((spool, recovery))
    }

    /// Appends a batch (seqs strictly increasing and above [`Spool::last_seq`]) and fsyncs it
    /// once: on `Ok` the batch survives `kill -9` and power loss; on `Err` none of it is kept.
    /// Size is not checked here: the caller compacts when [`Spool::is_full`].
    pub fn append(&mut self, records: &[(u64, &[u8])]) -> Result<(), SpoolError> {
        self.check_usable()?;
        self.validate(records)?;
        let Some(&(last, _)) = records.last() else {
            return Ok(());
        };
        if self.unavailable.is_none() {
            match self.write_undoably(records) {
                Ok(()) => {
                    self.last = last;
                    return Ok(());
                }
                Err(error) if !is_full_disk(&error) => return Err(error),
                Err(error) => self.become_unavailable(&error),
            }
        }
        for &(seq, payload) in records {
            self.held_bytes += RECORD_HEADER + payload.len() as u64;
            self.held.push_back((seq, payload.to_vec()));
        }
        self.last = last;
        Ok(())
    }

    /// Writes a batch to disk, all or nothing.
    fn write_undoably(&mut self, records: &[(u64, &[u8])]) -> Result<(), SpoolError> {
        let saved = (self.segments.len(), self.segments.last().cloned());
        let written = self.write_batch(records);
        if written.is_err() {
            self.rollback(saved);
        }
        written
    }

    /// Why the spool cannot write ("disk full"); `None` while it is durable.
    pub fn unavailable(&self) -> Option<&str> {
        self.unavailable.as_deref()
    }

    /// Records held in memory while unavailable, and their bytes.
    pub fn held(&self) -> (u64, u64) {
        (self.held.len() as u64, self.held_bytes)
    }

    /// Files moved to quarantine when the spool was opened.
    pub fn quarantined(&self) -> u64 {
        self.quarantined
    }

    /// A write failed for want of space: the spool holds what comes next in memory.
    fn become_unavailable(&mut self, error: &SpoolError) {
        let cause = std::error::Error::source(error).map(ToString::to_string);
        warn!(%error, cause = cause.unwrap_or_default(),
            "Spool unavailable: disk full. Events are held in memory (and still sent) until \
             space returns.");
        self.set_unavailable("disk full");
    }

    /// Marks the spool unavailable (the caller hit a full disk writing beside it): from now on
    /// acknowledgements stay in memory until [`Spool::resume`].
    pub fn set_unavailable(&mut self, reason: &str) {
        self.unavailable.get_or_insert_with(|| reason.to_owned());
    }

    /// While unavailable: tries to make the spool durable again, writing the held records and
    /// the acknowledged seq. Returns whether it is durable now; a disk still full is `Ok(false)`.
    /// The caller saves its own state (the ledger) first, as before any acknowledgement.
    pub fn resume(&mut self) -> Result<bool, SpoolError> {
        if self.unavailable.is_none() {
            return Ok(true);
        }
        self.check_usable()?;
        let held = std::mem::take(&mut self.held);
        let records: Vec<(u64, &[u8])> = held.iter().map(|(s, p)| (*s, p.as_slice())).collect();
        let written = self.write_undoably(&records);
        drop(records);
        self.held = held;
        let written = written.and_then(|()| {
            if self.ack_pending {
                write_ack(&self.config.dir, self.acked, self.last)?;
            }
            Ok(())
        });
        match written {
            Ok(()) => {}
            Err(error) if is_full_disk(&error) => return Ok(false),
            Err(error) => return Err(error),
        }
        info!(
            records = self.held.len(),
            "Disk space is back: the spool is durable again."
        );
        self.held.clear();
        self.held_bytes = 0;
        self.ack_pending = false;
        self.unavailable = None;
        self.release();
        Ok(true)
    }

    /// Releases every record with seq <= `upto`, durably, and deletes the segments that hold
    /// only released records (the one being appended to stays until it is full).
    pub fn ack(&mut self, upto: u64) -> Result<(), SpoolError> {
        if upto <= self.acked {
            return Ok(());
        }
        if upto > self.last {
            return Err(SpoolError::AckBeyondLast {
                upto,
                last: self.last,
            });
        }
        // Move the cursors on a copy of the index first: reading can fail, and must fail before
        // anything is changed.
        let mut segments = self.segments.clone();
        for seg in segments.iter_mut().filter(|s| s.acked_records < s.records) {
            if seg.first_seq.is_some_and(|first| first > upto) {
                break;
            }
            if seg.last_seq.is_some_and(|last| last <= upto) {
                (seg.acked_records, seg.acked_end) = (seg.records, seg.len);
                continue;
            }
            let mut reader = SegmentReader::open(&seg.path, seg.acked_end, seg.len)?;
            while let Some((seq, _)) = reader.next_valid(&mut Vec::new(), |_| false)? {
                if seq > upto {
                    break;
                }
                (seg.acked_records, seg.acked_end) = (seg.acked_records + 1, reader.pos);
            }
            break;
        }
        if self.unavailable.is_none() {
            match write_ack(&self.config.dir, upto, self.last) {
                Ok(()) => {}
                Err(error) if is_full_disk(&error) => self.set_unavailable("disk full"),
                Err(error) => return Err(error),
            }
        }
        self.ack_pending = self.unavailable.is_some();
        self.acked = upto;
        self.segments = segments;
        while self.held.front().is_some_and(|(seq, _)| *seq <= upto) {
            let (_, payload) = self.held.pop_front().expect("checked");
            self.held_bytes -= RECORD_HEADER + payload.len() as u64;
        }
        if !self.ack_pending {
            self.release();
        }
        Ok(())
    }

    /// The unacked records with seq > `after`, in order, at most `max` of them.
    pub fn read_after(&self, after: u64, max: usize) -> Result<Vec<(u64, Vec<u8>)>, SpoolError> {
        self.read_batch(after, max, usize::MAX)
    }

    /// Like [`Spool::read_after`], and stops once the payloads reach `max_bytes` (the record
    /// that crosses the bound is included, so a batch is never empty while records remain):
    /// what a sender holds in memory is bounded whatever the record sizes.
    pub fn read_batch(
        &self,
        after: u64,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, SpoolError> {
        let after = after.max(self.acked);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let full = |out: &Vec<_>, bytes: usize| out.len() >= max || bytes >= max_bytes;
        for seg in &self.segments {
            if full(&out, bytes) {
                break;
            }
            if seg.last_seq.is_none_or(|l| l <= after) {
                continue;
            }
            let mut reader = SegmentReader::open(&seg.path, seg.acked_end, seg.len)?;
            let mut buf = Vec::new();
            while !full(&out, bytes) {
                match reader.next_valid(&mut buf, |seq| seq > after)? {
                    Some((seq, true)) => {
                        bytes += buf.len();
                        out.push((seq, std::mem::take(&mut buf)));
                    }
                    Some((_, false)) => {}
                    None => break,
                }
            }
        }
        for (seq, payload) in self.held.iter().filter(|(seq, _)| *seq > after) {
            if full(&out, bytes) {
                break;
            }
            bytes += payload.len();
            out.push((*seq, payload.clone()));
        }
        Ok(out)
    }

    /// The lowest seq not yet acknowledged, `None` when every record is. (After a compaction
    /// this is the first record written since, which tells a receiver what was dropped.)
    pub fn first_unacked_seq(&self) -> Result<Option<u64>, SpoolError> {
        let Some(seg) = self.segments.iter().find(|s| s.acked_records < s.records) else {
            return Ok(self.held.front().map(|(seq, _)| *seq));
        };
        if seg.acked_records == 0 {
            return Ok(seg.first_seq);
        }
        let mut reader = SegmentReader::open(&seg.path, seg.acked_end, seg.len)?;
        Ok(reader
            .next_valid(&mut Vec::new(), |_| false)?
            .map(|(seq, _)| seq))
    }

    /// The highest seq ever appended (kept across acks, compactions and restarts).
    pub fn last_seq(&self) -> Option<u64> {
        (self.last > 0).then_some(self.last)
    }

    /// The highest acked seq; 0 when nothing was acked.
    pub fn acked_seq(&self) -> u64 {
        self.acked
    }

    pub fn unacked_count(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| s.records - s.acked_records)
            .sum::<u64>()
            + self.held.len() as u64
    }

    /// Bytes used in the segment files: headers and records, not the zero padding of
    /// preallocated segments (nor the spare, nor the small ack file).
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// True when the spool's used bytes have reached its bound: the caller must then
    /// [`Spool::compact`].
    pub fn is_full(&self) -> bool {
        self.size_bytes() + self.held_bytes >= self.config.max_bytes
    }

    /// Atomically replaces every unacked record with `records` (one snapshot of the caller's
    /// current state; seqs above [`Spool::last_seq`]). The snapshot segment is complete on disk
    /// before anything older is deleted. Returns how many unacked records were dropped.
    ///
    /// While the spool is unavailable (disk full) it drops the records held in memory only,
    /// and holds `records` there instead.
    pub fn compact(&mut self, records: &[(u64, &[u8])]) -> Result<u64, SpoolError> {
        self.check_usable()?;
        self.validate(records)?;
        if self.unavailable.is_none() {
            match self.compact_on_disk(records) {
                Err(error) if is_full_disk(&error) => self.become_unavailable(&error),
                done => return done,
            }
        }
        let dropped = self.held.len() as u64;
        self.held.clear();
        self.held_bytes = 0;
        self.append(records)?;
        info!(
            dropped,
            kept = records.len(),
            "Dropped the events held in memory (disk full)."
        );
        Ok(dropped)
    }

    /// [`Spool::compact`] while the spool is durable.
    fn compact_on_disk(&mut self, records: &[(u64, &[u8])]) -> Result<u64, SpoolError> {
        let name = match records.first() {
            Some(&(seq, _)) => seq,
            None => self.last.checked_add(1).ok_or(SpoolError::SeqOrder {
                seq: u64::MAX,
                after: self.last,
            })?,
        };
        let dropped = self.unacked_count();
        let dir = self.config.dir.clone();
        let mut snapshot = Segment::new(&dir, name);
        let mut bytes = segment_header(FLAG_SNAPSHOT).to_vec();
        for &(seq, payload) in records {
            let before = bytes.len();
            encode_record(&mut bytes, seq, payload);
            snapshot.push(seq, (bytes.len() - before) as u64);
        }
        // Padded like any segment, since appends go on into it.
        let padded = bytes
            .len()
            .max(usize::try_from(self.config.segment_bytes).unwrap_or(0));
        bytes.resize(padded, 0);
        snapshot.file_len = padded as u64;
        write_durably(&snapshot.path, &bytes)?;
        self.active = None;
        let old = std::mem::replace(&mut self.segments, vec![snapshot]);
        self.last = records.last().map_or(self.last, |&(seq, _)| seq);
        // The snapshot already carries the new last seq (by its name, when empty); writing it
        // to the ack file too keeps it once the snapshot segment is released. On a full disk
        // the snapshot alone carries it until the spool resumes.
        match write_ack(&dir, self.acked, self.last) {
            Ok(()) => {}
            Err(error) if is_full_disk(&error) => {
                self.set_unavailable("disk full");
                self.ack_pending = true;
            }
            Err(error) => return Err(error),
        }
        for seg in old.iter().filter(|s| s.name != name) {
            if let Err(error) = fs::remove_file(&seg.path) {
                warn!(path = %display_path(&seg.path), %error,
                    "Failed to delete a compacted segment; the next open deletes it.");
            }
        }
        info!(dropped, kept = records.len(), "Compacted the spool.");
        Ok(dropped)
    }

    fn check_usable(&self) -> Result<(), SpoolError> {
        if self.poisoned {
            return Err(SpoolError::Poisoned {
                dir: self.config.dir.clone(),
            });
        }
        Ok(())
    }

    fn validate(&self, records: &[(u64, &[u8])]) -> Result<(), SpoolError> {
        let mut after = self.last;
        for &(seq, payload) in records {
            if seq <= after {
                return Err(SpoolError::SeqOrder { seq, after });
            }
            if payload.len() > MAX_RECORD {
                let len = payload.len();
                return Err(SpoolError::TooLarge { seq, len });
            }
            after = seq;
        }
        Ok(())
    }

    fn write_batch(&mut self, records: &[(u64, &[u8])]) -> Result<(), SpoolError> {
        let mut buf = Vec::new();
        let mut created = false;
        for &(seq, payload) in records {
            let segment_bytes = self.config.segment_bytes;
            let roll =
                (self.segments.last()).is_none_or(|s| s.records > 0 && s.len >= segment_bytes);
            if roll {
                self.flush(&mut buf)?;
                let mut seg = Segment::new(&self.config.dir, seq);
                let (file, file_len) = self.create_segment(&seg.path)?;
                seg.file_len = file_len;
                self.active = Some(file);
                self.segments.push(seg);
                buf.extend_from_slice(&segment_header(0));
                created = true;
            }
            let before = buf.len();
            encode_record(&mut buf, seq, payload);
            let seg = self
                .segments
                .last_mut()
                .expect("a segment exists after rolling");
            seg.push(seq, (buf.len() - before) as u64);
        }
        self.flush(&mut buf)?;
        if created {
            sync_dir(&self.config.dir)?;
        }
        Ok(())
    }

    /// Writes the buffered tail of the last segment (whose `len` already counts it) and syncs.
    fn flush(&mut self, buf: &mut Vec<u8>) -> Result<(), SpoolError> {
        if buf.is_empty() {
            return Ok(());
        }
        let seg = self.segments.last_mut().expect("flushing into a segment");
        let file = match &mut self.active {
            Some(file) => file,
            None => self.active.insert(
                OpenOptions::new()
                    .write(true)
                    .open(&seg.path)
                    .map_err(io_err("open", &seg.path))?,
            ),
        };
        let at = seg.len - buf.len() as u64;
        // Past the preallocated end the file grows (and the size is synced too).
        seg.file_len = seg.file_len.max(seg.len);
        file.write_all_at(buf, at)
            .map_err(io_err("write", &seg.path))?;
        file.sync_data().map_err(io_err("sync", &seg.path))?;
        buf.clear();
        Ok(())
    }

    /// Creates the segment file at `path`, zero-filled: the spare renamed into place when
    /// there is one (waiting for the thread preparing it), else filled here. Starts preparing
    /// the next spare. Returns the file open for writing, and its length.
    fn create_segment(&mut self, path: &Path) -> Result<(File, u64), SpoolError> {
        if let Some(thread) = self.spare.take() {
            let _ = thread.join();
        }
        let spare = self.config.dir.join(SPARE_FILE);
        let file = match fs::rename(&spare, path) {
            Ok(()) => OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(io_err("open", path))?,
            Err(error) => {
                if error.kind() != io::ErrorKind::NotFound {
                    warn!(path = %display_path(&spare), %error, "Failed to use the spare segment.");
                }
                create_zeroed(path, self.config.segment_bytes).map_err(|error| {
                    // A part-written file must not stay behind (on a full disk, say).
                    let _ = fs::remove_file(path);
                    io_err("create", path)(error)
                })?
            }
        };
        let len = file.metadata().map_err(io_err("read", path))?.len();
        self.prepare_spare();
        Ok((file, len))
    }

    /// Starts a thread that makes sure `spare` is a zero-filled file of `segment_bytes`: kept
    /// if it is one already, else written (as a temp file, fsynced, then renamed).
    fn prepare_spare(&mut self) {
        let dir = self.config.dir.clone();
        let len = self.config.segment_bytes;
        let thread = std::thread::Builder::new()
            .name("spool-spare".into())
            .spawn(move || {
                let (spare, tmp) = (dir.join(SPARE_FILE), dir.join(SPARE_TMP));
                let ready = File::open(&spare).and_then(|f| {
                    let size = f.metadata()?.len();
                    Ok(size == len && data_end(&f, 0, len)? == 0)
                });
                if matches!(ready, Ok(true)) {
                    return;
                }
                let made = create_zeroed(&tmp, len).and_then(|_| fs::rename(&tmp, &spare));
                if let Err(error) = made {
                    warn!(path = %display_path(&spare), %error,
                        "Failed to prepare a spare spool segment; the next one is made in line.");
                    let _ = fs::remove_file(&tmp);
                }
            });
        match thread {
            Ok(thread) => self.spare = Some(thread),
            Err(error) => warn!(%error, "Failed to start preparing a spare spool segment."),
        }
    }

    /// Undoes a failed batch: deletes the segments it created, zeroes what it wrote into the
    /// one it extended and cuts that one back to its old size. If that fails too, the spool
    /// refuses writes until reopened.
    fn rollback(&mut self, (count, last): (usize, Option<Segment>)) {
        self.active = None;
        let mut undone = true;
        for seg in self.segments.drain(count..) {
            if let Err(error) = fs::remove_file(&seg.path) {
                warn!(path = %display_path(&seg.path), %error, "Failed to undo a spool segment.");
                undone = false;
            }
        }
        if let Some(old) = last {
            let written = self.segments[count - 1].len.min(old.file_len);
            let cut = OpenOptions::new()
                .write(true)
                .open(&old.path)
                .and_then(|f| {
                    zero_range(&f, old.len, written)?;
                    f.set_len(old.file_len)?;
                    f.sync_data()
                });
            if let Err(error) = cut {
                warn!(path = %display_path(&old.path), %error, "Failed to undo a spool append.");
                undone = false;
            }
            self.segments[count - 1] = old;
        }
        self.poisoned |= !undone;
    }

    /// Deletes the leading segments that hold only acked records, except the segment being
    /// appended to while it has room (so steady acking does not create a file per batch).
    fn release(&mut self) {
        while let Some(seg) = self.segments.first() {
            let active = self.segments.len() == 1 && seg.len < self.config.segment_bytes;
            if seg.acked_records < seg.records || active {
                break;
            }
            if let Err(error) = fs::remove_file(&seg.path) {
                let path = display_path(&seg.path);
                warn!(%path, %error, "Failed to delete an acked segment.");
                break;
            }
            if self.segments.len() == 1 {
                self.active = None;
            }
            self.segments.remove(0);
        }
    }
}

/// The highest seq in the record headers of a damaged segment, walked without checking
/// checksums until a length field does not fit; 0 when none is readable (bad magic, not a
/// segment). A lower bound of what the segment held, to number after.
fn highest_seq_readable(path: &Path) -> u64 {
    let Ok(file) = File::open(path) else { return 0 };
    let len = file.metadata().map_or(0, |m| m.len());
    let mut h = [0; HEADER_LEN as usize];
    if file.read_exact_at(&mut h, 0).is_err() || parse_header(&h).is_err() {
        return 0;
    }
    let (mut at, mut highest) = (HEADER_LEN, 0);
    let mut r = [0; RECORD_HEADER as usize];
    while at + RECORD_HEADER <= len && file.read_exact_at(&mut r, at).is_ok() {
        let size = u32::from_le_bytes(r[..4].try_into().expect("4 bytes"));
        let seq = u64::from_le_bytes(r[8..].try_into().expect("8 bytes"));
        if r == [0; RECORD_HEADER as usize] || size as usize > MAX_RECORD {
            break;
        }
        highest = highest.max(seq);
        at += RECORD_HEADER + u64::from(size);
    }
    highest
}

/// Whether a spool error is a write that failed for want of space.
fn is_full_disk(error: &SpoolError) -> bool {
    matches!(error, SpoolError::Io { source, .. } if crate::fsutil::is_storage_full(source))
}

fn segment_path(dir: &Path, name: u64) -> PathBuf {
    dir.join(format!("{name:020}.seg"))
}

fn segment_header(flags: u16) -> [u8; HEADER_LEN as usize] {
    let mut h = [0; HEADER_LEN as usize];
    h[..4].copy_from_slice(SEGMENT_MAGIC);
    h[4..6].copy_from_slice(&VERSION.to_le_bytes());
    h[6..].copy_from_slice(&flags.to_le_bytes());
    h
}

/// Why a segment's first bytes are not a segment header.
#[derive(Debug, thiserror::Error)]
enum HeaderError {
    #[error("shorter than a segment header")]
    Short,
    #[error("not a spool segment (bad magic)")]
    Magic,
    #[error("unsupported segment version {0}")]
    Version(u16),
    #[error("unknown segment flags {0:#x}")]
    Flags(u16),
}

/// The header's flags, or why it is not a segment header.
fn parse_header(h: &[u8]) -> Result<u16, HeaderError> {
    if &h[..4] != SEGMENT_MAGIC {
        return Err(HeaderError::Magic);
    }
    let version = u16::from_le_bytes([h[4], h[5]]);
    let flags = u16::from_le_bytes([h[6], h[7]]);
    if version != VERSION {
        return Err(HeaderError::Version(version));
    }
    if flags & !FLAG_SNAPSHOT != 0 {
        return Err(HeaderError::Flags(flags));
    }
    Ok(flags)
}

fn is_snapshot(path: &Path) -> bool {
    let mut h = [0; HEADER_LEN as usize];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut h))
        .is_ok()
        && parse_header(&h).is_ok_and(|flags| flags & FLAG_SNAPSHOT != 0)
}

fn record_crc(seq: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

fn encode_record(buf: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&record_crc(seq, payload).to_le_bytes());
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(payload);
}

/// A record that does not decode: why, and where the next record would start if this one's
/// length field is plausible (to tell damage from a torn tail).
struct BadRecord {
    reason: String,
    next: Option<u64>,
}

/// Sequential reader over the records of one segment, from `pos` up to `end`.
struct SegmentReader {
    path: PathBuf,
    file: BufReader<File>,
    pos: u64,
    end: u64,
}

impl SegmentReader {
    fn open(path: &Path, pos: u64, end: u64) -> Result<Self, SpoolError> {
        let file = File::open(path).map_err(io_err("open", path))?;
        let mut file = BufReader::with_capacity(64 * 1024, file);
        io::Seek::seek(&mut file, io::SeekFrom::Start(pos)).map_err(io_err("read", path))?;
        let path = path.to_path_buf();
        Ok(SegmentReader {
            path,
            file,
            pos,
            end,
        })
    }

    /// The next record's seq, with its payload read into `buf` and checked when `want(seq)`
    /// (else skipped unread); `None` at the end.
    fn next(
        &mut self,
        buf: &mut Vec<u8>,
        want: impl FnOnce(u64) -> bool,
    ) -> io::Result<Result<Option<(u64, bool)>, BadRecord>> {
        let remaining = self.end - self.pos;
        if remaining == 0 {
            return Ok(Ok(None));
        }
        let bad = |reason: &str, next| {
            Ok(Err(BadRecord {
                reason: reason.into(),
                next,
            }))
        };
        if remaining < RECORD_HEADER {
            return bad("torn record header", None);
        }
        let mut h = [0; RECORD_HEADER as usize];
        self.file.read_exact(&mut h)?;
        let len = u32::from_le_bytes(h[..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes"));
        let seq = u64::from_le_bytes(h[8..].try_into().expect("8 bytes"));
        // Never a record, whatever the rest of the file: zeros are padding.
        if h == [0; RECORD_HEADER as usize] {
            return bad("zeroed record header", None);
        }
        if seq == 0 {
            return bad("seq 0 (seqs start at 1)", None);
        }
        if len as usize > MAX_RECORD {
            return bad(&format!("record length {len} is over the limit"), None);
        }
        let size = RECORD_HEADER + u64::from(len);
        if size > remaining {
            return bad("record runs past the end of the file", None);
        }
        let next = Some(self.pos + size);
        let wanted = want(seq);
        if wanted {
            buf.resize(len as usize, 0);
            self.file.read_exact(buf)?;
            if record_crc(seq, buf) != crc {
                return bad("checksum mismatch", next);
            }
        } else {
            self.file.seek_relative(i64::from(len))?;
        }
        self.pos += size;
        Ok(Ok(Some((seq, wanted))))
    }

    /// [`SegmentReader::next`] for a segment already checked: any bad record is corruption.
    fn next_valid(
        &mut self,
        buf: &mut Vec<u8>,
        want: impl FnOnce(u64) -> bool,
    ) -> Result<Option<(u64, bool)>, SpoolError> {
        let offset = self.pos;
        match self.next(buf, want) {
            Ok(Ok(step)) => Ok(step),
            Ok(Err(bad)) => Err(SpoolError::Corrupt {
                path: self.path.clone(),
                offset,
                reason: bad.reason,
            }),
            Err(error) => Err(io_err("read", &self.path)(error)),
        }
    }
}

/// Checks one segment at open. `prev` is the last seq seen in earlier segments. Returns
/// `None` when the segment was a torn, empty leftover and has been deleted.
fn scan_segment(
    path: &Path,
    name: u64,
    last_file: bool,
    acked: u64,
    prev: &mut u64,
    recovery: &mut Recovery,
) -> Result<Option<Segment>, SpoolError> {
    let corrupt = |offset, reason: String| SpoolError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    let file_len = fs::metadata(path).map_err(io_err("read", path))?.len();
    let file = File::open(path).map_err(io_err("open", path))?;
    let mut h = [0; HEADER_LEN as usize];
    let header = if file_len < HEADER_LEN {
        Err(HeaderError::Short)
    } else {
        file.read_exact_at(&mut h, 0)
            .map_err(io_err("read", path))?;
        parse_header(&h)
    };
    if let Err(reason) = header {
        // A segment is created (zero-filled), its header and first records written, then
        // synced: a crash in between can leave it short or with a header of zeros, and
        // perhaps some of the records. Anything else is not ours to drop.
        if last_file && (file_len < HEADER_LEN || h == [0; HEADER_LEN as usize]) {
            let dropped = data_end(&file, 0, file_len).map_err(io_err("read", path))?;
            warn!(path = %display_path(path), bytes = dropped,
                "Dropping a segment left unwritten or torn by a crash.");
            fs::remove_file(path).map_err(io_err("delete", path))?;
            recovery.torn_bytes_dropped += dropped;
            return Ok(None);
        }
        return Err(corrupt(0, reason.to_string()));
    }
    let mut seg = Segment::new(path.parent().unwrap_or(Path::new(".")), name);
    seg.path = path.to_path_buf();
    seg.file_len = file_len;
    let mut reader = SegmentReader::open(path, HEADER_LEN, file_len)?;
    let mut buf = Vec::new();
    loop {
        let offset = reader.pos;
        let bad = match reader
            .next(&mut buf, |_| true)
            .map_err(io_err("read", path))?
        {
            Ok(None) => break,
            Ok(Some((seq, _))) => {
                if seq <= *prev || seq < name {
                    let reason = format!("seq {seq} out of order (after {prev}, segment {name})");
                    return Err(corrupt(offset, reason));
                }
                *prev = seq;
                seg.push(seq, reader.pos - offset);
                if seq <= acked {
                    seg.acked_records += 1;
                    seg.acked_end = reader.pos;
                } else if recovery.first_seq.is_none() {
                    recovery.first_seq = Some(seq);
                }
                continue;
            }
            Err(bad) => bad,
        };
        let end = data_end(&file, offset, file_len).map_err(io_err("read", path))?;
        if end == offset {
            // Only zeros left: the padding of a preallocated segment.
            break;
        }
        let followed = bad.next.is_some_and(|next| {
            SegmentReader::open(path, next, file_len)
                .is_ok_and(|mut r| matches!(r.next(&mut Vec::new(), |_| true), Ok(Ok(Some(_)))))
        });
        if !last_file || followed {
            return Err(corrupt(offset, bad.reason));
        }
        let dropped = end - offset;
        warn!(path = %display_path(path), offset, bytes = dropped, reason = %bad.reason,
            "Dropping a torn record tail from the spool.");
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_err("open", path))?;
        zero_range(&file, offset, end).map_err(io_err("write", path))?;
        file.sync_data().map_err(io_err("sync", path))?;
        recovery.torn_bytes_dropped += dropped;
        break;
    }
    Ok(Some(seg))
}

/// The file names in `dir` that are valid UTF-8, with their paths.
fn dir_entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, SpoolError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        if let Ok(file_name) = entry.file_name().into_string() {
            out.push((file_name, entry.path()));
        }
    }
    Ok(out)
}

/// Deletes the temp files a crash left behind (a compaction's snapshot, an ack, a spare).
fn delete_temp_files(dir: &Path) -> Result<(), SpoolError> {
    for (file_name, path) in dir_entries(dir)? {
        if file_name.starts_with('.') && file_name.ends_with(".tmp") {
            info!(path = %display_path(&path), "Deleting a spool temp file left by a crash.");
            fs::remove_file(&path).map_err(io_err("delete", &path))?;
        }
    }
    Ok(())
}

/// The segment files in name order.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SpoolError> {
    let mut out = Vec::new();
    for (file_name, path) in dir_entries(dir)? {
        let name = file_name.strip_suffix(".seg").filter(|n| n.len() == 20);
        if let Some(name) = name.and_then(|n| n.parse::<u64>().ok()) {
            out.push((name, path));
        }
    }
    out.sort();
    Ok(out)
}

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// The offset just past the last non-zero byte in `from..to` of `file`; `from` when there
/// is none.
fn data_end(file: &File, from: u64, to: u64) -> io::Result<u64> {
    let mut buf = vec![0; ZEROS.len()];
    let (mut end, mut at) = (from, from);
    while at < to {
        let n = buf.len().min((to - at) as usize);
        file.read_exact_at(&mut buf[..n], at)?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b != 0) {
            end = at + i as u64 + 1;
        }
        at += n as u64;
    }
    Ok(end)
}

/// Writes zeros over `from..to` of `file` (not synced).
fn zero_range(file: &File, from: u64, to: u64) -> io::Result<()> {
    let mut at = from;
    while at < to {
        let n = ZEROS.len().min((to - at) as usize);
        file.write_all_at(&ZEROS[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Creates (or replaces) `path` as a file of `len` zeros, written and fsynced so its blocks
/// and size are on disk before anything is appended into it.
fn create_zeroed(path: &Path, len: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    zero_range(&file, 0, len)?;
    file.sync_all()?;
    Ok(file)
}

/// Reads the ack file: (acked, last); (0, 0) when there is none yet.
fn read_ack(dir: &Path) -> Result<(u64, u64), SpoolError> {
    let path = dir.join(ACK_FILE);
    let bytes = match crate::fsutil::read_bounded(&path, ACK_LEN as u64) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            return Err(SpoolError::Corrupt {
                path,
                offset: 0,
                reason: format!("not a spool ack file: {e}"),
            });
        }
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    let corrupt = |reason: &str| SpoolError::Corrupt {
        path: path.clone(),
        offset: 0,
        reason: reason.into(),
    };
    if bytes.len() != ACK_LEN || &bytes[..4] != ACK_MAGIC {
        return Err(corrupt("not a spool ack file"));
    }
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(bytes[24..].try_into().expect("4 bytes"));
    if crc32fast::hash(&bytes[..24]) != crc {
        return Err(corrupt("checksum mismatch"));
    }
    if bytes[4..8] != u32::from(VERSION).to_le_bytes() {
        return Err(corrupt("unsupported ack file version"));
    }
    let (acked, last) = (word(8), word(16));
    if acked > last {
        return Err(corrupt("acked seq is past the last seq"));
    }
    Ok((acked, last))
}

fn write_ack(dir: &Path, acked: u64, last: u64) -> Result<(), SpoolError> {
    let mut bytes = Vec::with_capacity(ACK_LEN);
    bytes.extend_from_slice(ACK_MAGIC);
    bytes.extend_from_slice(&u32::from(VERSION).to_le_bytes());
    bytes.extend_from_slice(&acked.to_le_bytes());
    bytes.extend_from_slice(&last.to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&bytes).to_le_bytes());
    write_durably(&dir.join(ACK_FILE), &bytes)
}

/// Replaces `path` atomically and durably (see [`crate::fsutil::write_atomically`]).
fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), SpoolError> {
    crate::fsutil::write_atomically(path, bytes, 0o600).map_err(io_err("replace", path))
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync", dir))
}

pub mod record;
pub mod shared;

#[cfg(test)]
mod tests;
