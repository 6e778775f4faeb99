use super::*;
use proptest::prelude::*;

fn config(dir: &Path, segment_bytes: u64) -> SpoolConfig {
    SpoolConfig {
        segment_bytes,
        ..SpoolConfig::new(dir)
    }
}

fn open(dir: &Path, segment_bytes: u64) -> (Spool, Recovery) {
    Spool::open(config(dir, segment_bytes)).unwrap()
}

fn payload(seq: u64) -> Vec<u8> {
    format!("event {seq:03} {}", "x".repeat(10)).into_bytes()
}

fn append_range(spool: &mut Spool, seqs: std::ops::RangeInclusive<u64>) {
    let payloads: Vec<_> = seqs.map(|s| (s, payload(s))).collect();
    let batch: Vec<_> = payloads.iter().map(|(s, p)| (*s, p.as_slice())).collect();
    spool.append(&batch).unwrap();
}

fn all(spool: &Spool) -> Vec<u64> {
    let records = spool.read_after(0, usize::MAX).unwrap();
    for (seq, bytes) in &records {
        assert_eq!(bytes, &payload(*seq));
    }
    records.into_iter().map(|(seq, _)| seq).collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    list_segments(dir)
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

/// Records are 36 bytes: with 100-byte segments, 3 records per segment (each batch runs past
/// the 100 preallocated bytes, so these segments end without padding, like old ones).
const SMALL: u64 = 100;
/// Segments that hold twelve records and still have zero padding after them.
const PADDED: u64 = 1000;

/// The used and file sizes the index holds match the files, and the files hold only zeros
/// past their used bytes.
fn check_padding(spool: &Spool) {
    for seg in &spool.segments {
        let bytes = fs::read(&seg.path).unwrap();
        assert_eq!(bytes.len() as u64, seg.file_len, "{}", seg.path.display());
        assert!(seg.len <= seg.file_len, "{seg:?}");
        assert!(
            bytes[seg.len as usize..].iter().all(|&b| b == 0),
            "{}: non-zero bytes past {}",
            seg.path.display(),
            seg.len
        );
    }
    let used: u64 = spool.segments.iter().map(|s| s.len).sum();
    assert_eq!(spool.size_bytes(), used);
}

/// The bytes dropped when a record is cut after `keep` bytes: up to its last non-zero one
/// (zeros at the end of a torn write cannot be told from padding, and need not be).
fn torn_len(record: &[u8], keep: u64) -> u64 {
    let kept = &record[..keep as usize];
    kept.iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i as u64 + 1)
}

fn record_bytes(seq: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    encode_record(&mut buf, seq, &payload(seq));
    buf
}

#[test]
fn round_trip_across_segments_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, recovery) = open(dir.path(), SMALL);
    assert_eq!(
        (recovery.records, spool.last_seq(), spool.acked_seq()),
        (0, None, 0)
    );
    append_range(&mut spool, 1..=4);
    append_range(&mut spool, 5..=5);
    append_range(&mut spool, 6..=12);
    assert_eq!(segment_files(dir.path()).len(), 4);
    assert_eq!(all(&spool), (1..=12).collect::<Vec<_>>());
    let some = spool.read_after(4, 3).unwrap();
    assert_eq!(some.iter().map(|r| r.0).collect::<Vec<_>>(), [5, 6, 7]);
    assert_eq!(spool.read_after(12, 10).unwrap(), []);
    assert_eq!(spool.read_after(0, 0).unwrap(), []);

    spool.ack(7).unwrap();
    assert_eq!((spool.acked_seq(), spool.unacked_count()), (7, 5));
    assert_eq!(
        segment_files(dir.path()).len(),
        2,
        "segments 1-3 and 4-6 deleted"
    );
    assert_eq!(all(&spool), (8..=12).collect::<Vec<_>>());
    assert_eq!(spool.read_after(2, 1).unwrap()[0].0, 8);
    let size = spool.size_bytes();
    drop(spool);

    let (mut spool, recovery) = open(dir.path(), SMALL);
    assert_eq!(recovery.records, 5);
    assert_eq!(recovery.first_seq, Some(8));
    assert_eq!(
        (recovery.last_seq, recovery.acked, recovery.segments),
        (Some(12), 7, 2)
    );
    assert_eq!(recovery.torn_bytes_dropped, 0);
    assert_eq!((spool.size_bytes(), spool.unacked_count()), (size, 5));
    assert_eq!(all(&spool), (8..=12).collect::<Vec<_>>());

    // Everything acked: every file goes (the last segment is full), the seq stays known.
    spool.ack(12).unwrap();
    assert!(segment_files(dir.path()).is_empty());
    drop(spool);
    let (mut spool, recovery) = open(dir.path(), SMALL);
    assert_eq!(
        (recovery.records, recovery.first_seq, spool.last_seq()),
        (0, None, Some(12))
    );
    assert!(matches!(
        spool.append(&[(12, b"again")]),
        Err(SpoolError::SeqOrder { .. })
    ));
    append_range(&mut spool, 13..=13);
    assert_eq!(all(&spool), [13]);
}

#[test]
fn seqs_must_increase_and_acks_stay_within_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = open(dir.path(), SMALL);
    let seq_order = |r| matches!(r, Err(SpoolError::SeqOrder { .. }));
    assert!(seq_order(spool.append(&[(0, b"zero")])));
    spool.append(&[(5, b"five")]).unwrap();
    assert!(seq_order(spool.append(&[(5, b"again")])));
    assert!(seq_order(spool.append(&[(4, b"older")])));
    assert!(seq_order(spool.append(&[(7, b"a"), (6, b"b")])));
    assert!(seq_order(spool.append(&[(8, b"a"), (8, b"b")])));
    assert!(seq_order(spool.compact(&[(5, b"snap")]).map(|_| ())));
    assert_eq!(
        (spool.last_seq(), spool.unacked_count()),
        (Some(5), 1),
        "nothing written"
    );
    let big = vec![0; MAX_RECORD + 1];
    assert!(matches!(
        spool.append(&[(9, &big)]),
        Err(SpoolError::TooLarge { .. })
    ));
    assert!(matches!(
        spool.ack(6),
        Err(SpoolError::AckBeyondLast { .. })
    ));
    spool.ack(5).unwrap();
    spool.ack(3).unwrap();
    assert_eq!(spool.acked_seq(), 5);
}

/// Twelve records in four segments of three; returns the last segment and its last
/// record's offset and length.
fn pristine(dir: &Path) -> (PathBuf, u64, u64) {
    pristine_with(dir, SMALL)
}

/// Twelve records in segments of `segment_bytes`; as [`pristine`].
fn pristine_with(dir: &Path, segment_bytes: u64) -> (PathBuf, u64, u64) {
    let (mut spool, _) = open(dir, segment_bytes);
    append_range(&mut spool, 1..=12);
    let seg = spool.segments.last().unwrap();
    let record = RECORD_HEADER + payload(12).len() as u64;
    (seg.path.clone(), seg.len - record, record)
}

fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.path().join(entry.file_name())).unwrap();
    }
    to
}

/// Damages a copy of the pristine spool (made with `segment_bytes`), then checks recovery
/// drops exactly `torn` bytes and record 12 only, and that the spool goes on working.
fn check_torn(from: &Path, last: &Path, segment_bytes: u64, damage: impl FnOnce(&Path), torn: u64) {
    let copy = copy_dir(from);
    damage(&copy.path().join(last.file_name().unwrap()));
    let (mut spool, recovery) = open(copy.path(), segment_bytes);
    assert_eq!(recovery.torn_bytes_dropped, torn);
    assert_eq!((recovery.records, recovery.last_seq), (11, Some(11)));
    assert_eq!(all(&spool), (1..=11).collect::<Vec<_>>());
    check_padding(&spool);
    append_range(&mut spool, 12..=13);
    drop(spool);
    let (spool, recovery) = open(copy.path(), segment_bytes);
    assert_eq!(recovery.torn_bytes_dropped, 0);
    assert_eq!(all(&spool), (1..=13).collect::<Vec<_>>());
    check_padding(&spool);
}

fn cut(path: &Path, len: u64) {
    let file = fs::File::options().write(true).open(path).unwrap();
    file.set_len(len).unwrap();
}

#[test]
fn torn_tail_is_dropped_at_every_length() {
    let dir = tempfile::tempdir().unwrap();
    let (last, start, record) = pristine(dir.path());
    let bytes = record_bytes(12);
    for keep in 0..record {
        let damage = |p: &Path| cut(p, start + keep);
        check_torn(dir.path(), &last, SMALL, damage, torn_len(&bytes, keep));
    }
}

/// A crash while the last record was being written over the padding, at every byte: only
/// its first `keep` bytes reached the disk, zeros follow.
#[test]
fn a_torn_record_followed_by_zeros_is_dropped_at_every_length() {
    let dir = tempfile::tempdir().unwrap();
    let (last, start, record) = pristine_with(dir.path(), PADDED);
    assert_eq!(fs::metadata(&last).unwrap().len(), PADDED);
    let bytes = record_bytes(12);
    for keep in 0..record {
        let damage = |p: &Path| {
            let file = fs::File::options().write(true).open(p).unwrap();
            zero_range(&file, start + keep, start + record).unwrap();
        };
        check_torn(dir.path(), &last, PADDED, damage, torn_len(&bytes, keep));
    }
    // A flipped byte anywhere in it, zeros after: the whole record goes.
    for at in start..start + record {
        check_torn(dir.path(), &last, PADDED, |p| flip(p, at), record);
    }
}

#[test]
fn a_zeroed_tail_ends_a_segment_and_garbage_after_zeros_is_torn() {
    let dir = tempfile::tempdir().unwrap();
    let (last, start, record) = pristine_with(dir.path(), PADDED);
    let end = start + record;
    let (spool, recovery) = open(dir.path(), PADDED);
    assert_eq!(recovery.torn_bytes_dropped, 0);
    assert_eq!((recovery.records, recovery.segments), (12, 1));
    assert_eq!(
        spool.size_bytes(),
        end,
        "used bytes, not the file's {PADDED}"
    );
    check_padding(&spool);
    drop(spool);
    // Bytes of a later, unsynced write that reached the disk while the ones before them did
    // not (here: a whole record 13, 40 bytes past the end): dropped, and the padding stays.
    for gap in [1, 15, 16, 40] {
        let copy = copy_dir(dir.path());
        let path = copy.path().join(last.file_name().unwrap());
        let file = fs::File::options().write(true).open(&path).unwrap();
        file.write_all_at(&record_bytes(13), end + gap).unwrap();
        let (spool, recovery) = open(copy.path(), PADDED);
        assert_eq!(recovery.torn_bytes_dropped, gap + record, "gap {gap}");
        assert_eq!(all(&spool), (1..=12).collect::<Vec<_>>());
        assert_eq!(fs::metadata(&path).unwrap().len(), PADDED);
        check_padding(&spool);
    }
}

#[test]
fn a_header_of_zeros_or_seq_zero_is_never_a_record() {
    let dir = tempfile::tempdir().unwrap();
    // A zero-length record with seq 0 whose checksum is right: still not a record.
    let mut zero_seq = Vec::new();
    encode_record(&mut zero_seq, 0, b"");
    let mut zero_len = Vec::new();
    encode_record(&mut zero_len, 1, b"");
    assert_ne!(
        zero_len[..RECORD_HEADER as usize],
        [0; RECORD_HEADER as usize]
    );
    for (bytes, ok) in [(zero_len.clone(), true), (zero_seq, false)] {
        let mut seg = segment_header(0).to_vec();
        seg.extend_from_slice(&bytes);
        seg.resize(200, 0);
        fs::write(segment_path(dir.path(), 1), &seg).unwrap();
        // Not the last segment: anything bad is corruption.
        let mut next = segment_header(0).to_vec();
        encode_record(&mut next, 5, &payload(5));
        fs::write(segment_path(dir.path(), 5), &next).unwrap();
        match Spool::open(config(dir.path(), SMALL)) {
            Ok((spool, recovery)) if ok => {
                assert_eq!(
                    spool.read_after(0, 10).unwrap(),
                    [(1, vec![]), (5, payload(5))]
                );
                assert_eq!(recovery.torn_bytes_dropped, 0);
            }
            Err(SpoolError::Corrupt { offset, .. }) if !ok => assert_eq!(offset, HEADER_LEN),
            other => panic!("{ok}: {other:?}"),
        }
        fs::remove_file(segment_path(dir.path(), 5)).unwrap();
        fs::remove_file(segment_path(dir.path(), 1)).unwrap();
    }
}

#[test]
fn segments_are_preallocated_and_roll_over_into_the_spare() {
    let dir = tempfile::tempdir().unwrap();
    let spare = dir.path().join(SPARE_FILE);
    let (mut spool, _) = open(dir.path(), 200);
    // 8 + 5 * 36 = 188 bytes: five records fill the first segment's 200 bytes but one.
    append_range(&mut spool, 1..=5);
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert_eq!(fs::metadata(&spool.segments[0].path).unwrap().len(), 200);
    check_padding(&spool);
    // The sixth runs past the preallocated end and extends the file; the seventh rolls over.
    append_range(&mut spool, 6..=7);
    let files = segment_files(dir.path());
    assert_eq!(
        files,
        [segment_path(dir.path(), 1), segment_path(dir.path(), 7)]
    );
    assert_eq!(fs::metadata(&files[0]).unwrap().len(), 224);
    assert_eq!(fs::metadata(&files[1]).unwrap().len(), 200);
    check_padding(&spool);
    assert_eq!(spool.size_bytes(), 224 + 44);
    drop(spool);
    // A new spare was prepared after the rollover.
    assert_eq!(fs::read(&spare).unwrap(), [0; 200]);
    assert!(!dir.path().join(SPARE_TMP).exists());

    // A torn spare is remade; a missing one is made in line.
    fs::write(&spare, b"DWSP").unwrap();
    let (mut spool, recovery) = open(dir.path(), 200);
    assert_eq!((recovery.records, recovery.torn_bytes_dropped), (7, 0));
    append_range(&mut spool, 8..=13);
    assert_eq!(segment_files(dir.path()).len(), 3);
    check_padding(&spool);
    spool.spare.take().unwrap().join().unwrap();
    fs::remove_file(&spare).unwrap();
    append_range(&mut spool, 14..=19);
    assert_eq!(segment_files(dir.path()).len(), 4);
    check_padding(&spool);
    drop(spool);
    let (spool, recovery) = open(dir.path(), 200);
    assert_eq!((recovery.segments, recovery.torn_bytes_dropped), (4, 0));
    assert_eq!(all(&spool), (1..=19).collect::<Vec<_>>());
    check_padding(&spool);
}

#[test]
fn old_unpadded_segments_still_recover() {
    // As written before preallocation: no spare, no padding.
    let dir = tempfile::tempdir().unwrap();
    for (name, seqs) in [(1, 1..=3), (4, 4..=5)] {
        let mut bytes = segment_header(0).to_vec();
        for seq in seqs {
            encode_record(&mut bytes, seq, &payload(seq));
        }
        fs::write(segment_path(dir.path(), name), bytes).unwrap();
    }
    write_ack(dir.path(), 1, 5).unwrap();
    let (mut spool, recovery) = open(dir.path(), PADDED);
    assert_eq!(
        (
            recovery.records,
            recovery.first_seq,
            recovery.torn_bytes_dropped
        ),
        (4, Some(2), 0)
    );
    assert_eq!(all(&spool), [2, 3, 4, 5]);
    check_padding(&spool);
    // Appends go on at the end of the old last segment, growing it.
    append_range(&mut spool, 6..=6);
    assert_eq!(segment_files(dir.path()).len(), 2);
    drop(spool);
    let (spool, recovery) = open(dir.path(), PADDED);
    assert_eq!((recovery.records, recovery.torn_bytes_dropped), (5, 0));
    assert_eq!(all(&spool), [2, 3, 4, 5, 6]);
    check_padding(&spool);
}

#[test]
fn a_padded_segment_before_the_last_one_is_read_to_its_padding() {
    // Written with big segments, reopened with small ones: the padded segment is rolled over
    // and stays before the new last one.
    let dir = tempfile::tempdir().unwrap();
    let (first, start, record) = pristine_with(dir.path(), PADDED);
    let (mut spool, _) = open(dir.path(), SMALL);
    append_range(&mut spool, 13..=13);
    drop(spool);
    let (spool, recovery) = open(dir.path(), SMALL);
    assert_eq!((recovery.segments, recovery.torn_bytes_dropped), (2, 0));
    assert_eq!(all(&spool), (1..=13).collect::<Vec<_>>());
    check_padding(&spool);
    drop(spool);
    // Garbage in its padding is damage there: not the last segment.
    let file = fs::File::options().write(true).open(&first).unwrap();
    file.write_all_at(b"junk", start + record + 100).unwrap();
    match Spool::open(config(dir.path(), SMALL)) {
        Err(SpoolError::Corrupt { path, offset, .. }) => {
            assert_eq!((path, offset), (first, start + record))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn garbage_after_the_last_record_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (last, start, record) = pristine(dir.path());
    for n in 1..=40u64 {
        let garbage: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
        let copy = copy_dir(dir.path());
        let path = copy.path().join(last.file_name().unwrap());
        let file = fs::File::options().append(true).open(&path).unwrap();
        file.write_all_at(&garbage, start + record).unwrap();
        let (spool, recovery) = open(copy.path(), SMALL);
        assert_eq!(recovery.torn_bytes_dropped, n);
        assert_eq!(all(&spool), (1..=12).collect::<Vec<_>>());
    }
    // Zeros, as a power loss can leave past the last synced write: padding, nothing dropped.
    let copy = copy_dir(dir.path());
    let path = copy.path().join(last.file_name().unwrap());
    cut(&path, start + record + 64);
    let (spool, recovery) = open(copy.path(), SMALL);
    assert_eq!(recovery.torn_bytes_dropped, 0);
    assert_eq!(all(&spool), (1..=12).collect::<Vec<_>>());
}

#[test]
fn a_segment_torn_while_being_created_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    pristine(dir.path());
    // Empty, torn in its header, zero-filled (a spare renamed into place, nothing written yet),
    // or records written but not the header (blocks reach the disk in any order).
    let mut records = vec![0; HEADER_LEN as usize];
    records.extend(record_bytes(13));
    records.resize(300, 0);
    let cases = [(&b""[..], 0), (b"DWS", 3), (&[0; 300], 0), (&records, 44)];
    for (bytes, dropped) in cases {
        let copy = copy_dir(dir.path());
        fs::write(segment_path(copy.path(), 13), bytes).unwrap();
        let (spool, recovery) = open(copy.path(), SMALL);
        assert_eq!(recovery.torn_bytes_dropped, dropped);
        assert_eq!((all(&spool), recovery.segments), ((1..=12).collect(), 4));
        assert!(!segment_path(copy.path(), 13).exists());
    }
}

#[test]
fn a_flipped_byte_in_the_last_record_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (last, start, record) = pristine(dir.path());
    for at in start..start + record {
        check_torn(dir.path(), &last, SMALL, |p| flip(p, at), record);
    }
}

fn flip(path: &Path, at: u64) {
    let file = fs::File::options()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[byte[0] ^ 0x5a], at).unwrap();
}

#[test]
fn damage_before_the_tail_is_an_error_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (last, start, record) = pristine(dir.path());
    let first = segment_files(dir.path()).remove(0);
    let second = HEADER_LEN + record;
    // Any byte of record 2, in the first segment; and past the length field of record 11,
    // the middle one of the last segment (so a valid record follows it).
    let cases = (second..second + record)
        .map(|at| (&first, at, second))
        .chain((start - record + 4..start).map(|at| (&last, at, start - record)));
    for (file, at, offset) in cases {
        let copy = copy_dir(dir.path());
        let path = copy.path().join(file.file_name().unwrap());
        flip(&path, at);
        match Spool::open(config(copy.path(), SMALL)) {
            Err(SpoolError::Corrupt {
                path: p, offset: o, ..
            }) => {
                assert_eq!((p, o), (path.clone(), offset), "flip at {at}")
            }
            other => panic!("flip at {at} of {}: {other:?}", path.display()),
        }
    }
    // A bad header is damage too, as is a damaged ack file.
    let copy = copy_dir(dir.path());
    flip(&copy.path().join(first.file_name().unwrap()), 1);
    assert!(matches!(
        Spool::open(config(copy.path(), SMALL)),
        Err(SpoolError::Corrupt { .. })
    ));
    let (mut spool, _) = open(dir.path(), SMALL);
    spool.ack(2).unwrap();
    flip(&dir.path().join(ACK_FILE), 9);
    let err = Spool::open(config(dir.path(), SMALL)).unwrap_err();
    assert!(err.to_string().contains("ack"), "{err}");
}

#[test]
fn compact_replaces_unacked_records_with_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(SpoolConfig {
        max_bytes: 300,
        ..config(dir.path(), SMALL)
    })
    .unwrap();
    append_range(&mut spool, 1..=12);
    spool.ack(4).unwrap();
    assert!(spool.is_full());
    assert_eq!(
        spool.compact(&[(20, b"snap-a"), (21, b"snap-b")]).unwrap(),
        8
    );
    assert!(!spool.is_full());
    assert_eq!(
        (spool.last_seq(), spool.unacked_count(), spool.acked_seq()),
        (Some(21), 2, 4)
    );
    assert_eq!(segment_files(dir.path()), [segment_path(dir.path(), 20)]);
    spool.append(&[(22, b"after")]).unwrap();
    drop(spool);
    let (mut spool, recovery) = open(dir.path(), SMALL);
    let seqs: Vec<_> = spool
        .read_after(0, 10)
        .unwrap()
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(seqs, [20, 21, 22]);
    assert_eq!((recovery.records, recovery.last_seq), (3, Some(22)));

    // An empty snapshot drops everything and keeps the seq.
    assert_eq!(spool.compact(&[]).unwrap(), 3);
    drop(spool);
    let (spool, recovery) = open(dir.path(), SMALL);
    assert_eq!((recovery.records, spool.last_seq()), (0, Some(22)));
}

#[test]
fn a_crash_during_compaction_resolves_to_one_side() {
    // Snapshot renamed into place, old segments not yet deleted: the snapshot wins.
    let dir = tempfile::tempdir().unwrap();
    pristine(dir.path());
    let mut bytes = segment_header(FLAG_SNAPSHOT).to_vec();
    encode_record(&mut bytes, 30, &payload(30));
    fs::write(segment_path(dir.path(), 30), &bytes).unwrap();
    let (spool, recovery) = open(dir.path(), SMALL);
    assert_eq!(all(&spool), [30]);
    assert_eq!((recovery.segments, recovery.last_seq), (1, Some(30)));
    assert_eq!(segment_files(dir.path()), [segment_path(dir.path(), 30)]);

    // Snapshot still a temp file: the old records win and the temp file goes.
    let dir = tempfile::tempdir().unwrap();
    pristine(dir.path());
    let tmp = dir.path().join(".00000000000000000030.seg.tmp");
    fs::write(&tmp, &bytes[..20]).unwrap();
    let (spool, recovery) = open(dir.path(), SMALL);
    assert_eq!(all(&spool), (1..=12).collect::<Vec<_>>());
    assert_eq!(recovery.torn_bytes_dropped, 0);
    assert!(!tmp.exists());
}

#[derive(Clone, Debug)]
enum Op {
    Append(Vec<(u64, Vec<u8>)>),
    Ack(u8),
    Reopen,
    Compact(Vec<Vec<u8>>),
    Read(u8, usize),
}

fn op() -> impl Strategy<Value = Op> {
    let payload = proptest::collection::vec(any::<u8>(), 0..40);
    prop_oneof![
        4 => proptest::collection::vec((1..4u64, payload.clone()), 1..6).prop_map(Op::Append),
        2 => prop_oneof![Just(255), any::<u8>()].prop_map(Op::Ack),
        1 => Just(Op::Reopen),
        1 => proptest::collection::vec(payload, 0..3).prop_map(Op::Compact),
        1 => (any::<u8>(), 1..5usize).prop_map(|(at, max)| Op::Read(at, max)),
    ]
}

/// A seq between `lo` and `hi`, picked by `at`.
fn between(lo: u64, hi: u64, at: u8) -> u64 {
    lo + (hi - lo) * u64::from(at) / 255
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn behaves_like_a_queue_in_memory(ops in proptest::collection::vec(op(), 1..25)) {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = open(dir.path(), 120);
        let (mut model, mut acked, mut last) = (Vec::<(u64, Vec<u8>)>::new(), 0, 0);
        for op in ops {
            match op {
                Op::Append(gaps) => {
                    let batch: Vec<_> = gaps.into_iter().map(|(gap, p)| {
                        last += gap;
                        (last, p)
                    }).collect();
                    let refs: Vec<_> = batch.iter().map(|(s, p)| (*s, p.as_slice())).collect();
                    spool.append(&refs).unwrap();
                    model.extend(batch);
                }
                Op::Ack(at) => {
                    let upto = between(acked, last, at);
                    spool.ack(upto).unwrap();
                    acked = acked.max(upto);
                    model.retain(|r| r.0 > acked);
                }
                Op::Reopen => {
                    let size = spool.size_bytes();
                    drop(spool);
                    let recovery;
                    (spool, recovery) = open(dir.path(), 120);
                    prop_assert_eq!(recovery.torn_bytes_dropped, 0);
                    prop_assert_eq!(spool.size_bytes(), size);
                    prop_assert_eq!(recovery.records, model.len() as u64);
                    prop_assert_eq!(recovery.first_seq, model.first().map(|r| r.0));
                }
                Op::Compact(payloads) => {
                    let batch: Vec<_> = payloads.into_iter().map(|p| {
                        last += 1;
                        (last, p)
                    }).collect();
                    let refs: Vec<_> = batch.iter().map(|(s, p)| (*s, p.as_slice())).collect();
                    prop_assert_eq!(spool.compact(&refs).unwrap(), model.len() as u64);
                    model = batch;
                }
                Op::Read(at, max) => {
                    let after = between(0, last, at);
                    let want: Vec<_> =
                        model.iter().filter(|r| r.0 > after).take(max).cloned().collect();
                    prop_assert_eq!(spool.read_after(after, max).unwrap(), want);
                }
            }
            prop_assert_eq!(spool.read_after(0, usize::MAX).unwrap(), model.clone());
            prop_assert_eq!(spool.last_seq(), (last > 0).then_some(last));
            prop_assert_eq!(spool.acked_seq(), acked);
            prop_assert_eq!(spool.unacked_count(), model.len() as u64);
            check_padding(&spool);
        }
    }
}

#[test]
fn batches_are_bounded_and_the_first_unacked_seq_is_known() {
    let dir = tempfile::tempdir().unwrap();
    // Small segments, so acks land inside and across segments.
    let (mut spool, _) = open(dir.path(), 200);
    assert_eq!(spool.first_unacked_seq().unwrap(), None);
    append_range(&mut spool, 1..=20);
    let len = payload(1).len();
    let seqs = |v: Vec<(u64, Vec<u8>)>| v.into_iter().map(|(s, _)| s).collect::<Vec<_>>();
    // The record that crosses the byte bound is the last one in.
    assert_eq!(
        seqs(spool.read_batch(0, 100, 2 * len + 1).unwrap()),
        [1, 2, 3]
    );
    assert_eq!(seqs(spool.read_batch(5, 2, usize::MAX).unwrap()), [6, 7]);
    // Never empty while records remain, however small the bound.
    assert_eq!(seqs(spool.read_batch(19, 100, 1).unwrap()), [20]);
    assert_eq!(spool.first_unacked_seq().unwrap(), Some(1));
    for upto in [1, 7, 12, 19] {
        spool.ack(upto).unwrap();
        assert_eq!(
            spool.first_unacked_seq().unwrap(),
            Some(upto + 1),
            "after ack {upto}"
        );
    }
    spool.ack(20).unwrap();
    assert_eq!(spool.first_unacked_seq().unwrap(), None);
    // A compaction to an empty snapshot holds nothing; the next record is the first unacked.
    append_range(&mut spool, 21..=25);
    spool.compact(&[]).unwrap();
    assert_eq!(spool.first_unacked_seq().unwrap(), None);
    append_range(&mut spool, 26..=27);
    assert_eq!(spool.first_unacked_seq().unwrap(), Some(26));
    drop(spool);
    let (spool, _) = open(dir.path(), 200);
    assert_eq!(spool.first_unacked_seq().unwrap(), Some(26));
    assert_eq!(spool.last_seq(), Some(27));
}

#[test]
fn a_corrupt_file_is_quarantined_and_the_rest_opens() {
    let dir = tempfile::tempdir().unwrap();
    pristine(dir.path());
    let files = segment_files(dir.path());
    let quarantine = tempfile::tempdir().unwrap();
    let with_quarantine = |dir: &Path| SpoolConfig {
        quarantine: Some(quarantine.path().to_path_buf()),
        ..config(dir, SMALL)
    };
    // (the byte of the second segment flipped, what is wrong); records 4 to 6 are lost.
    let second = files[1].file_name().unwrap().to_owned();
    let cases = [
        (HEADER_LEN + 20, "checksum mismatch at byte 8"),
        (0, "not a spool segment (bad magic) at byte 0"),
    ];
    let left = [1, 2, 3, 7, 8, 9, 10, 11, 12];
    for (at, problem) in cases {
        let copy = copy_dir(dir.path());
        flip(&copy.path().join(&second), at);
        let (spool, recovery) = Spool::open(with_quarantine(copy.path())).unwrap();
        assert_eq!(recovery.quarantined.len(), 1);
        let q = &recovery.quarantined[0];
        assert_eq!(q.path, copy.path().join(&second));
        assert_eq!(q.problem, problem);
        assert!(q.moved_to.starts_with(quarantine.path()) && q.moved_to.exists());
        let message = q.message("the collector gets a snapshot instead");
        assert!(
            message.starts_with("Spool segment ") && message.contains(problem),
            "{message}"
        );
        assert!(message.ends_with("; the collector gets a snapshot instead."));
        assert_eq!(all(&spool), left);
        assert_eq!(spool.quarantined(), 1);
    }
    // The last segment quarantined: its numbers are not given out again.
    let copy = copy_dir(dir.path());
    let last = files.last().unwrap().file_name().unwrap();
    flip(&copy.path().join(last), HEADER_LEN + 20);
    let (spool, recovery) = Spool::open(with_quarantine(copy.path())).unwrap();
    assert_eq!(all(&spool), (1..=9).collect::<Vec<_>>());
    assert_eq!((spool.last_seq(), recovery.last_seq), (Some(12), Some(12)));
    // A damaged ack file goes too: every record is unacked again.
    let copy = copy_dir(dir.path());
    {
        let (mut spool, _) = open(copy.path(), SMALL);
        spool.ack(2).unwrap();
    }
    fs::write(copy.path().join(ACK_FILE), b"garbage").unwrap();
    let (spool, recovery) = Spool::open(with_quarantine(copy.path())).unwrap();
    assert!(
        recovery.quarantined[0]
            .message("then")
            .starts_with("Spool ack file ")
    );
    assert_eq!(spool.acked_seq(), 0);
    // An ack file of any size is refused before it is read.
    fs::write(copy.path().join(ACK_FILE), vec![0; 1 << 20]).unwrap();
    drop(spool);
    let err = Spool::open(config(copy.path(), SMALL)).unwrap_err();
    assert!(err.to_string().contains("over the 28-byte limit"), "{err}");
}

#[test]
fn an_unavailable_spool_holds_records_in_memory_until_it_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = open(dir.path(), PADDED);
    append_range(&mut spool, 1..=3);
    spool.set_unavailable("disk full");
    append_range(&mut spool, 4..=6);
    assert_eq!(spool.unavailable(), Some("disk full"));
    assert_eq!(spool.held().0, 3);
    assert_eq!(all(&spool), (1..=6).collect::<Vec<_>>());
    assert_eq!(spool.unacked_count(), 6);
    // Acknowledgements are kept in memory: the ack file and the segments stay as they were.
    spool.ack(4).unwrap();
    assert_eq!(spool.held().0, 2);
    assert_eq!(spool.first_unacked_seq().unwrap(), Some(5));
    assert_eq!(read_ack(dir.path()).unwrap(), (0, 0));
    // Only what was acknowledged is missing after a crash now; the disk is consistent.
    {
        let copy = copy_dir(dir.path());
        let (crashed, _) = open(copy.path(), PADDED);
        assert_eq!(all(&crashed), [1, 2, 3]);
    }
    assert!(spool.resume().unwrap());
    assert_eq!(spool.unavailable(), None);
    assert_eq!(spool.held(), (0, 0));
    drop(spool);
    let (spool, recovery) = open(dir.path(), PADDED);
    assert_eq!(all(&spool), [5, 6]);
    assert_eq!((recovery.acked, recovery.last_seq), (4, Some(6)));
}

#[test]
fn compacting_an_unavailable_spool_drops_the_held_records() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(SpoolConfig {
        max_bytes: 300,
        ..config(dir.path(), PADDED)
    })
    .unwrap();
    append_range(&mut spool, 1..=2);
    spool.set_unavailable("disk full");
    append_range(&mut spool, 3..=9);
    assert!(spool.is_full());
    assert_eq!(spool.compact(&[]).unwrap(), 7);
    assert!(!spool.is_full());
    assert_eq!(all(&spool), [1, 2]);
    assert_eq!(spool.last_seq(), Some(9));
    append_range(&mut spool, 10..=10);
    assert_eq!(all(&spool), [1, 2, 10]);
}
