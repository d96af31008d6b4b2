"""Synthetic PTB-XL: layout, determinism, labels, folds, learnability, atomic writes."""

from __future__ import annotations

import ast
import dataclasses
import datetime as dt
import filecmp
import math
import multiprocessing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb
from scipy.signal import find_peaks, resample_poly
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ecg_sweep.data import synth
from ecg_sweep.data.ptbxl import LEADS, SUPERCLASSES, load_metadata, load_statements
from ecg_sweep.data.synth import DATABASE_COLUMNS, SynthSummary, synthesize
from ecg_sweep.errors import DataError

N_SMALL = 60  # >= 1 / 1.9 % : the quotas guarantee an unlabelled record and every class
SEED = 3
PACKAGED_STATEMENTS = Path(synth.__file__).parent / "resources" / "scp_statements.csv"
REAL_30 = Path(__file__).resolve().parents[2] / "shared" / "data" / "ptbxl-real-30"


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, SynthSummary]:
    out = tmp_path_factory.mktemp("synth") / "ptbxl"
    return out, synthesize(out, n_records=N_SMALL, seed=SEED, workers=1)


def _files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


# --- layout ----------------------------------------------------------------------------------


def test_layout_matches_ptbxl(small):
    root, summary = small
    assert summary.root == root and summary.n_records == N_SMALL
    db = pd.read_csv(root / "ptbxl_database.csv")
    assert tuple(db.columns) == DATABASE_COLUMNS and len(DATABASE_COLUMNS) == 28
    assert db["ecg_id"].tolist() == list(range(1, N_SMALL + 1))
    assert (root / "scp_statements.csv").read_bytes() == PACKAGED_STATEMENTS.read_bytes()
    if (REAL_30 / "ptbxl_database.csv").is_file():
        real = pd.read_csv(REAL_30 / "ptbxl_database.csv", nrows=1)
        assert tuple(real.columns) == DATABASE_COLUMNS
        assert (root / "scp_statements.csv").read_bytes() == (
            REAL_30 / "scp_statements.csv"
        ).read_bytes()
    expected = {f"{name}.{ext}" for name in db["filename_lr"] for ext in ("hea", "dat")}
    expected |= {f"{name}.{ext}" for name in db["filename_hr"] for ext in ("hea", "dat")}
    expected |= {"ptbxl_database.csv", "scp_statements.csv"}
    assert {str(p) for p in _files(root)} == expected


def test_value_formats_match_the_real_file(small):
    root, _ = small
    text = (root / "ptbxl_database.csv").read_text().splitlines()
    first = pd.read_csv(root / "ptbxl_database.csv", dtype=str, keep_default_na=False).iloc[0]
    assert first["patient_id"].endswith(".0") and first["age"].endswith(".0")
    assert first["sex"] in ("0", "1")
    dt.datetime.strptime(first["recording_date"], "%Y-%m-%d %H:%M:%S")
    assert first["filename_lr"] == "records100/00000/00001_lr"
    assert first["filename_hr"] == "records500/00000/00001_hr"
    assert first["validated_by_human"] in ("True", "False")
    assert len(text) == N_SMALL + 1
    db = pd.read_csv(root / "ptbxl_database.csv")
    if (REAL_30 / "ptbxl_database.csv").is_file():  # the same column types as the real file
        real = pd.read_csv(REAL_30 / "ptbxl_database.csv")
        for col in ("ecg_id", "patient_id", "age", "sex", "height", "weight", "strat_fold",
                    "second_opinion", "validated_by_human", "recording_date", "scp_codes"):  # fmt: skip
            assert db[col].dtype == real[col].dtype, col
    for text_codes in db["scp_codes"]:
        codes = ast.literal_eval(text_codes)
        assert isinstance(codes, dict) and codes
        assert all(isinstance(v, float) and v in synth.LIKELIHOODS for v in codes.values())


def test_folder_of_a_record_follows_ptbxl():
    assert synth._filename(841, 100) == "records100/00000/00841_lr"
    assert synth._filename(21837, 500) == "records500/21000/21837_hr"


def test_every_record_reads_with_wfdb_at_both_rates(small):
    root, _ = small
    db = pd.read_csv(root / "ptbxl_database.csv")
    for lr, hr in zip(db["filename_lr"], db["filename_hr"], strict=True):
        lo, f_lo = wfdb.rdsamp(str(root / lr))
        hi, f_hi = wfdb.rdsamp(str(root / hr))
        assert lo.shape == (1000, 12) and hi.shape == (5000, 12)
        assert (f_lo["fs"], f_hi["fs"]) == (100, 500)
        assert tuple(f_lo["sig_name"]) == LEADS == tuple(f_hi["sig_name"])
        assert f_lo["units"] == ["mV"] * 12
        assert np.isfinite(lo).all() and np.isfinite(hi).all()
        # mV like a real ECG, and the 100 Hz record is the same ECG as the 500 Hz one
        assert 0.3 < np.ptp(hi, axis=0).max() < 15
        assert np.abs(resample_poly(hi, 1, 5, axis=0, padtype="line") - lo).max() < 0.005


def test_writer_is_byte_identical_to_wfdb_wrsamp(tmp_path):
    _, specs = synth._plan(12, SEED, 0.5)
    spec = specs[0]
    ecg = synth._render(spec)
    for fs in (100, 500):
        digital = synth._digitize(synth._resample(ecg, fs))
        name = Path(synth._filename(spec.ecg_id, fs))
        (tmp_path / "ours" / name.parent).mkdir(parents=True)
        synth._write_record(tmp_path / "ours", spec, fs, digital)
        ref_dir = tmp_path / "wfdb" / name.parent
        ref_dir.mkdir(parents=True)
        wfdb.wrsamp(
            name.name,
            fs=fs,
            units=["mV"] * 12,
            sig_name=list(LEADS),
            d_signal=digital,
            fmt=["16"] * 12,
            adc_gain=[1000.0] * 12,
            baseline=[0] * 12,
            base_datetime=spec.recorded,
            write_dir=str(ref_dir),
        )
        for ext in ("hea", "dat"):
            ours = tmp_path / "ours" / f"{name}.{ext}"
            assert ours.read_bytes() == (ref_dir / f"{name.name}.{ext}").read_bytes()


# --- determinism -----------------------------------------------------------------------------


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    a = synthesize(tmp_path / "a", n_records=24, seed=SEED, workers=1).root
    b = synthesize(tmp_path / "b", n_records=24, seed=SEED, workers=2).root
    c = synthesize(tmp_path / "c", n_records=24, seed=SEED + 1, workers=1).root
    files = _files(a)
    assert files == _files(b) == _files(c)
    _, mismatch, errors = filecmp.cmpfiles(a, b, [str(f) for f in files], shallow=False)
    assert mismatch == [] and errors == []
    assert (a / "ptbxl_database.csv").read_bytes() != (c / "ptbxl_database.csv").read_bytes()
    dat = [str(f) for f in files if f.suffix == ".dat"]
    _, mismatch, _ = filecmp.cmpfiles(a, c, dat, shallow=False)
    assert len(mismatch) == len(dat)


def test_sampling_rates_subset_writes_the_same_records(tmp_path, small):
    root, _ = small
    only = synthesize(tmp_path / "lr", n_records=N_SMALL, seed=SEED, sampling_rates=(100,)).root
    assert not (only / "records500").exists()
    lr = _files(root / "records100")
    assert lr == _files(only / "records100") and lr
    _, mismatch, errors = filecmp.cmpfiles(
        root / "records100", only / "records100", [str(f) for f in lr], shallow=False
    )
    assert mismatch == [] and errors == []


# --- labels, patients, folds -----------------------------------------------------------------


def test_load_metadata_yields_the_intended_labels(small):
    root, summary = small
    meta = load_metadata(root)
    assert meta.unknown_codes == {}
    _, specs = synth._plan(N_SMALL, SEED, 0.5)
    for spec, labels in zip(specs, meta.records["labels"], strict=True):
        assert labels == tuple(sorted(spec.classes))
    n_labels = meta.records["labels"].map(len)
    assert (n_labels == 0).any(), "some records without a diagnostic superclass"
    assert (n_labels >= 2).any(), "some multi-label records"
    counts = {c: sum(c in labs for labs in meta.records["labels"]) for c in SUPERCLASSES}
    assert all(counts[c] > 0 for c in SUPERCLASSES)
    assert counts == summary.class_counts
    assert summary.n_labelled == int((n_labels > 0).sum())


def test_every_fold_is_used_and_patients_stay_in_one_fold(small):
    root, _ = small
    db = pd.read_csv(root / "ptbxl_database.csv")
    assert sorted(db["strat_fold"].unique()) == list(range(1, 11))
    assert (db.groupby("patient_id")["strat_fold"].nunique() == 1).all()
    tiny = synth._plan(10, 0, 0.5)[0]
    assert sorted(tiny["strat_fold"]) == list(range(1, 11))


def test_plan_statistics_follow_ptbxl():
    n = 5000
    db, specs = synth._plan(n, SEED, 0.5)
    share = {c: sum(c in s.classes for s in specs) / n for c in SUPERCLASSES}
    target = {"NORM": 0.439, "MI": 0.25, "STTC": 0.236, "CD": 0.225, "HYP": 0.122}
    for c in SUPERCLASSES:
        assert abs(share[c] - target[c]) < 0.01, (c, share[c])
    assert abs(sum(not s.classes for s in specs) / n - 0.019) < 0.002
    assert 1.08 < n / db["patient_id"].nunique() < 1.25
    assert (db.groupby("patient_id")["strat_fold"].nunique() == 1).all()
    sizes = db["strat_fold"].value_counts()
    assert sizes.min() > 0.85 * n / 10 and sizes.max() < 1.15 * n / 10
    assert (db["age"] == 300).any() and db["age"].drop(db.index[db["age"] == 300]).max() <= 89
    assert 0.6 < db["height"].isna().mean() < 0.76 and 0.5 < db["weight"].isna().mean() < 0.65
    assert set(db["sex"]) == {0, 1}
    codes = [ast.literal_eval(c) for c in db["scp_codes"]]
    assert sum("SR" in c for c in codes) / n > 0.7 and any("AFIB" in c for c in codes)
    assert db["recording_date"].is_monotonic_increasing


def test_generated_codes_are_real_statements_of_their_class():
    st = load_statements(PACKAGED_STATEMENTS.parent)
    for cls, table in synth.CLASS_CODES.items():
        for code in table:
            assert st.loc[code, "diagnostic"] == 1 and st.loc[code, "diagnostic_class"] == cls
            assert code in synth.SIGNATURES
    for code in synth.NORM_CD_CODES:
        assert st.loc[code, "diagnostic_class"] == "CD"
    non_diagnostic = [*synth.RHYTHMS, *synth.UNLABELLED_FORM_CODES, "PVC"]
    non_diagnostic += [c for codes in synth.CLASS_FORM_CODES.values() for c in codes]
    for code in non_diagnostic:
        assert code in st.index and st.loc[code, "diagnostic"] != 1


# --- learnability ----------------------------------------------------------------------------


def _beat_average(x: np.ndarray) -> np.ndarray:
    """(1000, 12) at 100 Hz -> (12 * 70,) median beat around the detected QRS complexes."""
    x = x - np.median(x, axis=0)
    energy = np.abs(np.diff(x, axis=0)).sum(axis=1)
    peaks, _ = find_peaks(energy, distance=35, height=0.5 * np.percentile(energy, 99))
    peaks = peaks[(peaks >= 25) & (peaks < len(x) - 45)]
    if len(peaks) == 0:
        return np.zeros(12 * 70)
    beat = np.median(np.stack([x[p - 25 : p + 45] for p in peaks]), axis=0)
    return (beat - beat[:5].mean(axis=0)).T.ravel()


def _macro_auc(x: np.ndarray, y: np.ndarray, fold: np.ndarray) -> float:
    """Logistic regression on beat averages: train folds 1-8, score folds 9-10."""
    feats = np.stack([_beat_average(r) for r in x])
    train, test = fold <= 8, fold >= 9
    aucs = []
    for j in range(y.shape[1]):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000))
        model.fit(feats[train], y[train, j])
        aucs.append(roc_auc_score(y[test, j], model.predict_proba(feats[test])[:, 1]))
    return float(np.mean(aucs))


def _in_memory(n: int, difficulty: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # the same signals synthesize() writes, without the disk round trip: (n, 1000, 12) mV
    db, specs = synth._plan(n, 0, difficulty)
    x = np.stack([synth._digitize(synth._resample(synth._render(s), 100)) for s in specs]) / 1e3
    y = np.array([[c in s.classes for c in SUPERCLASSES] for s in specs], dtype=int)
    return x, y, db["strat_fold"].to_numpy()


def test_default_difficulty_is_learnable_from_the_written_files(tmp_path):
    # measured: macro AUROC 0.80 (seed 0, 400 records); 0.80 / 0.79 for seeds 1 / 2
    root = synthesize(tmp_path / "d", n_records=400, seed=0, sampling_rates=(100,)).root
    meta = load_metadata(root)
    rec = meta.records
    # format 16, interleaved int16 (T, 12), 1000 units per mV
    x = np.stack([np.fromfile(root / f"{f}.dat", dtype="<i2") for f in rec["filename_lr"]])
    x = x.reshape(len(rec), 1000, 12) / 1000.0
    y = np.array([[c in labs for c in SUPERCLASSES] for labs in rec["labels"]], dtype=int)
    assert _macro_auc(x, y, rec["strat_fold"].to_numpy()) > 0.7


def test_difficulty_knob_changes_learnability():
    # measured (400 records, seeds 0/1/2): difficulty 0 -> 0.89/0.86/0.86, 1 -> 0.60/0.58/0.61
    easy = _macro_auc(*_in_memory(400, 0.0))
    hard = _macro_auc(*_in_memory(400, 1.0))
    assert easy > 0.8
    assert easy - hard > 0.15


def _without_signature(specs) -> tuple[int, int]:
    findings = [(s, c) for s in specs for c in s.classes if c != "NORM"]
    return sum(not synth._has_signature(s, c) for s, c in findings), len(findings)


def test_label_noise_drops_that_fraction_of_signatures_and_keeps_the_labels():
    db0, plain = synth._plan(1500, SEED, 0.5)
    db, noisy = synth._plan(1500, SEED, 0.5, label_noise=0.2)
    # the same labels, codes and folds: only whether a finding shows in the signal changes
    assert db["scp_codes"].equals(db0["scp_codes"]) and db["strat_fold"].equals(db0["strat_fold"])
    absent, n = _without_signature(noisy)
    assert abs(absent / n - 0.2) < 0.03  # binomial sd at n ~ 1,000 findings: 0.013
    assert _without_signature(synth._plan(1500, SEED, 0.5, label_noise=0.0)[1])[0] == 0
    # default: the difficulty's rate (9 % at 0.5), as before the knob existed
    assert abs(_without_signature(plain)[0] / n - synth._absent_p(0.5)) < 0.03


def test_normal_variants_change_only_normal_signals():
    db0, plain = synth._plan(200, SEED, 0.5)
    db, varied = synth._plan(200, SEED, 0.5, normal_variants=0.5)
    assert db.equals(db0)  # the database table (labels, metadata) is the same
    norm_only = [s for s in varied if s.classes == ("NORM",)]
    share = sum(s.variant is not None for s in norm_only) / len(norm_only)
    assert 0.3 < share < 0.7 and all(s.variant is None for s in plain)
    assert all(s.variant is None for s in varied if s.classes != ("NORM",))
    with_variant = next(i for i, s in enumerate(varied) if s.variant)
    without = next(i for i, s in enumerate(varied) if not s.variant)
    # the variant edits its record's signal; every other record renders exactly as before
    assert not np.array_equal(
        synth._render(varied[with_variant]), synth._render(plain[with_variant])
    )
    assert np.array_equal(synth._render(varied[without]), synth._render(plain[without]))
    # every variant renders (none is a no-op)
    for name in synth.VARIANTS:
        spec = dataclasses.replace(norm_only[0], variant=name)
        base = dataclasses.replace(norm_only[0], variant=None)
        assert np.abs(synth._render(spec) - synth._render(base)).max() > 0.01, name


def test_summary_counts_the_dishonesty(tmp_path):
    s = synthesize(
        tmp_path / "n", n_records=40, seed=SEED, sampling_rates=(100,), label_noise=1.0,
        normal_variants=1.0, workers=1,
    )  # fmt: skip
    assert s.n_findings > 0 and s.n_findings_without_signature == s.n_findings
    assert s.n_normal_variants == s.class_counts["NORM"] - sum(
        1 for combo in load_metadata(s.root).records["labels"] if "NORM" in combo and len(combo) > 1
    )


# --- arguments and atomic writes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_records": 9}, "n_records=9"),
        ({"difficulty": 1.5}, "difficulty=1.5"),
        ({"difficulty": -0.1}, "difficulty=-0.1"),
        ({"difficulty": math.nan}, "difficulty=nan"),
        ({"sampling_rates": (250,)}, "sampling_rates=(250,)"),
        ({"sampling_rates": ()}, "sampling_rates=()"),
        ({"workers": 0}, "workers=0"),
        ({"seed": -1}, "seed=-1"),
        ({"label_noise": 1.2}, "label_noise=1.2"),
        ({"normal_variants": -0.1}, "normal_variants=-0.1"),
    ],
)
def test_bad_arguments_raise_data_error(tmp_path, kwargs, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        synthesize(tmp_path / "out", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_refuses_a_non_empty_folder_but_fills_an_empty_one(tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("x")
    with pytest.raises(DataError, match=str(full)):
        synthesize(full, n_records=10)
    assert [p.name for p in full.iterdir()] == ["keep.txt"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(DataError, match=str(a_file)):
        synthesize(a_file, n_records=10)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert synthesize(empty, n_records=10, sampling_rates=(100,)).n_records == 10
    assert (empty / "ptbxl_database.csv").is_file()


def test_progress_reports_every_record(tmp_path):
    calls: list[tuple[int, int]] = []
    synthesize(
        tmp_path / "p",
        n_records=30,
        sampling_rates=(100,),
        workers=1,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls[0] == (0, 30) and calls[-1] == (30, 30)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def _fail_after(monkeypatch, n_ok: int) -> None:
    real = synth._write_record
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > n_ok:
            raise RuntimeError("disk on fire")
        real(*args, **kwargs)

    monkeypatch.setattr(synth, "_write_record", flaky)


def test_failure_mid_write_leaves_nothing(tmp_path, monkeypatch):
    _fail_after(monkeypatch, 7)
    with pytest.raises(RuntimeError, match="disk on fire"):
        synthesize(tmp_path / "out", n_records=20, workers=1)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(
    multiprocessing.get_start_method() != "fork", reason="the patch reaches workers only by fork"
)
def test_failure_in_a_worker_leaves_nothing(tmp_path, monkeypatch):
    _fail_after(monkeypatch, 5)
    with pytest.raises(RuntimeError, match="disk on fire"):
        synthesize(tmp_path / "out", n_records=40, workers=2)
    assert list(tmp_path.iterdir()) == []
