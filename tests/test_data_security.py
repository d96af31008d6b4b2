"""Issue 12, data layer: each attack or fault reproduced, and the behaviour it must get.

Items: 2 (full disk / dead workers / lock waits / stale temp folders), 3 (headers pointing at
other files, symlinks, FIFOs, huge headers), 10 (corrupt gains and rates, flat leads), 11 (bad
ecg_id, huge cells), 12 (fsync, unreadable cache entries, ``data cache --list/--prune``). Item 8
(download) is in test_download.py.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ecg_sweep.data.ptbxl import load_metadata
from ecg_sweep.errors import DataError
from tests.conftest import run_cli

TEST_RECORD = "records100/06000/06381_lr"  # ecg_id 6381, strat_fold 10 (the test fold)


TRAIN_RECORD = "records100/00000/00841_lr"  # ecg_id 841, strat_fold 2 (training)


def _one_line(text: str, limit: int = 400) -> None:
    assert "\n" not in text and len(text) < limit, text[:500]


def _edit_db(root: Path, fn) -> None:
    db = root / "ptbxl_database.csv"
    df = pd.read_csv(db, dtype={"ecg_id": str})
    fn(df)
    df.to_csv(db, index=False)


@pytest.mark.parametrize(
    "value, message",
    [
        ("../../../etc/passwd", "leaves the dataset folder"),
        ("/etc/passwd", "leaves the dataset folder"),
        (TRAIN_RECORD, "name the same record"),
    ],
    ids=["dotdot", "absolute", "duplicate"],
)
def test_record_paths_in_the_csv_are_checked(real30_copy, value, message):
    _edit_db(
        real30_copy,
        lambda df: df.__setitem__(
            "filename_lr", df["filename_lr"].where(df["ecg_id"] != "6381", value)
        ),
    )
    with pytest.raises(DataError, match=message) as exc:
        load_metadata(real30_copy)
    _one_line(str(exc.value))
    assert "6381" in str(exc.value)


def test_non_numeric_ecg_id_is_one_line(real30_copy):
    """Before the fix: ValueError traceback, exit 1."""
    _edit_db(
        real30_copy, lambda df: df.__setitem__("ecg_id", df["ecg_id"].where(df.index != 3, "12a"))
    )
    with pytest.raises(DataError, match=r"ecg_id must be a whole number; data row 4 has '12a'"):
        load_metadata(real30_copy)
    r = run_cli("data", "inspect", str(real30_copy))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "'12a'" in lines[0]


def test_huge_cell_gives_a_short_line(real30_copy):
    """Before the fix: a 400 KB scp_codes value came back as a 400 KB "one-line" error."""
    huge = "{'NORM': " + "1" * 400_000
    _edit_db(
        real30_copy,
        lambda df: df.__setitem__("scp_codes", df["scp_codes"].where(df.index != 3, huge)),
    )
    with pytest.raises(DataError) as exc:
        load_metadata(real30_copy)
    msg = str(exc.value)
    _one_line(msg, 400)
    assert "ecg_id 3403" in msg and "400,009 characters" in msg
    r = run_cli("data", "inspect", str(real30_copy))
    assert r.returncode == 2 and len(r.stderr) < 500 and "Traceback" not in r.stderr
