//! File utilities every part of the agent uses: crash-safe replacement of a file, bounded
//! reads of files whose size could be anything, telling a full disk from other write failures,
//! moving a damaged state file aside (quarantine), the mapping between paths inside the
//! agent's root and paths on the host, and loading the baseline file (the one load that
//! `check`, the `baseline` commands and the daemon share).
//!
//! A leaf room: it imports nothing from the rest of the agent.

use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use driftwatch_proto::baseline::{self, FormatError, LoadedBaseline};
use driftwatch_proto::keys::{self, KeyError};

/// Replaces `path` with `bytes` crash-safely: a temp file in the same directory (created with
/// `mode`, filtered by the umask like any new file, so the data is never readable more widely),
/// written, fsynced, renamed over `path`, then the directory fsynced. A reader sees the old file
/// or the new one, never a torn one. The temp file is named `.NAME.XXXXXX.tmp` (a crash may
/// leave one behind) and removed on failure.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{}: not a file path", path.display())))?;
    let mut file = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Whether a write failed because the disk (or the user's quota) is full: `ENOSPC` or `EDQUOT`.
/// Such a failure is a state the agent waits out, not a reason to stop.
pub fn is_storage_full(error: &io::Error) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    error.kind() == io::ErrorKind::StorageFull
        || matches!(error.raw_os_error(), Some(ENOSPC | EDQUOT))
}

/// Whether `error` or any of its sources is an I/O error of a full disk ([`is_storage_full`]).
pub fn caused_by_full_disk(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.downcast_ref::<io::Error>().is_some_and(is_storage_full) {
            return true;
        }
        next = e.source();
    }
    false
}

/// Reads a whole file, refusing before reading anything one that is not a regular file
/// (`/dev/zero`, a FIFO, a directory) or is larger than `max` bytes: a damaged or hostile file
/// costs an error, never memory. The refusals are `InvalidData` errors saying what is wrong.
pub fn read_bounded(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    let size = regular_file_size(&file, max)?;
    let mut bytes = Vec::with_capacity(size as usize);
    // The file may grow while it is read: never past the bound.
    (&mut file).take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_large(bytes.len() as u64, max));
    }
    Ok(bytes)
}

/// The size of an open file, if it is a regular file of at most `max` bytes.
pub fn regular_file_size(file: &std::fs::File, max: u64) -> io::Result<u64> {
    let meta = file.metadata()?;
    if !meta.is_file() {
        let kind = meta.file_type();
        let what = if kind.is_dir() {
            "a directory"
        } else if std::os::unix::fs::FileTypeExt::is_char_device(&kind) {
            "a character device"
        } else if std::os::unix::fs::FileTypeExt::is_block_device(&kind) {
            "a block device"
        } else if std::os::unix::fs::FileTypeExt::is_fifo(&kind) {
            "a FIFO"
        } else {
            "not a regular file"
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not a regular file ({what})"),
        ));
    }
    if meta.len() > max {
        return Err(too_large(meta.len(), max));
    }
    Ok(meta.len())
}

fn too_large(size: u64, max: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{size} bytes, over the {max}-byte limit"),
    )
}

/// Moves a damaged state file aside, into `quarantine_dir` (created 0700), named after the
/// file and the time (`ledger.pb.20261203T161500.123Z`), so an operator can inspect it and
/// the agent can start afresh without it. Returns where it went. A rename needs no data
/// blocks; should the quarantine directory still find no room (a full disk), the file is
/// renamed where it is instead (`ledger.pb.corrupt.20261203T161500.123Z`), which no reader of
/// the state directory takes for its own.
pub fn quarantine(path: &Path, quarantine_dir: &Path) -> io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt as _;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{}: not a file path", path.display())))?
        .to_string_lossy()
        .into_owned();
    let stamp = humantime::format_rfc3339_millis(std::time::SystemTime::now())
        .to_string()
        .replace([':', '-'], "");
    let move_to = |dir: &Path, name: String| -> io::Result<PathBuf> {
        let mut dest = dir.join(&name);
        let mut n = 1;
        while dest.exists() {
            dest = dir.join(format!("{name}.{n}"));
            n += 1;
        }
        std::fs::rename(path, &dest)?;
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(dest)
    };
    let moved = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(quarantine_dir)
        .and_then(|()| move_to(quarantine_dir, format!("{name}.{stamp}")));
    match (moved, path.parent()) {
        (Err(error), Some(here)) if is_storage_full(&error) => {
            move_to(here, format!("{name}.corrupt.{stamp}"))
        }
        (moved, _) => moved,
    }
}

/// Why a baseline file cannot be used. Each names the file it concerns; the message of its
/// source follows (`{:#}`: "refusing baseline /x.dwb: …").
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("cannot read baseline {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("refusing baseline {}", path.display())]
    Refused {
        path: PathBuf,
        #[source]
        source: FormatError,
    },
    #[error("cannot read public key {}", path.display())]
    ReadKey {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("public key {}", path.display())]
    Key {
        path: PathBuf,
        #[source]
        source: KeyError,
    },
    /// Unsigned, or signed by another key than the trusted one.
    #[error("{}", path.display())]
    Signer {
        path: PathBuf,
        #[source]
        source: FormatError,
    },
}

/// Reads and decodes a baseline file; with a trusted public key (PEM, or 64 hex digits),
/// refuses it unless it is signed by that key. `check`, the `baseline` commands and the
/// daemon (start-up, SIGHUP, `validate`) all load baselines here.
///
/// Bounded before trusted: the file must be a regular file of at most
/// [`baseline::MAX_FILE_BYTES`], and its header (magic, envelope length against the file's
/// size) is checked before the rest is read, so a wrong path (`/dev/zero`, a disk image) is
/// refused at once and costs no memory.
pub fn load_baseline(
    path: &Path,
    public_key: Option<&Path>,
) -> Result<LoadedBaseline, BaselineError> {
    let read = |source| BaselineError::Read {
        path: path.to_path_buf(),
        source,
    };
    let refused = |source| BaselineError::Refused {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(read)?;
    // Any size passes here: a file over the bound is refused by the header check, which says
    // what it is (not a baseline at all, or one too large).
    let size = regular_file_size(&file, u64::MAX).map_err(read)?;
    let mut head = Vec::with_capacity(baseline::HEADER_LEN);
    (&mut file)
        .take(baseline::HEADER_LEN as u64)
        .read_to_end(&mut head)
        .map_err(read)?;
    baseline::check_header(&head, size).map_err(refused)?;
    let mut bytes = head;
    bytes.reserve_exact((size as usize).saturating_sub(bytes.len()));
    (&mut file)
        .take(size.saturating_sub(bytes.len() as u64))
        .read_to_end(&mut bytes)
        .map_err(read)?;
    let loaded = baseline::decode(&bytes).map_err(refused)?;
    if let Some(key_path) = public_key {
        let key = load_public_key(key_path)?;
        loaded
            .verify_signer(&key)
            .map_err(|source| BaselineError::Signer {
                path: path.to_path_buf(),
                source,
            })?;
    }
    Ok(loaded)
}

fn load_public_key(path: &Path) -> Result<ed25519_dalek::VerifyingKey, BaselineError> {
    // A key file is a few hundred bytes of PEM at most.
    let text = read_bounded(path, 64 << 10)
        .and_then(|b| {
            String::from_utf8(b).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
        })
        .map_err(|source| BaselineError::ReadKey {
            path: path.to_path_buf(),
            source,
        })?;
    keys::verifying_key_from_text(&text).map_err(|source| BaselineError::Key {
        path: path.to_path_buf(),
        source,
    })
}

/// Maps a path inside the root to the host path.
pub fn host_path(root: &Path, path: &Path) -> PathBuf {
    match path.strip_prefix("/") {
        Ok(rel) if rel.as_os_str().is_empty() => root.to_path_buf(),
        Ok(rel) => root.join(rel),
        Err(_) => root.join(path),
    }
}

/// Maps a host path under `root` to the path inside the root.
pub fn root_path(root: &Path, host: &Path) -> PathBuf {
    match host.strip_prefix(root) {
        Ok(rel) => Path::new("/").join(rel),
        Err(_) => host.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn replaces_the_file_with_its_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.json");
        write_atomically(&path, b"one", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        assert_eq!(mode(&path), 0o600);
        // Replacing takes the new file's mode, and the content is whole.
        write_atomically(&path, b"two, longer", 0o640).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two, longer");
        assert_eq!(mode(&path), 0o640 & !umask());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["ledger.json"]);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("target");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("inside"), "x").unwrap();
        // Renaming a file over a non-empty directory fails.
        assert!(write_atomically(&path, b"new", 0o600).is_err());
        assert!(path.join("inside").exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(write_atomically(Path::new("/"), b"x", 0o600).is_err());
    }

    /// This process's umask (read without changing it, from /proc).
    fn umask() -> u32 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("Umask:"))
            .map(|m| u32::from_str_radix(m.trim(), 8).unwrap())
            .unwrap()
    }

    #[test]
    fn a_full_disk_is_told_from_other_failures() {
        for errno in [28, 122] {
            let error = io::Error::from_raw_os_error(errno);
            assert!(is_storage_full(&error), "{error}");
            let wrapped = BaselineError::Read {
                path: "/x".into(),
                source: error,
            };
            assert!(caused_by_full_disk(&wrapped));
        }
        assert!(is_storage_full(&io::Error::from(
            io::ErrorKind::StorageFull
        )));
        assert!(!is_storage_full(&io::Error::from_raw_os_error(5)));
        assert!(!caused_by_full_disk(&io::Error::other("full")));
    }

    #[test]
    fn bounded_reads_refuse_devices_and_large_files_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small");
        std::fs::write(&small, b"12345").unwrap();
        assert_eq!(read_bounded(&small, 5).unwrap(), b"12345");
        let err = read_bounded(&small, 4).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(err.to_string(), "5 bytes, over the 4-byte limit");
        let err = read_bounded(Path::new("/dev/zero"), 1 << 30).unwrap_err();
        assert_eq!(err.to_string(), "not a regular file (a character device)");
        let err = read_bounded(dir.path(), 1 << 30).unwrap_err();
        assert!(err.to_string().contains("a directory"), "{err}");
        let started = std::time::Instant::now();
        let err = load_baseline(Path::new("/dev/zero"), None).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let text = crate::errors::error_chain(&err);
        assert_eq!(
            text,
            "cannot read baseline /dev/zero: not a regular file (a character device)"
        );
    }

    #[test]
    fn a_baseline_is_refused_on_its_header_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.dwb");
        // A sparse file of 3 GiB: reading it whole would cost 3 GiB.
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(3 << 30).unwrap();
        let text = crate::errors::error_chain(&load_baseline(&path, None).unwrap_err());
        assert!(text.contains("not a driftwatch baseline file"), "{text}");
        let mut head = baseline::MAGIC.to_vec();
        head.extend_from_slice(&((3u64 << 30) - baseline::HEADER_LEN as u64).to_le_bytes());
        std::fs::write(&path, &head).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(3 << 30)
            .unwrap();
        let text = crate::errors::error_chain(&load_baseline(&path, None).unwrap_err());
        assert!(
            text.contains("the file is 3221225472 bytes, over the 1073741824-byte limit"),
            "{text}"
        );
    }

    #[test]
    fn quarantine_moves_a_file_aside_under_a_timestamped_name() {
        let dir = tempfile::tempdir().unwrap();
        let q = dir.path().join("quarantine");
        let mut moved = Vec::new();
        for _ in 0..2 {
            let path = dir.path().join("ledger.pb");
            std::fs::write(&path, b"bad").unwrap();
            let to = quarantine(&path, &q).unwrap();
            assert!(!path.exists());
            assert_eq!(std::fs::read(&to).unwrap(), b"bad");
            let name = to.file_name().unwrap().to_str().unwrap().to_owned();
            assert!(name.starts_with("ledger.pb.20"), "{name}");
            moved.push(to);
        }
        assert_ne!(moved[0], moved[1]);
        assert_eq!(mode(&q), 0o700);
    }

    #[test]
    fn root_paths_map_both_ways() {
        let root = Path::new("/srv/image");
        assert_eq!(
            host_path(root, Path::new("/etc/ssh")),
            Path::new("/srv/image/etc/ssh")
        );
        assert_eq!(host_path(root, Path::new("/")), root);
        assert_eq!(
            root_path(root, Path::new("/srv/image/etc/ssh")),
            Path::new("/etc/ssh")
        );
        assert_eq!(
            root_path(root, Path::new("/elsewhere")),
            Path::new("/elsewhere")
        );
    }
}
