"""Read and validate one WFDB record of PTB-XL.

PTB-XL records are all format 16 (little-endian int16, interleaved), 12 leads, 10 s. For that
case we parse the header ourselves and read the ``.dat`` with ``np.fromfile``: the same values
as ``wfdb.rdsamp`` (checked in the tests) at several times its speed. Anything else (another
format, byte offsets, skew) falls back to ``wfdb.rdsamp``, so unusual but valid files still load.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecg_sweep.data.ptbxl import LEADS, RECORD_SECONDS
from ecg_sweep.errors import DataError

__all__ = ["RecordError", "Header", "read_header", "read_record"]

# WFDB stores a missing sample in format 16 as the most negative int16 (wfdb reads it as NaN).
_WFDB_NAN_16 = -32768


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
    gain_part = token.split("/", 1)[0]
    baseline = None
    if "(" in gain_part:
        gain_part, rest = gain_part.split("(", 1)
        baseline = int(rest.rstrip(")"))
    gain = float(gain_part)
    return (gain if gain != 0 else 200.0), (0 if baseline is None else baseline)


def read_header(record: Path) -> Header:
    """Parse ``<record>.hea`` (record line + one line per signal; comment lines skipped)."""
    hea = record.with_name(record.name + ".hea")
    try:
        text = hea.read_text(encoding="latin-1")
    except FileNotFoundError:
        raise RecordError(record, f"missing header file {hea.name}") from None
    except OSError as e:
        raise RecordError(record, f"cannot read header file {hea.name}: {e.strerror}") from None
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
        raise RecordError(record, f"unreadable header {hea.name}: {e}") from None
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
    if abs(h.fs - sampling_rate) > 1e-6:
        raise RecordError(record, f"header sampling rate {h.fs:g} Hz, expected {sampling_rate} Hz")
    if h.sig_len != expected_len:
        raise RecordError(record, f"header length {h.sig_len} samples, expected {expected_len}")
    if tuple(n.upper() for n in h.sig_names) != tuple(n.upper() for n in LEADS):
        raise RecordError(
            record, f"header leads {' '.join(h.sig_names)}, expected {' '.join(LEADS)}"
        )


def read_record(record: str | Path, sampling_rate: int) -> np.ndarray:
    """Read one record as float32 millivolts, shape (12, T), validated.

    Raises :class:`RecordError` naming the record for a missing or unreadable header or signal
    file, a header that disagrees with PTB-XL (lead count/names, sampling rate, length), a
    truncated ``.dat``, or missing/non-finite samples.
    """
    record = Path(record)
    h = read_header(record)
    _check_header(record, h, sampling_rate)
    dat = record.parent / h.files[0]
    if not dat.is_file():
        raise RecordError(record, f"missing signal file {dat.name}")
    if h.simple_format16:
        expected = h.n_sig * h.sig_len * 2
        size = dat.stat().st_size
        if size < expected:
            raise RecordError(
                record, f"truncated signal file {dat.name}: {size} bytes, expected {expected}"
            )
        digital = np.fromfile(dat, dtype="<i2", count=h.n_sig * h.sig_len)
        digital = digital.reshape(h.sig_len, h.n_sig).T  # (T, 12) interleaved -> (12, T)
        missing = digital == _WFDB_NAN_16
        if missing.any():
            lead = LEADS[int(np.nonzero(missing.any(axis=1))[0][0])]
            raise RecordError(record, f"missing (NaN) samples in lead {lead}")
        gains = np.asarray(h.gains, dtype=np.float32)[:, None]
        baselines = np.asarray(h.baselines, dtype=np.float32)[:, None]
        signal = (digital.astype(np.float32) - baselines) / gains
    else:
        signal = _read_with_wfdb(record, h)
    if not np.isfinite(signal).all():
        raise RecordError(record, "non-finite (NaN or inf) samples")
    return signal


def _read_with_wfdb(record: Path, h: Header) -> np.ndarray:
    import wfdb

    try:
        values, _ = wfdb.rdsamp(str(record))
    except Exception as e:  # wfdb raises bare ValueError/IndexError etc. on malformed files
        raise RecordError(record, f"unreadable signal: {type(e).__name__}: {e}") from None
    if values.shape != (h.sig_len, h.n_sig):
        raise RecordError(record, f"signal shape {values.shape}, expected {(h.sig_len, h.n_sig)}")
    return np.ascontiguousarray(values.T, dtype=np.float32)
