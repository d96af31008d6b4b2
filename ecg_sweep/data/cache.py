"""Decoded-signal cache: decode every record once, then memory-map it from every process.

Layout of one cache entry (a folder under the cache dir, never inside the dataset)::

    <cache_dir>/<dataset-name>-<sr>hz-<fingerprint[:16]>/
        signals.npy   float16 (N, 12, T) millivolts, N = every row of ptbxl_database.csv
        index.json    ecg_ids, which rows decoded, the bad records and their errors

The fingerprint covers the resolved root, the sampling rate, the bytes of both CSVs and the
size and mtime of every record file, so editing or replacing any file makes a new entry. An
entry is built in a temporary folder and renamed into place (atomic on POSIX), under an
exclusive lock so concurrent workers decode once and the others wait and reuse it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing as mp
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecg_sweep._locks import file_lock
from ecg_sweep.data.ptbxl import DATABASE_CSV, LEADS, RECORD_SECONDS, STATEMENTS_CSV, Metadata
from ecg_sweep.data.records import RecordError, read_record
from ecg_sweep.errors import DataError

__all__ = [
    "SignalCache",
    "BadRecord",
    "default_cache_dir",
    "load_signals",
    "fingerprint",
    "scan_records",
]

CACHE_ENV = "ECG_SWEEP_CACHE"
_FORMAT_VERSION = 1
# Below this many records a process pool costs more than it saves.
_PARALLEL_MIN_RECORDS = 400
_CHUNK = 256

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class BadRecord:
    ecg_id: int
    path: str
    error: str

    def as_dict(self) -> dict:
        return {"ecg_id": self.ecg_id, "path": self.path, "error": self.error}


@dataclass(frozen=True)
class SignalCache:
    """A loaded cache entry. ``signals`` is a read-only memmap; ``ok[i]`` is False for bad rows."""

    path: Path
    ecg_ids: np.ndarray  # (N,) int64, sorted
    signals: np.ndarray  # (N, 12, T) float16 memmap
    ok: np.ndarray  # (N,) bool
    bad: tuple[BadRecord, ...]
    created: bool  # True when this call decoded the records
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
            except FileNotFoundError:
                h.update(f"{rel}{suffix}:missing;".encode())
    return h.hexdigest()


def _entry_name(meta: Metadata, sampling_rate: int, fp: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", meta.root.name)[:40] or "dataset"
    return f"{slug}-{sampling_rate}hz-{fp[:16]}"


def _decode_chunk(args: tuple) -> list[tuple[int, str]]:
    """Worker: decode rows ``start:stop`` into the shared .npy; return (row, error) of bad ones."""
    npy_path, root, rels, start, sampling_rate = args
    out = np.load(npy_path, mmap_mode="r+") if npy_path else None
    bad = []
    for i, rel in enumerate(rels, start=start):
        try:
            x = read_record(Path(root) / rel, sampling_rate)
        except RecordError as e:
            bad.append((i, e.reason))
            continue
        if out is not None:
            out[i] = x
    if out is not None:
        out.flush()
    return bad


def _decode_all(
    meta: Metadata,
    sampling_rate: int,
    npy_path: str | None,
    workers: int | None,
    progress: Progress | None,
) -> list[BadRecord]:
    rels = list(meta.records[_record_column(sampling_rate)].astype(str))
    n = len(rels)
    jobs = [
        (npy_path, str(meta.root), rels[s : s + _CHUNK], s, sampling_rate)
        for s in range(0, n, _CHUNK)
    ]
    workers = workers or os.cpu_count() or 1
    bad_rows: list[tuple[int, str]] = []
    done = 0
    if workers > 1 and n >= _PARALLEL_MIN_RECORDS:
        # fork: workers inherit nothing they need beyond the args; no torch state is touched.
        ctx = mp.get_context("fork")
        with ctx.Pool(workers) as pool:
            for job, result in zip(jobs, pool.imap(_decode_chunk, jobs), strict=True):
                bad_rows.extend(result)
                done += len(job[2])
                if progress:
                    progress(done, n)
    else:
        for job in jobs:
            bad_rows.extend(_decode_chunk(job))
            done += len(job[2])
            if progress:
                progress(done, n)
    ids = meta.records.index.to_numpy()
    return [BadRecord(int(ids[i]), str(meta.root / rels[i]), err) for i, err in sorted(bad_rows)]


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
    return _decode_all(meta, sampling_rate, None, workers, progress)


def load_signals(
    meta: Metadata,
    sampling_rate: int,
    cache_dir: str | Path | None = None,
    on_bad_record: str = "error",
    workers: int | None = None,
    progress: Progress | None = None,
) -> SignalCache:
    """Return the cache entry for ``meta`` at ``sampling_rate``, decoding it first if needed.

    ``on_bad_record="error"`` raises :class:`DataError` naming the first bad record and writes
    no cache; ``"skip"`` keeps going and records the bad ones in the entry.
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
    fp = fingerprint(meta, sampling_rate)
    entry = cache_dir / _entry_name(meta, sampling_rate, fp)
    created = False
    if not (entry / "index.json").is_file():
        with file_lock(cache_dir / f"{entry.name}.lock"):
            if not (entry / "index.json").is_file():  # another worker may have built it meanwhile
                _build(entry, meta, sampling_rate, on_bad_record, workers, progress)
                created = True
    return dataclasses.replace(_open(entry, meta, on_bad_record, created), fingerprint=fp)


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
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.tmp-", dir=entry.parent))
    try:
        npy = tmp / "signals.npy"
        arr = np.lib.format.open_memmap(npy, mode="w+", dtype=np.float16, shape=(n, len(LEADS), t))
        del arr  # workers reopen it; the header is already on disk
        bad = _decode_all(meta, sampling_rate, str(npy), workers, progress)
        if bad and on_bad_record == "error":
            _raise_bad(bad)
        bad_ids = {b.ecg_id for b in bad}
        ids = [int(i) for i in meta.records.index]
        index = {
            "format": _FORMAT_VERSION,
            "root": str(meta.root),
            "sampling_rate": sampling_rate,
            "ecg_ids": ids,
            "ok": [i not in bad_ids for i in ids],
            "bad_records": [b.as_dict() for b in bad],
        }
        (tmp / "index.json").write_text(json.dumps(index))
        os.rename(tmp, entry)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _open(entry: Path, meta: Metadata, on_bad_record: str, created: bool) -> SignalCache:
    index = json.loads((entry / "index.json").read_text())
    bad = tuple(BadRecord(**b) for b in index["bad_records"])
    if bad and on_bad_record == "error":
        _raise_bad(bad)
    signals = np.load(entry / "signals.npy", mmap_mode="r")
    return SignalCache(
        path=entry,
        ecg_ids=np.asarray(index["ecg_ids"], dtype=np.int64),
        signals=signals,
        ok=np.asarray(index["ok"], dtype=bool),
        bad=bad,
        created=created,
    )
