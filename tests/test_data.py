"""Data layer: benchmark labels on real records, the fast reader, the cache, splits, bad input."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb

from ecg_sweep.config import DataConfig
from ecg_sweep.data.cache import load_signals
from ecg_sweep.data.dataset import Standardizer, prepare
from ecg_sweep.data.inspect import inspect_dataset
from ecg_sweep.data.ptbxl import LEADS, SUPERCLASSES, TASKS, class_counts, load_metadata
from ecg_sweep.data.records import read_record
from ecg_sweep.errors import DataError
from tests.conftest import run_cli

# --- labels on the 30 real records ---------------------------------------------------------------


def test_real30_superclass_counts(real30):
    meta = load_metadata(real30)
    labelled = meta.labelled
    assert len(meta.records) == 30 and len(labelled) == 30
    assert class_counts(labelled["labels"], meta.classes) == {
        "NORM": 16, "MI": 8, "STTC": 7, "CD": 6, "HYP": 6,
    }  # fmt: skip
    assert meta.classes == SUPERCLASSES
    assert set(meta.records.loc[7189, "labels"]) == {"CD", "HYP", "MI"}
    assert set(meta.records.loc[10429, "labels"]) == {"HYP", "MI", "STTC"}
    assert set(meta.records.loc[841, "labels"]) == {"HYP", "STTC"}


def test_likelihood_zero_codes_count(real30):
    # 841 has 'VCLVH': 0.0 (HYP) and 'LVH': 35.0; the benchmark keeps codes of any likelihood.
    meta = load_metadata(real30)
    assert meta.records.loc[841, "scp_codes"]["VCLVH"] == 0.0
    assert "HYP" in meta.records.loc[841, "labels"]


@pytest.mark.parametrize("task", list(TASKS))
def test_other_tasks_load(real30, task):
    meta = load_metadata(real30, task)
    # PTB-XL 1.0.3: 71 statements = 44 diagnostic (in 23 subclasses, 5 superclasses), 19 form,
    # 12 rhythm (some statements are both diagnostic and form)
    count, members = {
        "superdiagnostic": (5, {"NORM", "MI", "HYP"}),
        "subdiagnostic": (23, {"IMI", "LAFB/LPFB", "NST_"}),
        "diagnostic": (44, {"ASMI", "IRBBB", "1AVB"}),
        "form": (19, {"PVC", "LVOLT", "NDT"}),
        "rhythm": (12, {"SR", "AFIB", "STACH"}),
    }[task]
    assert len(meta.classes) == count and members <= set(meta.classes)
    assert len(meta.labelled) > 0
    assert all(set(labs) <= set(meta.classes) for labs in meta.labelled["labels"])


# --- reading records ---------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [100, 500])
def test_fast_reader_equals_wfdb(real30, rate):
    meta = load_metadata(real30)
    col = "filename_lr" if rate == 100 else "filename_hr"
    for rel in meta.records[col][:10]:
        ours = read_record(real30 / rel, rate)
        ref, fields = wfdb.rdsamp(str(real30 / rel))
        assert ours.shape == (12, 10 * rate)
        np.testing.assert_allclose(ours, ref.T, atol=1e-6)
        assert tuple(fields["sig_name"]) == LEADS


# --- cache --------------------------------------------------------------------------------------


def test_cache_warm_load_matches_and_is_reused(real30, tmp_path):
    meta = load_metadata(real30)
    cold = load_signals(meta, 100, tmp_path)
    warm = load_signals(meta, 100, tmp_path)
    assert cold.created and not warm.created
    assert cold.path == warm.path and not str(cold.path).startswith(str(real30))
    ref = read_record(real30 / meta.records["filename_lr"].iloc[3], 100)
    np.testing.assert_allclose(np.asarray(warm.signals[3], dtype=np.float32), ref, atol=0.01)
    assert warm.signals.dtype == np.float16 and isinstance(warm.signals, np.memmap)


def test_cache_key_covers_rate_and_file_changes(real30_copy, tmp_path):
    meta = load_metadata(real30_copy)
    first = load_signals(meta, 100, tmp_path)
    assert load_signals(meta, 500, tmp_path).path != first.path
    dat = real30_copy / (meta.records["filename_lr"].iloc[0] + ".dat")
    data = bytearray(dat.read_bytes())
    data[100] ^= 0x01  # same size, new content and mtime
    os.utime(dat, ns=(1, 1))
    dat.write_bytes(bytes(data))
    again = load_signals(load_metadata(real30_copy), 100, tmp_path)
    assert again.created and again.path != first.path


def test_cache_refuses_dataset_folder(real30_copy):
    meta = load_metadata(real30_copy)
    with pytest.raises(DataError, match="outside the dataset"):
        load_signals(meta, 100, real30_copy / "cache")


def _build_in_child(root: str, cache: str, q, barrier) -> None:
    import ecg_sweep.data.cache as cache_mod

    real = cache_mod.read_record

    def slow(path, rate, **kw):  # ~1.5 s for 30 records: the other process arrives mid-build
        time.sleep(0.05)
        return real(path, rate, **kw)

    cache_mod.read_record = slow
    meta = load_metadata(root)
    barrier.wait(60)
    start = time.time()
    c = load_signals(meta, 100, cache)
    q.put((str(c.path), c.created, start, time.time()))


def test_two_processes_build_one_cache(real30, tmp_path):
    ctx = mp.get_context("spawn")
    q, barrier = ctx.Queue(), ctx.Barrier(2)
    procs = [
        ctx.Process(target=_build_in_child, args=(str(real30), str(tmp_path), q, barrier))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    results = [q.get(timeout=5) for _ in procs]
    assert len({r[0] for r in results}) == 1
    assert sorted(r[1] for r in results) == [False, True]  # one decoded, the other waited
    (builder,) = [r for r in results if r[1]]
    (waiter,) = [r for r in results if not r[1]]
    assert waiter[2] < builder[3] <= waiter[3]  # it asked while the build ran, got it after
    entries = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(entries) == 1 and (entries[0] / "index.json").is_file()


def test_crash_mid_decode_leaves_no_cache(real30, tmp_path, monkeypatch):
    import ecg_sweep.data.cache as cache_mod

    calls = {"n": 0}
    real = cache_mod.read_record

    def flaky(path, rate, **kw):
        calls["n"] += 1
        if calls["n"] == 10:
            raise RuntimeError("disk on fire")
        return real(path, rate, **kw)

    monkeypatch.setattr(cache_mod, "read_record", flaky)
    with pytest.raises(RuntimeError):
        load_signals(load_metadata(real30), 100, tmp_path)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


# --- splits and standardization ------------------------------------------------------------------


def test_splits_by_fold_and_train_only_standardizer(synth_small, tmp_path):
    data = prepare(DataConfig(root=synth_small, cache_dir=tmp_path))
    meta = load_metadata(synth_small).records
    for split, folds in ((data.train, range(1, 9)), (data.val, [9]), (data.test, [10])):
        assert set(meta.loc[split.ecg_ids, "strat_fold"]) <= set(folds)
        assert split.y.shape == (len(split), 5)
    x = data.train.x.astype(np.float64)
    assert data.standardizer.mean[0] == pytest.approx(x.mean(), rel=1e-4, abs=1e-6)
    assert data.standardizer.std[0] == pytest.approx(x.std(), rel=1e-4)
    # Not fit on everything: the statistics differ from those over all splits.
    allx = np.concatenate([x, data.test.x.astype(np.float64)])
    assert data.standardizer.std[0] != pytest.approx(allx.std(), rel=1e-9)


def test_split_override_and_per_lead(synth_small, tmp_path):
    data = prepare(
        DataConfig(
            root=synth_small,
            cache_dir=tmp_path,
            train_folds=(1, 2, 3),
            val_folds=(4,),
            test_folds=(5,),
            standardize="per_lead",
        )
    )
    meta = load_metadata(synth_small).records
    assert set(meta.loc[data.test.ecg_ids, "strat_fold"]) == {5}
    assert len(data.standardizer.mean) == 12
    mean, std = data.standardizer.arrays()
    assert mean.shape == (12, 1)
    assert Standardizer.from_dict(data.standardizer.as_dict()) == data.standardizer


def test_500hz(synth_small, tmp_path):
    data = prepare(DataConfig(root=synth_small, cache_dir=tmp_path, sampling_rate=500))
    assert data.train.x.shape[1:] == (12, 5000)


def test_unlabelled_records_are_dropped(synth_small, tmp_path):
    meta = load_metadata(synth_small)
    data = prepare(DataConfig(root=synth_small, cache_dir=tmp_path))
    n = len(data.train) + len(data.val) + len(data.test)
    assert n == len(meta.labelled) < len(meta.records)


# --- inspect ------------------------------------------------------------------------------------


def test_inspect_json_shape(real30):
    r = run_cli("data", "inspect", str(real30), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert set(report) == {
        "root", "records", "labelled", "sampling_rate", "folds", "classes", "bad_records",
        "warnings",
    }  # fmt: skip
    assert report["records"] == 30 and report["labelled"] == 30
    assert report["folds"] == {str(f): report["folds"][str(f)] for f in range(1, 11)}
    assert report["folds"]["7"] == 0 and sum(report["folds"].values()) == 30
    assert report["classes"] == {"NORM": 16, "MI": 8, "STTC": 7, "CD": 6, "HYP": 6}
    assert report["bad_records"] == [] and report["warnings"] == []


def test_inspect_reports_bad_records(real30_copy):
    meta = load_metadata(real30_copy)
    victim = real30_copy / (meta.records["filename_lr"].iloc[2] + ".dat")
    victim.write_bytes(victim.read_bytes()[:1000])
    report = inspect_dataset(real30_copy)
    assert len(report["bad_records"]) == 1
    bad = report["bad_records"][0]
    assert bad["ecg_id"] == int(meta.records.index[2]) and "truncated" in bad["error"]
    r = run_cli("data", "inspect", str(real30_copy))
    assert r.returncode == 1 and "truncated" in r.stdout


# --- bad input: one clear line naming the file, non-zero exit, no traceback, no partial cache ----


def _break_db(root: Path, fn) -> None:
    db = root / "ptbxl_database.csv"
    df = pd.read_csv(db)
    fn(df)
    df.to_csv(db, index=False)


def _first_record(root: Path, rate: int = 100) -> Path:
    meta = load_metadata(root)
    return root / meta.records["filename_lr" if rate == 100 else "filename_hr"].iloc[0]


def _rewrite_header(rec: Path, edit) -> None:
    hea = rec.with_name(rec.name + ".hea")
    lines = hea.read_text().splitlines()
    hea.write_text("\n".join(edit(lines)) + "\n")


def _header_fs(lines):
    parts = lines[0].split()
    parts[2] = "250"
    return [" ".join(parts), *lines[1:]]


def _header_len(lines):
    parts = lines[0].split()
    parts[3] = "999"
    return [" ".join(parts), *lines[1:]]


def _header_leads(lines):
    parts = lines[0].split()
    parts[1] = "11"
    return [" ".join(parts), *[ln for i, ln in enumerate(lines[1:]) if i != 11]]


def _write_nan(rec: Path) -> None:
    sig, fields = wfdb.rdsamp(str(rec))
    sig[100:110, 4] = np.nan
    wfdb.wrsamp(
        rec.name, fs=fields["fs"], units=fields["units"], sig_name=fields["sig_name"],
        p_signal=sig, fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12,
        write_dir=str(rec.parent),
    )  # fmt: skip


BREAKERS = {
    "missing root": (lambda root: None, "does not exist", "nonexistent"),
    "missing csv": (
        lambda root: (root / "ptbxl_database.csv").unlink(),
        "ptbxl_database.csv",
        None,
    ),
    "missing statements": (
        lambda root: (root / "scp_statements.csv").unlink(),
        "scp_statements.csv",
        None,
    ),
    "missing column": (
        lambda root: _break_db(root, lambda df: df.pop("strat_fold")),
        "missing required column(s): strat_fold",
        None,
    ),
    "unparseable scp_codes": (
        lambda root: _break_db(
            root,
            lambda df: df.__setitem__(
                "scp_codes", df["scp_codes"].where(df.index != 3, "{'NORM': 100.0")
            ),
        ),
        "unparseable scp_codes",
        None,
    ),
    "missing hea": (
        lambda root: _first_record(root).with_suffix(".hea").unlink(),
        "missing header file",
        None,
    ),
    "missing dat": (
        lambda root: _first_record(root).with_suffix(".dat").unlink(),
        "missing signal file",
        None,
    ),
    "truncated dat": (
        lambda root: _first_record(root).with_suffix(".dat").write_bytes(b"\0" * 100),
        "truncated signal file",
        None,
    ),
    "wrong fs": (
        lambda root: _rewrite_header(_first_record(root), _header_fs),
        "sampling rate 250 Hz, expected 100 Hz",
        None,
    ),
    "wrong length": (
        lambda root: _rewrite_header(_first_record(root), _header_len),
        "length 999 samples, expected 1000",
        None,
    ),
    "wrong lead count": (
        lambda root: _rewrite_header(_first_record(root), _header_leads),
        "11 leads, expected 12",
        None,
    ),
    "nan samples": (
        lambda root: _write_nan(_first_record(root)),
        "missing (NaN) samples in lead aVL",
        None,
    ),
}


@pytest.mark.parametrize("case", list(BREAKERS))
def test_bad_input_is_one_clear_line(case, real30_copy, tmp_path):
    breaker, message, root_override = BREAKERS[case]
    breaker(real30_copy)
    root = real30_copy / root_override if root_override else real30_copy
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=None) as exc:
        prepare(DataConfig(root=root, cache_dir=cache))
    text = str(exc.value)
    assert message in text and "\n" not in text
    # names the file (or the folder, when the folder itself is missing)
    assert str(root) in text or str(real30_copy) in text
    entries = [p for p in cache.iterdir() if not p.name.endswith(".lock")] if cache.exists() else []
    assert entries == [], "a failed preparation must leave no cache entry"


def test_bad_input_cli_exit_and_no_traceback(real30_copy, tmp_path):
    _first_record(real30_copy).with_suffix(".dat").write_bytes(b"\0" * 100)
    r = run_cli(
        "train", "--model", "vit", "--data-dir", str(real30_copy), "--cache-dir", str(tmp_path / "c"),
        "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
    )  # fmt: skip
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "truncated signal file" in lines[0] and "_lr" in lines[0]


def test_skip_policy_reports_which(real30_copy, tmp_path, caplog):
    meta = load_metadata(real30_copy)
    bad_ids = [int(meta.records.index[i]) for i in (0, 5)]
    for i in (0, 5):
        (real30_copy / (meta.records["filename_lr"].iloc[i] + ".dat")).write_bytes(b"\0" * 10)
    with caplog.at_level("WARNING"):
        data = prepare(
            DataConfig(root=real30_copy, cache_dir=tmp_path, on_bad_record="skip", test_folds=(10,))
        )
    assert sorted(b.ecg_id for b in data.skipped) == sorted(bad_ids)
    assert "skipped 2 bad record(s)" in caplog.text
    kept = np.concatenate([data.train.ecg_ids, data.val.ecg_ids, data.test.ecg_ids])
    assert not set(bad_ids) & set(kept.tolist())
    # the error policy refuses the same dataset even though a (skip) cache exists now
    with pytest.raises(DataError, match="truncated"):
        prepare(DataConfig(root=real30_copy, cache_dir=tmp_path))


def test_unknown_scp_code_warns_counts_ignores(real30_copy, caplog):
    _break_db(
        real30_copy,
        lambda df: df.__setitem__(
            "scp_codes", df["scp_codes"].str.replace("'NORM'", "'NORMX'", regex=False)
        ),
    )
    with caplog.at_level("WARNING"):
        meta = load_metadata(real30_copy)
    assert meta.unknown_codes == {"NORMX": 16}
    assert "NORMX (16)" in caplog.text
    assert class_counts(meta.labelled["labels"], meta.classes)["NORM"] == 0


def test_empty_split_after_filtering(real30, tmp_path):
    with pytest.raises(DataError, match=r"test split \(folds 7\) is empty"):
        prepare(DataConfig(root=real30, cache_dir=tmp_path, test_folds=(7,), train_folds=(1, 2, 3)))


def test_overlapping_folds_rejected(real30, tmp_path):
    with pytest.raises(DataError, match="overlap"):
        prepare(DataConfig(root=real30, cache_dir=tmp_path, val_folds=(8,)))
