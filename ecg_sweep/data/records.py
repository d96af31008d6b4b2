"""Read and validate one WFDB record of PTB-XL.

PTB-XL records are all format 16 (little-endian int16, interleaved), 12 leads, 10 s. For that
case we parse the header ourselves and read the ``.dat`` with ``np.fromfile``: the same values
as ``wfdb.rdsamp`` (checked in the tests) at several times its speed. Anything else (another
format, byte offsets, skew) falls back to ``wfdb.rdsamp``, so unusual but valid files still load.

What a record may point at is fixed, whatever its header says: the signal is the record's own
``<name>.dat`` beside its ``<name>.hea``; both must be regular files (not a FIFO, a device or a
folder) and, when the dataset root is known, must not be symlinks leading out of the dataset. A
header is read with a size cap (real ones are under 1 KB). So a header cannot make one record
read another record's signal (train/test leakage) or an arbitrary file, nor hang the reader.
"""

from __future__ import annotations

import functools
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecg_sweep.data.ptbxl import LEADS, RECORD_SECONDS
from ecg_sweep.errors import DataError, clip

__all__ = [
    "RecordError",
    "Header",
    "MAX_HEADER_BYTES",
    "read_header",
    "read_record",
    "flat_leads",
]

# WFDB stores a missing sample in format 16 as the most negative int16 (wfdb reads it as NaN).
_WFDB_NAN_16 = -32768
# A PTB-XL header is about 0.7 KB (12 signal lines and a few comments); 64 KB is generous and
# still refuses a symlink to a huge file before anything is read into memory.
MAX_HEADER_BYTES = 64 * 1024
# O_NONBLOCK: opening a FIFO for reading must not wait for a writer (it is refused just after).
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class RecordError(DataError):
    """One record is missing or malformed; ``path`` names the record (without suffix)."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class Header:
    n_sig: int
    fs: float
    sig_len: int
    sig_names: tuple[str, ...]
    files: tuple[str, ...]
    fmts: tuple[str, ...]
    gains: tuple[float, ...]
    baselines: tuple[int, ...]

    @property
    def simple_format16(self) -> bool:
        """True when the .dat is plain interleaved int16 in one file (the fast path applies)."""
        return len(set(self.files)) == 1 and all(f == "16" for f in self.fmts)


def _parse_gain(token: str) -> tuple[float, int]:
    # "1000.0(0)/mV" | "1000.0/mV" | "1000" -> (gain, baseline); baseline defaults to ADC zero.
    # A gain of 0 ("uncalibrated" in WFDB) is kept as 0 here and refused by _check_header.
    gain_part = token.split("/", 1)[0]
    baseline = None
    if "(" in gain_part:
        gain_part, rest = gain_part.split("(", 1)
        baseline = int(rest.rstrip(")"))
    return float(gain_part), (0 if baseline is None else baseline)


@functools.lru_cache(maxsize=4096)
def _real_folder(folder: str) -> str:
    # One realpath per record folder (PTB-XL: 1,000 records per folder), not per file.
    return os.path.realpath(folder)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class _LeavesDataset(Exception):
    pass


def _open_following_inside(path: Path, root: Path | None) -> int:
    if _NOFOLLOW:
        try:
            return os.open(path, _OPEN_FLAGS | _NOFOLLOW)  # the common case: not a symlink
        except OSError:
            if not os.path.islink(path):
                raise
    real = os.path.realpath(path)
    if root is not None and not _inside(real, str(root)):
        raise _LeavesDataset
    return os.open(real, _OPEN_FLAGS)


def _open_checked(path: Path, record: Path, root: Path | None, what: str) -> tuple[int, int]:
    """Open ``path`` for reading if it is a regular file that stays inside ``root``.

    Returns ``(fd, size)``. A symlink is followed only when its target is inside ``root``; the
    record's folder itself must resolve inside ``root`` (a folder symlink out of the dataset is
    refused too). With ``root=None`` (a record given on its own, as ``predict`` does) symlinks
    may point anywhere, but the target must still be a regular file.
    """
    name = path.name  # the record's own file name (checked in ptbxl.load_metadata)
    if root is not None and not _inside(_real_folder(str(path.parent)), str(root)):
        raise RecordError(record, f"{what} {name} lies in a folder outside the dataset {root}")
    try:
        fd = _open_following_inside(path, root)
    except _LeavesDataset:
        raise RecordError(
            record, f"{what} {name} is a symlink leading out of the dataset: refused"
        ) from None
    except FileNotFoundError:
        raise RecordError(record, f"missing {what} {name}") from None
    except OSError as e:
        raise RecordError(record, f"cannot open {what} {name}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
    except OSError as e:
        os.close(fd)
        raise RecordError(record, f"cannot read {what} {name}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(st.st_mode)
            else "a device"
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
            else "a folder"
            if stat.S_ISDIR(st.st_mode)
            else "not a regular file"
        )
        raise RecordError(record, f"{what} {name} is {kind}, not a regular file: refused")
    return fd, st.st_size


def read_header(record: Path, root: Path | None = None) -> Header:
    """Parse ``<record>.hea`` (record line + one line per signal; comment lines skipped).

    The header must be a regular file of at most :data:`MAX_HEADER_BYTES` (see
    :func:`read_record` for ``root``).
    """
    hea = record.with_name(record.name + ".hea")
    fd, size = _open_checked(hea, record, root, "header file")
    try:
        if size > MAX_HEADER_BYTES:
            raise RecordError(
                record,
                f"header file {hea.name} is {size:,} bytes, more than the "
                f"{MAX_HEADER_BYTES:,} a header may have: refused",
            )
        data = os.read(fd, MAX_HEADER_BYTES + 1)
    except OSError as e:
        raise RecordError(
            record, f"cannot read header file {hea.name}: {e.strerror or e}"
        ) from None
    finally:
        os.close(fd)
    if len(data) > MAX_HEADER_BYTES:  # grew between fstat and read
        raise RecordError(record, f"header file {hea.name} is too large: refused")
    text = data.decode("latin-1")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    try:
        rec = lines[0].split()
        n_sig = int(rec[1])
        fs = float(rec[2].split("/")[0]) if len(rec) > 2 else 250.0
        sig_len = int(rec[3]) if len(rec) > 3 else 0
        sig_lines = [ln.split() for ln in lines[1 : 1 + n_sig]]
        if len(sig_lines) != n_sig:
            raise ValueError(f"declares {n_sig} signals but describes {len(sig_lines)}")
        files = tuple(s[0] for s in sig_lines)
        fmts = tuple(s[1] for s in sig_lines)
        gb = [_parse_gain(s[2]) if len(s) > 2 else (200.0, 0) for s in sig_lines]
        names = tuple(s[8] if len(s) > 8 else "" for s in sig_lines)
    except (IndexError, ValueError) as e:
        raise RecordError(record, f"unreadable header {hea.name}: {clip(e)}") from None
    return Header(
        n_sig=n_sig,
        fs=fs,
        sig_len=sig_len,
        sig_names=names,
        files=files,
        fmts=fmts,
        gains=tuple(g for g, _ in gb),
        baselines=tuple(b for _, b in gb),
    )


def _check_header(record: Path, h: Header, sampling_rate: int) -> None:
    expected_len = RECORD_SECONDS * sampling_rate
    if h.n_sig != len(LEADS):
        raise RecordError(record, f"header has {h.n_sig} leads, expected {len(LEADS)}")
    if not math.isfinite(h.fs) or h.fs <= 0:
        raise RecordError(record, f"header sampling rate {h.fs:g} Hz is not a positive number")
    if abs(h.fs - sampling_rate) > 1e-6:
        raise RecordError(record, f"header sampling rate {h.fs:g} Hz, expected {sampling_rate} Hz")
    if h.sig_len != expected_len:
        raise RecordError(record, f"header length {h.sig_len} samples, expected {expected_len}")
    if tuple(n.upper() for n in h.sig_names) != tuple(n.upper() for n in LEADS):
        raise RecordError(
            record, f"header leads {clip(' '.join(h.sig_names))}, expected {' '.join(LEADS)}"
        )
    for lead, gain in zip(LEADS, h.gains, strict=True):
        if not math.isfinite(gain) or gain <= 0:
            raise RecordError(
                record, f"header gain {gain:g} for lead {lead}: must be a positive finite number"
            )
    own = record.name + ".dat"
    for f in h.files:
        if f != own:
            raise RecordError(
                record,
                f"header names signal file {clip(f)}; a record's signal must be its own {own} "
                "beside its header: refused",
            )


def read_record(
    record: str | Path, sampling_rate: int, root: str | Path | None = None
) -> np.ndarray:
    """Read one record as float32 millivolts, shape (12, T), validated.

    Raises :class:`RecordError` naming the record for a missing or unreadable header or signal
    file, a header that disagrees with PTB-XL (lead count/names, sampling rate, length, gains),
    a header naming any signal file but the record's own ``.dat``, a header or signal that is not
    a regular file (or, given the dataset ``root``, a symlink leading out of it), a truncated
    ``.dat``, or missing/non-finite samples.
    """
    record = Path(record)
    real_root = Path(_real_folder(str(root))) if root is not None else None
    h = read_header(record, real_root)
    _check_header(record, h, sampling_rate)
    dat = record.with_name(record.name + ".dat")
    fd, size = _open_checked(dat, record, real_root, "signal file")
    if not h.simple_format16:
        os.close(fd)
        signal = _read_with_wfdb(record, h)
    else:
        with os.fdopen(fd, "rb") as fh:
            signal = _read_format16(fh, size, record, dat.name, h)
    if not np.isfinite(signal).all():
        raise RecordError(record, "non-finite (NaN or inf) samples")
    return signal


def _read_format16(fh, size: int, record: Path, name: str, h: Header) -> np.ndarray:
    expected = h.n_sig * h.sig_len * 2
    if size < expected:
        raise RecordError(
            record, f"truncated signal file {name}: {size} bytes, expected {expected}"
        )
    try:
        digital = np.fromfile(fh, dtype="<i2", count=h.n_sig * h.sig_len)
    except (OSError, ValueError) as e:
        raise RecordError(record, f"cannot read signal file {name}: {clip(e)}") from None
    if digital.size < h.n_sig * h.sig_len:  # shrank between fstat and read
        raise RecordError(record, f"truncated signal file {name}")
    if (digital == _WFDB_NAN_16).any():
        missing = digital.reshape(h.sig_len, h.n_sig) == _WFDB_NAN_16
        lead = LEADS[int(np.nonzero(missing.any(axis=0))[0][0])]
        raise RecordError(record, f"missing (NaN) samples in lead {lead}")
    # (T, 12) interleaved -> (12, T), copied C-contiguous once: the arithmetic below, the flat-lead
    # check and the copy into the cache then all run over contiguous rows (about 2x faster).
    digital = np.ascontiguousarray(digital.reshape(h.sig_len, h.n_sig).T)
    gains = np.asarray(h.gains, dtype=np.float32)[:, None]
    baselines = np.asarray(h.baselines, dtype=np.float32)[:, None]
    return (digital.astype(np.float32) - baselines) / gains


def flat_leads(signal: np.ndarray) -> tuple[str, ...]:
    """Names of the leads of a (12, T) record that are constant (a detached or dead electrode)."""
    flat = signal.max(axis=1) == signal.min(axis=1)
    return tuple(lead for lead, f in zip(LEADS, flat, strict=True) if f)


def _read_with_wfdb(record: Path, h: Header) -> np.ndarray:
    import wfdb

    try:
        values, _ = wfdb.rdsamp(str(record))
    except Exception as e:  # wfdb raises bare ValueError/IndexError etc. on malformed files
        raise RecordError(record, f"unreadable signal: {type(e).__name__}: {clip(e)}") from None
    if values.shape != (h.sig_len, h.n_sig):
        raise RecordError(record, f"signal shape {values.shape}, expected {(h.sig_len, h.n_sig)}")
    return np.ascontiguousarray(values.T, dtype=np.float32)
