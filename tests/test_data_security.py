"""Issue 12, data layer: each attack or fault reproduced, and the behaviour it must get.

Items: 2 (full disk / dead workers / lock waits / stale temp folders), 3 (headers pointing at
other files, symlinks, FIFOs, huge headers), 10 (corrupt gains and rates, flat leads), 11 (bad
ecg_id, huge cells), 12 (fsync, unreadable cache entries, ``data cache --list/--prune``). Item 8
(download) is in test_download.py.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import ecg_sweep.data.cache as cache_mod
from ecg_sweep._locks import file_lock
from ecg_sweep.config import DataConfig
from ecg_sweep.data.cache import list_entries, load_signals, prune_cache
from ecg_sweep.data.dataset import prepare
from ecg_sweep.data.inspect import inspect_dataset
from ecg_sweep.data.ptbxl import load_metadata
from ecg_sweep.data.records import read_record
from ecg_sweep.errors import DataError, EcgSweepError, LockTimeoutError
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


# ---------------------------------------------------------------- item 3: what a record may read


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


# ------------------------------------------------------------------- item 10: corrupt signals


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


def _flatten_lead(root: Path, rel: str, lead: int, value: int = 0) -> None:
    dat = _dat(root, rel)
    x = np.fromfile(dat, dtype="<i2").reshape(-1, 12)
    x[:, lead] = value
    x.tofile(dat)


def test_flat_leads_are_reported_by_inspect(real30_copy, tmp_path, caplog):
    _flatten_lead(real30_copy, TEST_RECORD, 8)  # V3 all zero
    _flatten_lead(real30_copy, TRAIN_RECORD, 0, 123)  # lead I constant, not zero
    _flatten_lead(real30_copy, TRAIN_RECORD, 11, -5)
    r = run_cli("data", "inspect", str(real30_copy), "--json")
    assert r.returncode == 0, r.stderr  # a warning, not a bad record
    report = json.loads(r.stdout)
    assert report["bad_records"] == []
    warned = {w["ecg_id"]: w["warning"] for w in report["warnings"]}
    assert warned == {
        841: "flat lead(s) I, V6: constant signal",
        6381: "flat lead(s) V3: constant signal",
    }
    r = run_cli("data", "inspect", str(real30_copy))
    assert r.returncode == 0 and "warning: record 6381" in r.stdout
    with caplog.at_level("WARNING"):
        data = prepare(DataConfig(root=real30_copy, cache_dir=tmp_path / "cache"))
    assert "2 record(s) kept despite a warning" in caplog.text
    assert 6381 in data.test.ecg_ids


# ------------------------------------------------------------ item 11: short one-line errors


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


# ------------------------------------------------------- item 2: full disk, dead workers, locks


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    return r.returncode == 0


_BUILD = """
import sys
from ecg_sweep.data.cache import load_signals
from ecg_sweep.data.ptbxl import load_metadata
from ecg_sweep.errors import EcgSweepError
try:
    load_signals(load_metadata(sys.argv[1]), 100, sys.argv[2], workers=int(sys.argv[3]))
except EcgSweepError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
print("built")
"""


def _build_in_subprocess(
    root: Path, cache: Path, workers: int, timeout: float = 120, script=_BUILD
):
    return subprocess.run(
        [sys.executable, "-c", script, str(root), str(cache), str(workers)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


@pytest.mark.parametrize("workers", [1, 2], ids=["serial", "parallel"])
def test_full_disk_on_a_real_small_tmpfs(real30, synth_sweep, tmp_path, workers):
    """The reported fault itself: Bus error (serial) / a hang (parallel) on a full tmpfs.

    Needs mount privileges (root); CI without them runs the patched tests below instead.
    """
    cache = tmp_path / "full"
    if not _tmpfs(cache, "256k"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        root = real30 if workers == 1 else synth_sweep  # >= 400 records: the parallel path
        r = _build_in_subprocess(root, cache, workers, timeout=120)
        assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "no space left to write the signal cache" in lines[0]
        assert str(cache) in lines[0]
        assert _no_entries(cache), list(cache.iterdir())  # no temp folder left behind
    finally:
        subprocess.run(["umount", "-l", str(cache)], check=False)


def test_no_space_when_reserving_is_one_line(real30, tmp_path, monkeypatch):
    """Without mount rights: the reservation fails the way posix_fallocate does on a full disk."""

    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    with pytest.raises(DataError, match="no space left to write the signal cache") as exc:
        load_signals(load_metadata(real30), 100, tmp_path)
    _one_line(str(exc.value))
    assert "MB" in str(exc.value)
    assert _no_entries(tmp_path)
    # the lock was released: a later build succeeds at once
    monkeypatch.undo()
    assert load_signals(load_metadata(real30), 100, tmp_path, lock_timeout=5).created


def test_cache_reserves_its_whole_size_before_decoding(real30, tmp_path, monkeypatch):
    calls = []
    real = os.posix_fallocate

    def spy(fd, offset, length):
        calls.append((offset, length))
        return real(fd, offset, length)

    monkeypatch.setattr(os, "posix_fallocate", spy)
    c = load_signals(load_metadata(real30), 100, tmp_path)
    size = (c.path / "signals.npy").stat().st_size
    assert calls == [(0, size)]
    assert os.stat(c.path / "signals.npy").st_blocks * 512 >= size  # really allocated, not sparse


_DYING_WORKERS = """
import os, signal, sys
import ecg_sweep.data.cache as cache
from ecg_sweep.data.ptbxl import load_metadata
from ecg_sweep.errors import EcgSweepError

def die(args):  # what a SIGBUS on a full disk (or the OOM killer) does to a worker
    os.kill(os.getpid(), signal.SIGKILL)

cache._decode_chunk = die
try:
    cache.load_signals(load_metadata(sys.argv[1]), 100, sys.argv[2], workers=int(sys.argv[3]))
except EcgSweepError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
"""


def test_dead_decode_workers_end_the_build_instead_of_hanging(synth_sweep, tmp_path):
    """Before the fix (multiprocessing.Pool): the parent waited forever, holding the lock."""
    cache = tmp_path / "cache"
    try:
        r = _build_in_subprocess(synth_sweep, cache, 2, timeout=90, script=_DYING_WORKERS)
    except subprocess.TimeoutExpired:
        pytest.fail("the cache build hung after its workers died")
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "worker process died" in lines[0], lines
    assert _no_entries(cache)


_SLOW_WORKERS = """
import sys, time
import ecg_sweep.data.cache as cache
from ecg_sweep.data.ptbxl import load_metadata

def slow(args):
    time.sleep(60)
    return [], []

cache._decode_chunk = slow
try:
    cache.load_signals(load_metadata(sys.argv[1]), 100, sys.argv[2], workers=2)
except KeyboardInterrupt:
    print("error: interrupted", file=sys.stderr)
    sys.exit(130)
"""


def test_ctrl_c_ends_a_parallel_build_promptly_and_leaves_nothing(synth_sweep, tmp_path):
    """A guard more than a reproduction: Ctrl-C (SIGINT to the terminal's process group)."""
    import signal

    cache = tmp_path / "cache"
    p = subprocess.Popen(
        [sys.executable, "-c", _SLOW_WORKERS, str(synth_sweep), str(cache)],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (cache.is_dir() and any(".tmp-" in q.name for q in cache.iterdir())):
            assert time.monotonic() < deadline and p.poll() is None, "the build did not start"
            time.sleep(0.1)
        time.sleep(1.0)  # the workers are inside their (60 s) chunks now
        t = time.monotonic()
        os.killpg(p.pid, signal.SIGINT)
        _, err = p.communicate(timeout=120)
        # Before the workers' 60 s chunks end: the parent did not wait for them (generous
        # margin: a loaded 2-core machine slows process teardown several-fold).
        assert time.monotonic() - t < 50
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode == 130, err[-2000:]
    assert "error: interrupted" in err
    assert _no_entries(cache)


def test_waiting_for_the_cache_lock_times_out_with_a_clear_line(real30, tmp_path, monkeypatch):
    """Before the fix a waiter blocked forever; now it gives up and names the lock and holder."""
    meta = load_metadata(real30)
    name = cache_mod._entry_name(meta, 100, cache_mod.fingerprint(meta, 100))
    lock = tmp_path / f"{name}.lock"
    monkeypatch.setenv("ECG_SWEEP_LOCK_TIMEOUT", "0.5")
    result: dict = {}

    def waiter():
        try:
            load_signals(meta, 100, tmp_path)
            result["ok"] = True
        except EcgSweepError as e:
            result["error"] = e

    with file_lock(lock):  # another process building (a second open file: flock conflicts)
        t = threading.Thread(target=waiter, daemon=True)
        t.start()
        t.join(20)
        assert not t.is_alive(), "load_signals waited for the lock without a timeout"
    err = result.get("error")
    assert isinstance(err, LockTimeoutError), result
    assert str(lock) in str(err) and f"held by process {os.getpid()}" in str(err)
    _one_line(str(err))
    assert load_signals(meta, 100, tmp_path).created  # free again


def test_stale_temp_folders_are_cleaned_up(real30, tmp_path):
    meta = load_metadata(real30)
    name = cache_mod._entry_name(meta, 100, cache_mod.fingerprint(meta, 100))
    own = tmp_path / f".{name}.tmp-crashed"  # a crashed build of this very entry
    old = tmp_path / ".other-100hz-0123456789abcdef.tmp-old"  # another entry's, 2 h old
    young = tmp_path / ".other-100hz-0123456789abcdef.tmp-young"  # maybe a build right now
    for p in (own, old, young):
        p.mkdir()
        (p / "signals.npy").write_bytes(b"\0" * 1000)
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    load_signals(meta, 100, tmp_path)
    assert not own.exists() and not old.exists()
    assert young.exists()


def test_a_build_in_progress_keeps_its_temp_folder(real30, tmp_path):
    """An old temp folder whose entry lock is held belongs to a live build: left alone."""
    busy = tmp_path / ".busy-100hz-0123456789abcdef.tmp-x"
    busy.mkdir()
    os.utime(busy, (0, 0))
    with file_lock(tmp_path / "busy-100hz-0123456789abcdef.lock"):
        load_signals(load_metadata(real30), 100, tmp_path)
        assert busy.exists()
        assert prune_cache(tmp_path) == []
    assert [e.path for e in prune_cache(tmp_path)] == [busy]


# ---------------------------------------------- item 12: durable writes, unreadable entries


def _record_syscalls(monkeypatch) -> list[tuple[str, str]]:
    """Log fsync (of which path) and rename/replace calls, in order."""
    events: list[tuple[str, str]] = []
    real_fsync, real_rename, real_replace = os.fsync, os.rename, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def rename(a, b, *args, **kw):
        events.append(("rename", str(b)))
        return real_rename(a, b, *args, **kw)

    def replace(a, b, *args, **kw):
        events.append(("rename", str(b)))
        return real_replace(a, b, *args, **kw)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "replace", replace)
    return events


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_cache_entry_is_fsynced_before_and_after_the_rename(real30, tmp_path, monkeypatch):
    events = _record_syscalls(monkeypatch)
    c = load_signals(load_metadata(real30), 100, tmp_path)
    renames = [i for i, e in enumerate(events) if e == ("rename", str(c.path))]
    assert len(renames) == 1
    before = {Path(p).name for kind, p in events[: renames[0]] if kind == "fsync"}
    assert {"signals.npy", "index.json"} <= before
    assert any(
        p.startswith(str(tmp_path / f".{c.path.name}.tmp-")) for _, p in events[: renames[0]]
    )
    assert ("fsync", str(tmp_path)) in events[renames[0] :]  # the folder holding the new name


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_checkpoint_is_fsynced_before_and_after_the_rename(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import torch

    from ecg_sweep.models._classifier import save_checkpoint

    model = SimpleNamespace(
        info=SimpleNamespace(as_dict=lambda: {"model": "x"}),
        state_dict=lambda: {"w": torch.arange(4.0)},
    )
    events = _record_syscalls(monkeypatch)
    path = save_checkpoint(model, tmp_path / "ckpt" / "best.pt")
    i = events.index(("rename", str(path)))
    synced = [p for kind, p in events[:i] if kind == "fsync"]
    assert len(synced) == 1 and Path(synced[0]).name.startswith(".best.pt.")
    assert ("fsync", str(path.parent)) in events[i:]
    assert torch.load(path, weights_only=True)["state_dict"]["w"].tolist() == [0, 1, 2, 3]
    assert [p.name for p in path.parent.iterdir()] == ["best.pt"]


def _corrupt_index(entry: Path) -> None:
    (entry / "index.json").write_text('{"format": 2, "ecg_ids": [1, 2')  # a crash mid-write


def _empty_index(entry: Path) -> None:
    (entry / "index.json").write_bytes(b"")  # the classic un-fsynced file after a power cut


def _truncate_signals(entry: Path) -> None:
    npy = entry / "signals.npy"
    with open(npy, "r+b") as fh:
        fh.truncate(npy.stat().st_size // 2)


def _drop_signals(entry: Path) -> None:
    (entry / "signals.npy").unlink()


@pytest.mark.parametrize("damage", [_corrupt_index, _empty_index, _truncate_signals, _drop_signals])
def test_unreadable_cache_entry_counts_as_missing_and_is_rebuilt(real30, tmp_path, damage):
    """Before the fix: a JSONDecodeError / ValueError traceback on every later run."""
    meta = load_metadata(real30)
    first = load_signals(meta, 100, tmp_path)
    expected = np.asarray(first.signals).copy()
    del first
    damage(_entry(tmp_path))
    again = load_signals(meta, 100, tmp_path)
    assert again.created
    np.testing.assert_array_equal(np.asarray(again.signals), expected)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _entry(cache: Path) -> Path:
    (entry,) = [p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return entry


# ------------------------------------------------------------- item 12: data cache --list/--prune


def test_cache_list_and_prune(real30_copy, tmp_path):
    cache = tmp_path / "cache"
    meta = load_metadata(real30_copy)
    old = load_signals(meta, 100, cache).path
    # the dataset changes: the old entry is stale, a new one is built
    dat = _dat(real30_copy, TEST_RECORD)
    dat.write_bytes(dat.read_bytes())
    os.utime(dat, ns=(1, 1))
    new = load_signals(load_metadata(real30_copy), 100, cache).path
    assert new != old
    broken = cache / "gone-100hz-0000000000000000"
    broken.mkdir()
    (broken / "index.json").write_text("{")
    leftover = cache / f".{new.name}.tmp-crashed"
    leftover.mkdir()
    os.utime(leftover, (0, 0))
    young = cache / ".other-100hz-0123456789abcdef.tmp-young"  # maybe a build running now
    young.mkdir()

    r = run_cli("data", "cache", "--list", "--json", "--cache-dir", str(cache))
    assert r.returncode == 0, r.stderr
    status = {Path(e["path"]).name: e["status"] for e in json.loads(r.stdout)}
    assert status == {
        old.name: "stale: dataset changed since",
        new.name: "current",
        broken.name: "unreadable",
        leftover.name: "temporary",
        young.name: "temporary, recent (a build may be running)",
    }
    r = run_cli("data", "cache", "--cache-dir", str(cache))  # --list is the default
    assert r.returncode == 0 and "current" in r.stdout and "removable" in r.stdout

    r = run_cli("data", "cache", "--prune", "--dry-run", "--cache-dir", str(cache))
    assert r.returncode == 0 and "would remove 3 item(s)" in r.stdout
    assert old.exists() and broken.exists() and leftover.exists()

    r = run_cli("data", "cache", "--prune", "--cache-dir", str(cache))
    assert r.returncode == 0, r.stderr
    assert "removed 3 item(s)" in r.stdout
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [new.name, f"{new.name}.lock", young.name]
    )
    assert not load_signals(load_metadata(real30_copy), 100, cache).created  # still reused

    # a dataset folder that is gone makes its entries stale; --older-than removes unused ones
    r = run_cli("data", "cache", "--prune", "--older-than", "0", "--cache-dir", str(cache))
    assert r.returncode == 0 and "removed 1 item(s)" in r.stdout
    assert [p.name for p in cache.iterdir()] == [young.name]


def test_cache_prune_of_a_deleted_dataset(real30_copy, tmp_path):
    cache = tmp_path / "cache"
    load_signals(load_metadata(real30_copy), 100, cache)
    import shutil

    shutil.rmtree(real30_copy)
    (entry,) = list_entries(cache)
    assert entry.status == "stale: dataset folder is gone"
    assert [e.path for e in prune_cache(cache)] == [entry.path]
    assert list(cache.iterdir()) == []


def test_cache_command_rejects_conflicting_flags(tmp_path):
    r = run_cli("data", "cache", "--list", "--prune", "--cache-dir", str(tmp_path))
    assert r.returncode == 2 and r.stderr.startswith("error:") and "--list and --prune" in r.stderr
    r = run_cli("data", "cache", "--older-than", "3", "--cache-dir", str(tmp_path))
    assert r.returncode == 2 and "only go with --prune" in r.stderr


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
