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

/// Records are 36 bytes: with 100-byte segments, 3 records per segment.
const SMALL: u64 = 100;

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
    let (mut spool, _) = open(dir, SMALL);
    append_range(&mut spool, 1..=12);
    let last = segment_files(dir).pop().unwrap();
    let len = fs::metadata(&last).unwrap().len();
    let record = RECORD_HEADER + payload(12).len() as u64;
    (last, len - record, record)
}

fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.path().join(entry.file_name())).unwrap();
    }
    to
}

/// Damages a copy of the pristine spool, then checks recovery drops exactly `torn` bytes
/// and record 12 only, and that the spool goes on working.
fn check_torn(from: &Path, last: &Path, damage: impl FnOnce(&Path), torn: u64) {
    let copy = copy_dir(from);
    damage(&copy.path().join(last.file_name().unwrap()));
    let (mut spool, recovery) = open(copy.path(), SMALL);
    assert_eq!(recovery.torn_bytes_dropped, torn);
    assert_eq!((recovery.records, recovery.last_seq), (11, Some(11)));
    assert_eq!(all(&spool), (1..=11).collect::<Vec<_>>());
    append_range(&mut spool, 12..=13);
    drop(spool);
    let (spool, recovery) = open(copy.path(), SMALL);
    assert_eq!(recovery.torn_bytes_dropped, 0);
    assert_eq!(all(&spool), (1..=13).collect::<Vec<_>>());
}

#[test]
fn torn_tail_is_dropped_at_every_length() {
    let dir = tempfile::tempdir().unwrap();
    let (last, start, record) = pristine(dir.path());
    for keep in 0..record {
        let cut = |p: &Path| fs::File::options().write(true).open(p).unwrap();
        check_torn(
            dir.path(),
            &last,
            |p| cut(p).set_len(start + keep).unwrap(),
            keep,
        );
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
    // Zeros, as a power loss can leave past the last synced write.
    let copy = copy_dir(dir.path());
    let path = copy.path().join(last.file_name().unwrap());
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(start + record + 64)
        .unwrap();
    let (_, recovery) = open(copy.path(), SMALL);
    assert_eq!(recovery.torn_bytes_dropped, 64);
}

#[test]
fn a_segment_torn_while_being_created_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    pristine(dir.path());
    for bytes in [&b""[..], b"DWS", &[0; 30]] {
        let copy = copy_dir(dir.path());
        fs::write(segment_path(copy.path(), 13), bytes).unwrap();
        let (spool, recovery) = open(copy.path(), SMALL);
        assert_eq!(recovery.torn_bytes_dropped, bytes.len() as u64);
        assert_eq!((all(&spool), recovery.segments), ((1..=12).collect(), 4));
    }
}

#[test]
fn a_flipped_byte_in_the_last_record_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (last, start, record) = pristine(dir.path());
    for at in start..start + record {
        check_torn(dir.path(), &last, |p| flip(p, at), record);
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
                    drop(spool);
                    let recovery;
                    (spool, recovery) = open(dir.path(), 120);
                    prop_assert_eq!(recovery.torn_bytes_dropped, 0);
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
            let on_disk: u64 = segment_files(dir.path())
                .iter()
                .map(|p| fs::metadata(p).unwrap().len())
                .sum();
            prop_assert_eq!(spool.size_bytes(), on_disk);
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
