"""Decoded-signal cache: decode every record once, then memory-map it from every process.

Layout of one cache entry (a folder under the cache dir, never inside the dataset)::

    <cache_dir>/<dataset-name>-<sr>hz-<fingerprint[:16]>/
        signals.npy   float16 (N, 12, T) millivolts, N = every row of ptbxl_database.csv
        index.json    ecg_ids, which rows decoded, the bad records and their errors, warnings
    <cache_dir>/<entry>.lock   the build lock of that entry

The fingerprint covers the resolved root, the sampling rate, the bytes of both CSVs and the
size and mtime of every record file, so editing or replacing any file makes a new entry. An
entry is built in a temporary folder and renamed into place (atomic on POSIX), under an
exclusive lock so concurrent workers decode once and the others wait and reuse it.

Failure behaviour (each one tested):

- The file's whole size is reserved (``posix_fallocate``) before any signal is written, so a
  full disk is one ``DataError`` line before decoding, never a ``SIGBUS`` in a memory-mapped write.
- Decode workers run in a ``ProcessPoolExecutor``: a worker that dies (killed, out of memory)
  breaks the pool and the build stops with one line, instead of the parent waiting forever.
- Waiting for another process's build has a timeout (``ECG_SWEEP_LOCK_TIMEOUT``, seconds) and
  the message names the lock file and the pid holding it.
- Temporary folders of crashed builds are removed by the next build (or ``data cache --prune``).
- Everything is fsynced before the rename that publishes it, and the folder after it; an entry
  whose index or signals cannot be read (a crash, a truncated copy) counts as missing and is
  rebuilt.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import multiprocessing as mp
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ecg_sweep._locks import file_lock, try_file_lock
from ecg_sweep.data.ptbxl import DATABASE_CSV, LEADS, RECORD_SECONDS, STATEMENTS_CSV, Metadata
from ecg_sweep.data.records import RecordError, flat_leads, read_record
from ecg_sweep.errors import DataError

__all__ = [
    "SignalCache",
    "BadRecord",
    "RecordWarning",
    "CacheEntry",
    "default_cache_dir",
    "load_signals",
    "scan_records",
    "scan_records_with_warnings",
    "fingerprint",
    "list_entries",
    "prune_cache",
]

log = logging.getLogger(__name__)

CACHE_ENV = "ECG_SWEEP_CACHE"
LOCK_TIMEOUT_ENV = "ECG_SWEEP_LOCK_TIMEOUT"
# Waiting longer than this for another process's build is an error naming the lock. A full
# PTB-XL build takes about a minute; an hour only trips on a process that is stuck.
DEFAULT_LOCK_TIMEOUT_S = 3600.0
# A temporary build folder this old whose entry lock is free is a crashed build's leftover.
STALE_TMP_S = 3600.0
# v2: records may only read their own .dat, gains/fs are checked, warnings are stored. Entries
# written by v1 could hold a signal read through a redirecting header, so they are not reused.
_FORMAT_VERSION = 2
# Below this many records a process pool costs more than it saves.
_PARALLEL_MIN_RECORDS = 400
_CHUNK = 256
_TMP_MARK = ".tmp-"
_BROKEN_MARK = ".broken-"

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class BadRecord:
    ecg_id: int
    path: str
    error: str

    def as_dict(self) -> dict:
        return {"ecg_id": self.ecg_id, "path": self.path, "error": self.error}


@dataclass(frozen=True)
class RecordWarning:
    """A record that decodes but looks wrong (a flat lead); it is kept, and reported."""

    ecg_id: int
    path: str
    warning: str

    def as_dict(self) -> dict:
        return {"ecg_id": self.ecg_id, "path": self.path, "warning": self.warning}


@dataclass(frozen=True)
class SignalCache:
    """A loaded cache entry. ``signals`` is a read-only memmap; ``ok[i]`` is False for bad rows."""

    path: Path
    ecg_ids: np.ndarray  # (N,) int64, sorted
    signals: np.ndarray  # (N, 12, T) float16 memmap
    ok: np.ndarray  # (N,) bool
    bad: tuple[BadRecord, ...]
    created: bool  # True when this call decoded the records
    warnings: tuple[RecordWarning, ...] = ()
    fingerprint: str = ""  # sha256 of the dataset as read (see fingerprint()); names the entry

    def rows(self, ecg_ids: np.ndarray) -> np.ndarray:
        """Row positions of the given ecg_ids (which must all be in the cache)."""
        pos = np.searchsorted(self.ecg_ids, ecg_ids)
        return pos


def default_cache_dir() -> Path:
    """``$ECG_SWEEP_CACHE``, else ``$XDG_CACHE_HOME/ecg-sweep``, else ``~/.cache/ecg-sweep``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ecg-sweep"


def _lock_timeout() -> float:
    value = os.environ.get(LOCK_TIMEOUT_ENV)
    if not value:
        return DEFAULT_LOCK_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        raise DataError(
            f"{LOCK_TIMEOUT_ENV} must be a number of seconds, not {value!r:.60}"
        ) from None
    if not seconds >= 0:
        raise DataError(f"{LOCK_TIMEOUT_ENV} must be >= 0 seconds, not {value!r:.60}")
    return seconds


def _record_column(sampling_rate: int) -> str:
    return "filename_lr" if sampling_rate == 100 else "filename_hr"


def fingerprint(meta: Metadata, sampling_rate: int) -> str:
    """sha256 over root, sampling rate, CSV bytes and (name, size, mtime) of every record file."""
    h = hashlib.sha256()
    h.update(f"v{_FORMAT_VERSION}|{meta.root}|{sampling_rate}|".encode())
    for name in (DATABASE_CSV, STATEMENTS_CSV):
        h.update((meta.root / name).read_bytes())
    for rel in meta.records[_record_column(sampling_rate)].astype(str):
        for suffix in (".hea", ".dat"):
            p = meta.root / (rel + suffix)
            try:
                st = p.stat()
                h.update(f"{rel}{suffix}:{st.st_size}:{st.st_mtime_ns};".encode())
            except OSError:  # missing, a symlink loop, a name too long: the reader reports it
                h.update(f"{rel}{suffix}:missing;".encode())
    return h.hexdigest()


def _entry_name(meta: Metadata, sampling_rate: int, fp: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", meta.root.name)[:40] or "dataset"
    return f"{slug}-{sampling_rate}hz-{fp[:16]}"


# ---------------------------------------------------------------------------------------- decode


def _decode_chunk(args: tuple) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """Worker: decode rows ``start:stop`` into the shared .npy.

    Returns ``(bad, warnings)`` as (row, text) pairs.
    """
    npy_path, root, rels, start, sampling_rate = args
    out = np.load(npy_path, mmap_mode="r+") if npy_path else None
    bad = []
    warnings = []
    for i, rel in enumerate(rels, start=start):
        try:
            x = read_record(Path(root) / rel, sampling_rate, root=root)
        except RecordError as e:
            bad.append((i, e.reason))
            continue
        flat = flat_leads(x)
        if flat:
            warnings.append((i, f"flat lead(s) {', '.join(flat)}: constant signal"))
        if out is not None:
            out[i] = x
    # No out.flush() (msync) per chunk: the pages are in the shared page cache, visible to every
    # process at once, and the parent fsyncs the whole file once before publishing the entry.
    # One sync instead of one per chunk keeps the build as fast as before the space reservation
    # (writes into reserved, unwritten extents cost more when synced piecemeal).
    return bad, warnings


def _decode_all(
    meta: Metadata,
    sampling_rate: int,
    npy_path: str | None,
    workers: int | None,
    progress: Progress | None,
) -> tuple[list[BadRecord], list[RecordWarning]]:
    rels = list(meta.records[_record_column(sampling_rate)].astype(str))
    n = len(rels)
    jobs = [
        (npy_path, str(meta.root), rels[s : s + _CHUNK], s, sampling_rate)
        for s in range(0, n, _CHUNK)
    ]
    workers = workers or os.cpu_count() or 1
    bad_rows: list[tuple[int, str]] = []
    warn_rows: list[tuple[int, str]] = []
    done = 0

    def collect(job: tuple, result: tuple) -> None:
        nonlocal done
        bad_rows.extend(result[0])
        warn_rows.extend(result[1])
        done += len(job[2])
        if progress:
            progress(done, n)

    if workers > 1 and n >= _PARALLEL_MIN_RECORDS:
        # A ProcessPoolExecutor, not multiprocessing.Pool: when a worker dies (SIGKILL, OOM,
        # SIGBUS) Pool replaces it and waits forever for its lost task; the executor raises
        # BrokenProcessPool. fork: workers need nothing beyond the args; no torch state is touched.
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork"))
        try:
            for job, result in zip(jobs, pool.map(_decode_chunk, jobs), strict=True):
                collect(job, result)
        except BrokenProcessPool:
            pool.shutdown(wait=False, cancel_futures=True)
            raise DataError(
                f"{meta.root}: a record-decoding worker process died (killed, out of memory, "
                "or a disk error); nothing was cached"
            ) from None
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)  # Ctrl-C: do not decode the rest
            raise
        pool.shutdown(wait=True)
    else:
        for job in jobs:
            collect(job, _decode_chunk(job))
    ids = meta.records.index.to_numpy()
    bad = [BadRecord(int(ids[i]), str(meta.root / rels[i]), err) for i, err in sorted(bad_rows)]
    warnings = [
        RecordWarning(int(ids[i]), str(meta.root / rels[i]), w) for i, w in sorted(warn_rows)
    ]
    return bad, warnings


def _raise_bad(bad: list[BadRecord] | tuple[BadRecord, ...]) -> None:
    first = bad[0]
    more = (
        f" (and {len(bad) - 1} more bad record(s); --on-bad-record skip drops them)"
        if len(bad) > 1
        else " (--on-bad-record skip drops it)"
    )
    raise DataError(f"{first.path}: {first.error}{more}")


def scan_records(
    meta: Metadata, sampling_rate: int, workers: int | None = None, progress: Progress | None = None
) -> list[BadRecord]:
    """Validate every record without writing anything; returns the bad ones."""
    return scan_records_with_warnings(meta, sampling_rate, workers, progress)[0]


def scan_records_with_warnings(
    meta: Metadata, sampling_rate: int, workers: int | None = None, progress: Progress | None = None
) -> tuple[list[BadRecord], list[RecordWarning]]:
    """Validate every record without writing anything; returns the bad ones and the warnings."""
    return _decode_all(meta, sampling_rate, None, workers, progress)


# ------------------------------------------------------------------------------------ load/build


def load_signals(
    meta: Metadata,
    sampling_rate: int,
    cache_dir: str | Path | None = None,
    on_bad_record: str = "error",
    workers: int | None = None,
    progress: Progress | None = None,
    lock_timeout: float | None = None,
) -> SignalCache:
    """Return the cache entry for ``meta`` at ``sampling_rate``, decoding it first if needed.

    ``on_bad_record="error"`` raises :class:`DataError` naming the first bad record and writes
    no cache; ``"skip"`` keeps going and records the bad ones in the entry. ``lock_timeout``
    (seconds; default ``$ECG_SWEEP_LOCK_TIMEOUT`` or an hour) bounds the wait for another
    process that is building the same entry. An entry that cannot be read is rebuilt.
    """
    if on_bad_record not in ("error", "skip"):
        raise DataError(f"--on-bad-record must be 'error' or 'skip', not {on_bad_record!r}")
    cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"{cache_dir}: cannot create cache folder: {e.strerror}") from None
    if cache_dir.resolve().is_relative_to(meta.root):
        raise DataError(f"{cache_dir}: the cache must live outside the dataset folder {meta.root}")
    timeout = _lock_timeout() if lock_timeout is None else lock_timeout
    fp = fingerprint(meta, sampling_rate)
    entry = cache_dir / _entry_name(meta, sampling_rate, fp)
    cache = _try_open(entry, meta, sampling_rate)
    if cache is None:
        cache = _build_locked(entry, meta, sampling_rate, on_bad_record, workers, progress, timeout)
    else:
        with contextlib.suppress(OSError):  # last use, for `data cache --list/--prune`
            os.utime(entry)
    if cache.bad and on_bad_record == "error":
        _raise_bad(cache.bad)
    return replace(cache, fingerprint=fp)


def _build_locked(
    entry: Path,
    meta: Metadata,
    sampling_rate: int,
    on_bad_record: str,
    workers: int | None,
    progress: Progress | None,
    timeout: float,
) -> SignalCache:
    lock = entry.with_name(f"{entry.name}.lock")
    try:
        with file_lock(
            lock,
            timeout=timeout,
            what="the signal-cache lock",
            on_wait=lambda: log.info(
                "waiting for another process building the signal cache (lock %s)", lock
            ),
        ):
            cache = _try_open(entry, meta, sampling_rate)  # another process may have built it
            if cache is not None:
                return cache
            if entry.exists():
                log.warning("%s: cache entry is unreadable; rebuilding it", entry)
                _discard(entry)
            _clean_stale_tmp(entry.parent, held=entry.name)
            _build(entry, meta, sampling_rate, on_bad_record, workers, progress)
            cache = _try_open(entry, meta, sampling_rate)
            if cache is None:
                raise DataError(f"{entry}: the cache entry just written cannot be read back")
            return replace(cache, created=True)
    except OSError as e:  # opening the lock file, listing the cache folder
        where = e.filename or lock
        raise DataError(f"{where}: cannot use the cache folder: {e.strerror or e}") from None


def _try_open(entry: Path, meta: Metadata, sampling_rate: int) -> SignalCache | None:
    """The entry if it is complete and consistent with ``meta``; None if missing or unreadable."""
    try:
        index = json.loads((entry / "index.json").read_bytes())
        if index.get("format") != _FORMAT_VERSION:
            return None
        ecg_ids = np.asarray(index["ecg_ids"], dtype=np.int64)
        ok = np.asarray(index["ok"], dtype=bool)
        bad = tuple(BadRecord(**b) for b in index["bad_records"])
        warnings = tuple(RecordWarning(**w) for w in index.get("warnings", []))
        signals = np.load(entry / "signals.npy", mmap_mode="r")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # missing, or written by a crash / truncated copy / another version
    expected = (len(meta.records), len(LEADS), RECORD_SECONDS * sampling_rate)
    if (
        signals.shape != expected
        or signals.dtype != np.float16
        or ok.shape != (expected[0],)
        or not np.array_equal(ecg_ids, meta.records.index.to_numpy(dtype=np.int64))
    ):
        return None
    return SignalCache(
        path=entry,
        ecg_ids=ecg_ids,
        signals=signals,
        ok=ok,
        bad=bad,
        created=False,
        warnings=warnings,
    )


def _discard(path: Path) -> None:
    """Move ``path`` out of the way (atomic), then delete it; readers keep their open maps."""
    aside = path.with_name(f".{path.name}{_BROKEN_MARK}{os.getpid()}-{time.time_ns()}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    except OSError as e:
        raise DataError(f"{path}: cannot remove this cache entry: {e.strerror or e}") from None
    shutil.rmtree(aside, ignore_errors=True)


def _build(
    entry: Path,
    meta: Metadata,
    sampling_rate: int,
    on_bad_record: str,
    workers: int | None,
    progress: Progress | None,
) -> None:
    n = len(meta.records)
    t = RECORD_SECONDS * sampling_rate
    shape = (n, len(LEADS), t)
    needed = n * len(LEADS) * t * 2
    tmp = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}{_TMP_MARK}", dir=entry.parent))
        npy = tmp / "signals.npy"
        arr = np.lib.format.open_memmap(npy, mode="w+", dtype=np.float16, shape=shape)
        size = arr.offset + arr.nbytes
        del arr  # workers reopen it; the header is already on disk
        # Reserve every block now: writing through a memory map into a sparse file on a full
        # disk is a SIGBUS (no message, and a dead worker); a reservation fails with ENOSPC.
        _reserve(npy, size)
        bad, warnings = _decode_all(meta, sampling_rate, str(npy), workers, progress)
        if bad and on_bad_record == "error":
            _raise_bad(bad)
        bad_ids = {b.ecg_id for b in bad}
        ids = [int(i) for i in meta.records.index]
        index = {
            "format": _FORMAT_VERSION,
            "root": str(meta.root),
            "sampling_rate": sampling_rate,
            "created": time.time(),
            "ecg_ids": ids,
            "ok": [i not in bad_ids for i in ids],
            "bad_records": [b.as_dict() for b in bad],
            "warnings": [w.as_dict() for w in warnings],
        }
        _fsync_path(npy)  # the workers wrote through their own maps; make the data durable
        _write_durably(tmp / "index.json", json.dumps(index).encode())
        _fsync_path(tmp)
        os.rename(tmp, entry)
        tmp = None
        _fsync_path(entry.parent)  # the rename itself
    except OSError as e:
        raise DataError(_disk_error(entry.parent, e, needed)) from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _disk_error(cache_dir: Path, e: OSError, needed: int) -> str:
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        try:
            free = f", {shutil.disk_usage(cache_dir).free / 1e6:,.1f} MB free"
        except OSError:
            free = ""
        return (
            f"{cache_dir}: no space left to write the signal cache (it needs "
            f"{needed / 1e6:,.1f} MB{free}); free some space or point --cache-dir / "
            f"{CACHE_ENV} at a larger disk"
        )
    where = f" ({e.filename})" if e.filename else ""
    return f"{cache_dir}: cannot write the signal cache{where}: {e.strerror or e}"


def _reserve(path: Path, size: int) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        try:
            os.posix_fallocate(fd, 0, size)
            return
        except AttributeError:  # no posix_fallocate on this platform (macOS)
            pass
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
        # The file system cannot reserve: allocate by writing zeros (ENOSPC surfaces here).
        block = bytes(1 << 20)
        offset = 0
        while offset < size:
            offset += os.pwrite(fd, block[: min(len(block), size - offset)], offset)
    finally:
        os.close(fd)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


# ------------------------------------------------------------------------- housekeeping / prune


def _owner_of(name: str) -> str | None:
    """Entry name of a temporary (``.<entry>.tmp-*``) or discarded (``.<entry>.broken-*``) folder."""
    if not name.startswith("."):
        return None
    for mark in (_TMP_MARK, _BROKEN_MARK):
        if mark in name:
            return name[1:].rsplit(mark, 1)[0]
    return None


def _clean_stale_tmp(
    cache_dir: Path, held: str | None = None, max_age: float = STALE_TMP_S
) -> list[Path]:
    """Remove leftovers of crashed builds; returns what was removed.

    A temporary folder of the entry whose lock we hold (``held``) is always a leftover; others
    go once older than ``max_age`` seconds and their entry's lock is free (no build running).
    Half-deleted ``.broken-`` folders always go.
    """
    removed = []
    now = time.time()
    for p in cache_dir.iterdir():
        owner = _owner_of(p.name)
        if owner is None or not p.is_dir() or p.is_symlink():
            continue
        if _BROKEN_MARK in p.name or owner == held:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
            continue
        try:
            age = now - p.stat().st_mtime
        except OSError:
            continue
        if age < max_age:
            continue
        with try_file_lock(cache_dir / f"{owner}.lock") as free:
            if free:
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed


@dataclass(frozen=True)
class CacheEntry:
    """One entry of a cache folder, as ``ecg-sweep data cache --list`` shows it."""

    path: Path
    size_bytes: int
    last_used: float  # seconds since the epoch
    root: str | None
    sampling_rate: int | None
    records: int | None
    bad_records: int | None
    status: str  # current | stale: ... | unreadable | temporary[, recent...] | unknown: ...

    @property
    def removable(self) -> bool:
        """What ``--prune`` removes (unless its build lock is held)."""
        return self.status == "temporary" or self.status.startswith(("stale", "unreadable"))

    def as_dict(self) -> dict:
        return {
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "last_used": self.last_used,
            "root": self.root,
            "sampling_rate": self.sampling_rate,
            "records": self.records,
            "bad_records": self.bad_records,
            "status": self.status,
        }


def _tree_size(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        with contextlib.suppress(OSError):
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_blocks * 512
    return total


def list_entries(cache_dir: str | Path | None = None) -> list[CacheEntry]:
    """Every entry of ``cache_dir`` with its size, last use and whether its dataset still matches.

    An entry is ``current`` when its dataset folder still exists and still has the same
    fingerprint (same CSVs, same record files); ``stale: ...`` when the dataset changed, is gone,
    or the entry was written by another version; ``unreadable`` when its index cannot be read.
    """
    from ecg_sweep.data.ptbxl import load_metadata

    cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    if not cache_dir.is_dir():
        return []
    current_names: dict[tuple[str, int], str] = {}

    def current_name(root: str, rate: int) -> str:
        key = (root, rate)
        if key not in current_names:
            meta = load_metadata(root)
            current_names[key] = _entry_name(meta, rate, fingerprint(meta, rate))
        return current_names[key]

    entries = []
    for p in sorted(cache_dir.iterdir()):
        if not p.is_dir() or p.is_symlink():
            continue
        st = p.stat()
        if _owner_of(p.name) is not None:
            recent = _TMP_MARK in p.name and time.time() - st.st_mtime < STALE_TMP_S
            status = "temporary, recent (a build may be running)" if recent else "temporary"
            entries.append(
                CacheEntry(p, _tree_size(p), st.st_mtime, None, None, None, None, status)
            )
            continue
        root = rate = records = n_bad = None
        try:
            index = json.loads((p / "index.json").read_bytes())
            root, rate = str(index["root"]), int(index["sampling_rate"])
            records, n_bad = len(index["ecg_ids"]), len(index["bad_records"])
            fmt = index.get("format")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            status = "unreadable"
        else:
            if fmt != _FORMAT_VERSION:
                status = "stale: written by another ecg-sweep version"
            elif not Path(root).is_dir():
                status = "stale: dataset folder is gone"
            else:
                try:
                    status = (
                        "current"
                        if current_name(root, rate) == p.name
                        else "stale: dataset changed since"
                    )
                except (DataError, OSError) as e:
                    status = f"unknown: dataset unreadable ({str(e)[:80]})"
        entries.append(
            CacheEntry(p, _tree_size(p), st.st_mtime, root, rate, records, n_bad, status)
        )
    return entries


def prune_cache(
    cache_dir: str | Path | None = None,
    older_than_s: float | None = None,
    dry_run: bool = False,
) -> list[CacheEntry]:
    """Remove stale and unreadable entries and leftovers of crashed builds; return them.

    With ``older_than_s``, current entries not used for that long go too. Nothing whose build
    lock is held (being built right now) is touched. A process that has an entry memory-mapped
    keeps reading it (POSIX semantics); the next process that needs it rebuilds it.
    """
    cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    now = time.time()
    removed = []
    for e in list_entries(cache_dir):
        unused = older_than_s is not None and now - e.last_used > older_than_s
        if not (e.removable or (unused and e.status == "current")):
            continue
        owner = _owner_of(e.path.name) or e.path.name
        with try_file_lock(cache_dir / f"{owner}.lock") as free:
            if not free:
                continue
            if not dry_run:
                if e.status.startswith("temporary"):
                    shutil.rmtree(e.path, ignore_errors=True)
                else:
                    _discard(e.path)
        removed.append(e)
    if not dry_run:
        _remove_unused_locks(cache_dir)
    return removed


def _remove_unused_locks(cache_dir: Path) -> None:
    """Delete ``<entry>.lock`` files whose entry is gone (safe: see ``file_lock``)."""
    names = {p.name for p in cache_dir.iterdir()}
    for lock in cache_dir.glob("*.lock"):
        entry = lock.name[: -len(".lock")]
        if entry in names or any(_owner_of(n) == entry for n in names):
            continue
        with try_file_lock(lock) as free:
            if free:
                with contextlib.suppress(OSError):
                    lock.unlink()
