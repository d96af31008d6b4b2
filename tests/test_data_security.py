"""Issue 12, data layer: each attack or fault reproduced, and the behaviour it must get.

Items: 2 (full disk / dead workers / lock waits / stale temp folders), 3 (headers pointing at
other files, symlinks, FIFOs, huge headers), 10 (corrupt gains and rates, flat leads), 11 (bad
ecg_id, huge cells), 12 (fsync, unreadable cache entries, ``data cache --list/--prune``). Item 8
(download) is in test_download.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from ecg_sweep._locks import file_lock
from ecg_sweep.config import DataConfig
from ecg_sweep.data.dataset import prepare
from ecg_sweep.data.inspect import inspect_dataset
from ecg_sweep.data.ptbxl import load_metadata
from ecg_sweep.data.records import read_record
from ecg_sweep.errors import DataError
from tests.conftest import REPO, run_cli

TEST_RECORD = "records100/06000/06381_lr"  # ecg_id 6381, strat_fold 10 (the test fold)


TRAIN_RECORD = "records100/00000/00841_lr"  # ecg_id 841, strat_fold 2 (training)


def _hea(root: Path, rel: str) -> Path:
    return root / (rel + ".hea")


def _dat(root: Path, rel: str) -> Path:
    return root / (rel + ".dat")


def _edit_header(root: Path, rel: str, edit) -> None:
    hea = _hea(root, rel)
    lines = hea.read_text().splitlines()
    hea.write_text("\n".join(edit(lines)) + "\n")


def _signal_files(name: str):
    """Header edit: every signal line names ``name`` as its file."""

    def edit(lines):
        return [lines[0]] + [
            " ".join([name, *ln.split()[1:]]) if not ln.startswith("#") else ln for ln in lines[1:]
        ]

    return edit


def _one_line(text: str, limit: int = 400) -> None:
    assert "\n" not in text and len(text) < limit, text[:500]


def _no_entries(cache: Path) -> bool:
    return not cache.exists() or [p for p in cache.iterdir() if not p.name.endswith(".lock")] == []


@pytest.mark.parametrize(
    "target",
    ["../00000/00841_lr.dat", "00841_lr.dat", "ABSOLUTE"],
    ids=["other-record-relative", "other-record-name", "absolute-outside"],
)
def test_header_naming_another_file_is_refused(real30_copy, tmp_path, target):
    """A test record whose header names a training record's .dat (or any file) is refused.

    Before the fix, record 6381 (fold 10) was cached with record 841's signal: leakage.
    """
    outside = tmp_path / "outside.dat"
    outside.write_bytes(_dat(real30_copy, TRAIN_RECORD).read_bytes())
    if target == "00841_lr.dat":  # a copy of 841 under its name in 6381's folder
        (real30_copy / "records100/06000/00841_lr.dat").write_bytes(outside.read_bytes())
    name = str(outside) if target == "ABSOLUTE" else target
    _edit_header(real30_copy, TEST_RECORD, _signal_files(name))
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as exc:
        prepare(DataConfig(root=real30_copy, cache_dir=cache))
    msg = str(exc.value)
    _one_line(msg, 600)
    assert "06381_lr" in msg and "its own 06381_lr.dat" in msg
    assert _no_entries(cache)
    # inspect lists it as bad; the skip policy drops it instead of caching 841's signal
    bad = inspect_dataset(real30_copy)["bad_records"]
    assert [b["ecg_id"] for b in bad] == [6381]
    data = prepare(DataConfig(root=real30_copy, cache_dir=cache, on_bad_record="skip"))
    assert 6381 not in data.test.ecg_ids


def test_dat_symlink_leaving_the_dataset_is_refused(real30_copy, tmp_path):
    dat = _dat(real30_copy, TEST_RECORD)
    outside = tmp_path / "elsewhere" / dat.name
    outside.parent.mkdir()
    outside.write_bytes(dat.read_bytes())
    dat.unlink()
    dat.symlink_to(outside)
    with pytest.raises(DataError, match="symlink leading out of the dataset") as exc:
        read_record(real30_copy / TEST_RECORD, 100, root=real30_copy)
    _one_line(str(exc.value))
    # A symlink that stays inside the dataset is fine (e.g. files deduplicated by a tool).
    inside = real30_copy / "store" / dat.name
    inside.parent.mkdir()
    outside.rename(inside)
    dat.unlink()
    dat.symlink_to(inside)
    x = read_record(real30_copy / TEST_RECORD, 100, root=real30_copy)
    assert x.shape == (12, 1000)


def test_record_folder_symlinked_out_of_the_dataset_is_refused(real30_copy, tmp_path):
    folder = real30_copy / "records100/06000"
    moved = tmp_path / "moved-06000"
    folder.rename(moved)
    folder.symlink_to(moved, target_is_directory=True)
    with pytest.raises(DataError, match="outside the dataset"):
        read_record(real30_copy / TEST_RECORD, 100, root=real30_copy)


def _limit_memory() -> None:
    import resource

    # Reading /dev/zero or a 2 GB header into memory (what the reader did before the fix) must
    # end in a MemoryError in the child, not in the OOM killer picking a process on the machine.
    resource.setrlimit(resource.RLIMIT_AS, (4 * 1024**3, 4 * 1024**3))


def _run_limited(code: str, *args: object, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``python -c code args`` with 4 GB of address space and a timeout (a FIFO hangs)."""
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO), "OPENBLAS_NUM_THREADS": "1"},
        preexec_fn=_limit_memory,
    )


def _make_fifo(p: Path) -> None:
    p.unlink()
    os.mkfifo(p)


def _make_dev_zero(p: Path) -> None:
    p.unlink()
    p.symlink_to("/dev/zero")


def _make_huge(p: Path) -> None:
    with open(p, "r+b") as fh:  # 2 GB, sparse: costs no disk
        fh.truncate(2 * 1024**3)


def _make_folder(p: Path) -> None:
    p.unlink()
    p.mkdir()


@pytest.mark.parametrize("suffix", [".hea", ".dat"])
@pytest.mark.parametrize(
    "make, message",
    [
        (_make_fifo, "is a FIFO"),
        (_make_dev_zero, "symlink leading out of the dataset"),
        (_make_huge, None),
        (_make_folder, "is a folder"),
    ],
    ids=["fifo", "dev-zero", "huge", "folder"],
)
def test_special_files_are_refused_quickly(real30_copy, tmp_path, suffix, make, message):
    """Before the fix: a FIFO header hung the reader; /dev/zero or a huge file -> MemoryError."""
    target = real30_copy / (TEST_RECORD + suffix)
    make(target)
    expected_bad = [6381]
    if message is None:  # huge
        if suffix == ".hea":
            message = "more than the 65,536 a header may have"
        else:  # only the declared 24,000 bytes of a huge .dat are read: nothing wrong with it
            expected_bad = []
    code = (
        "import sys, json; from ecg_sweep.data.inspect import inspect_dataset; "
        "r = inspect_dataset(sys.argv[1], workers=1); print(json.dumps(r['bad_records']))"
    )
    t = time.perf_counter()
    r = _run_limited(code, real30_copy)
    assert r.returncode == 0, r.stderr[-2000:]
    assert time.perf_counter() - t < 60
    bad = json.loads(r.stdout)
    assert [b["ecg_id"] for b in bad] == expected_bad, bad
    if expected_bad:
        _one_line(bad[0]["error"])
        assert message in bad[0]["error"]


def test_special_files_refused_without_a_root_too(real30_copy):
    """``predict`` reads records given on their own (no dataset root): still regular files only."""
    _make_dev_zero(_hea(real30_copy, TEST_RECORD))
    code = (
        "import sys; from ecg_sweep.data.records import read_record; "
        "from ecg_sweep.errors import DataError\n"
        "try: read_record(sys.argv[1], 100)\n"
        "except DataError as e: print(e)"
    )
    r = _run_limited(code, real30_copy / TEST_RECORD)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "is a device, not a regular file" in r.stdout


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


def _set_gain(value: str):
    def edit(lines):
        out = [lines[0]]
        for i, ln in enumerate(lines[1:]):
            parts = ln.split()
            if i == 4 and not ln.startswith("#"):
                parts[2] = f"{value}(0)/mV"
            out.append(" ".join(parts))
        return out

    return edit


def _set_fs(value: str):
    def edit(lines):
        parts = lines[0].split()
        parts[2] = value
        return [" ".join(parts), *lines[1:]]

    return edit


@pytest.mark.parametrize(
    "edit, message",
    [
        (_set_gain("inf"), "header gain inf for lead aVL"),
        (_set_gain("nan"), "header gain nan for lead aVL"),
        (_set_gain("0"), "header gain 0 for lead aVL"),
        (_set_gain("-1000.0"), "header gain -1000 for lead aVL"),
        (_set_fs("nan"), "header sampling rate nan Hz is not a positive number"),
        (_set_fs("inf"), "header sampling rate inf Hz is not a positive number"),
    ],
    ids=["gain-inf", "gain-nan", "gain-0", "gain-negative", "fs-nan", "fs-inf"],
)
def test_non_finite_or_zero_gain_and_rate_are_refused(real30_copy, tmp_path, edit, message):
    """Before the fix: gain inf cached an all-zero lead, gain 0 became 200, fs=nan passed."""
    _edit_header(real30_copy, TEST_RECORD, edit)
    with pytest.raises(DataError) as exc:
        prepare(DataConfig(root=real30_copy, cache_dir=tmp_path / "cache"))
    assert message in str(exc.value) and "06381_lr" in str(exc.value)
    _one_line(str(exc.value))
    assert _no_entries(tmp_path / "cache")


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


def test_huge_header_token_gives_a_short_line(real30_copy):
    _edit_header(real30_copy, TEST_RECORD, _set_fs("x" * 50_000))
    with pytest.raises(DataError) as exc:
        read_record(real30_copy / TEST_RECORD, 100, root=real30_copy)
    _one_line(str(exc.value), 400)


def test_lock_file_deleted_while_waiting_is_not_shared(tmp_path):
    """A waiter that wins the lock on a lock file just deleted (by --prune) locks the new file."""
    lock = tmp_path / "x.lock"
    got = threading.Event()
    order = []

    def waiter():
        with file_lock(lock):
            order.append("waiter")
            got.set()
            time.sleep(0.2)
            order.append("waiter done")

    with file_lock(lock):
        t = threading.Thread(target=waiter, daemon=True)
        t.start()
        time.sleep(0.2)
        lock.unlink()  # prune deletes the unused lock file while holding it
    assert got.wait(10)
    with file_lock(lock):  # must wait for the waiter, which holds the new file
        order.append("third")
    t.join(10)
    assert order == ["waiter", "waiter done", "third"]
