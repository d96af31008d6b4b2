"""Shared fixtures: synthetic PTB-XL datasets (written with wfdb so the real loader runs), the
30 real records from ../shared, and isolation of every store (cache, MLflow, Optuna) in tmp dirs.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL30 = Path(os.environ.get("ECG_SWEEP_REAL30", REPO.parent / "shared/data/ptbxl-real-30"))


@pytest.fixture(scope="session", autouse=True)
def _isolated_env(tmp_path_factory):
    """No test touches ~/.cache, ./mlflow.db or a user's MLFLOW_TRACKING_URI."""
    cache = tmp_path_factory.mktemp("ecg-cache")
    old = {
        k: os.environ.get(k) for k in ("ECG_SWEEP_CACHE", "MLFLOW_TRACKING_URI", "ECG_SWEEP_DATA")
    }
    os.environ["ECG_SWEEP_CACHE"] = str(cache)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("ECG_SWEEP_DATA", None)
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(autouse=True)
def _mlflow_store_reset():
    """MLflow keeps the tracking and registry URIs process-wide (and in the environment, for
    subprocesses): one test's store must not become the next test's default."""
    yield
    import sys

    mlflow = sys.modules.get("mlflow")
    if mlflow is not None:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("MLFLOW_REGISTRY_URI", None)


@pytest.fixture(scope="session")
def real30() -> Path:
    if not (REAL30 / "ptbxl_database.csv").is_file():
        message = f"30 real PTB-XL records not found at {REAL30} (set ECG_SWEEP_REAL30)"
        if os.environ.get("CI"):  # CI must read real files: a quiet skip there hides a gap
            pytest.fail(message)
        pytest.skip(message)
    return REAL30


@pytest.fixture
def real30_copy(real30, tmp_path) -> Path:
    """A writable copy of the real records, to break on purpose."""
    dst = tmp_path / "real30"
    shutil.copytree(real30, dst)
    for p in [dst, *dst.rglob("*")]:
        p.chmod(p.stat().st_mode | stat.S_IWUSR)
    return dst


@pytest.fixture(scope="session")
def synth_small(tmp_path_factory) -> Path:
    """120 records at 100 and 500 Hz, all 10 folds: for data-layer tests."""
    from ecg_sweep.data.synth import synthesize

    root = tmp_path_factory.mktemp("synth") / "small"
    synthesize(root, n_records=120, seed=3, sampling_rates=(100, 500))
    return root


@pytest.fixture(scope="session")
def synth_learn(tmp_path_factory) -> Path:
    """A 100 Hz dataset big and easy enough that tiny models learn in a few epochs."""
    from ecg_sweep.data.synth import synthesize

    root = tmp_path_factory.mktemp("synth") / "learn"
    synthesize(
        root, n_records=LEARN_RECORDS, seed=7, difficulty=LEARN_DIFFICULTY, sampling_rates=(100,)
    )
    return root


@pytest.fixture(scope="session")
def synth_sweep(tmp_path_factory) -> Path:
    """A small, easy 100 Hz dataset for the sweep mechanics (resume, workers, crashes)."""
    from ecg_sweep.data.synth import synthesize

    root = tmp_path_factory.mktemp("synth") / "sweep"
    synthesize(root, n_records=400, seed=11, difficulty=0.0, sampling_rates=(100,))
    return root


@pytest.fixture(scope="session")
def sweep_data(synth_sweep, tmp_path_factory):
    from ecg_sweep.config import DataConfig
    from ecg_sweep.data.dataset import prepare

    return prepare(DataConfig(root=synth_sweep, cache_dir=tmp_path_factory.mktemp("sweep-cache")))


LEARN_RECORDS = 1500
LEARN_DIFFICULTY = 0.0


@pytest.fixture(scope="session")
def learn_data(synth_learn, tmp_path_factory):
    """The learn dataset prepared once (decoded into a session cache) and shared by tests."""
    from ecg_sweep.config import DataConfig
    from ecg_sweep.data.dataset import prepare

    return prepare(DataConfig(root=synth_learn, cache_dir=tmp_path_factory.mktemp("learn-cache")))


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    """Run in an empty working directory (the embedded sqlite stores land here)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None):
    """Run the real console entry point in a subprocess; returns CompletedProcess."""
    import subprocess
    import sys

    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "ecg_sweep", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=600,
    )


# A one-layer signal ViT: a study of it trains in seconds.
TINY_VIT_SPACE = (
    ("input_repr", "signal"),
    ("embed_dim", 48),
    ("num_heads", 2),
    ("depth", 1),
    ("patch_time", 20),
    ("patch_leads", 12),
    ("mlp_ratio", 2.0),
    ("batch_size", 64),
    ("patch_embed", "linear"),
    ("augment", False),
)


def run_study(data, tracking_uri: str, storage_dir: Path, name: str, lr: float, epochs: int = 3):
    """One 1-trial ViT study in ``tracking_uri``, its best registered (no compression)."""
    from ecg_sweep.config import SweepConfig
    from ecg_sweep.registry import fold_fingerprint, register_study_best
    from ecg_sweep.sweep import optimize

    cfg = SweepConfig(
        model="vit",
        n_trials=1,
        max_epochs=epochs,
        search_space=(*TINY_VIT_SPACE, ("lr", lr)),
        storage=f"sqlite:///{storage_dir}/optuna.db",
        tracking_uri=tracking_uri,
        study_name=name,
        fixed=(("n_bootstrap", 50), ("warmup_epochs", 0.0)),
        cost_probe=False,
    )
    out = optimize(cfg, data)
    fold = fold_fingerprint(data.test.ecg_ids, str(data.root), data.config.task)
    versions = register_study_best(
        out.tracker, out.best_run_id, "vit", fold, include_compressed=False
    )
    return out, versions


@pytest.fixture
def pg_database():
    """A factory of fresh PostgreSQL databases on 127.0.0.1:5432 (trust auth), dropped after the
    test; skips when no server answers. Returns ``make(prefix) -> name``."""
    import uuid

    psycopg = pytest.importorskip("psycopg")
    try:
        conn = psycopg.connect(
            "host=127.0.0.1 port=5432 dbname=postgres user=postgres connect_timeout=3",
            autocommit=True,
        )
    except psycopg.OperationalError as e:
        pytest.skip(f"PostgreSQL not reachable on 127.0.0.1:5432: {e}")
    made: list[str] = []

    def make(prefix: str = "ecg_sweep") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
        made.append(name)
        return name

    yield make
    with conn.cursor() as cur:
        for name in made:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    conn.close()


def start_server_cli(args: list[str], log: Path, pattern: str, timeout: float = 180.0):
    """Start ``ecg-sweep ARGS`` (a server command) in its own process group with stdout and
    stderr in ``log``; wait until a line matches the regex ``pattern``. Returns (process, match)."""
    import re
    import signal
    import subprocess
    import sys
    import time

    fh = open(log, "w")  # noqa: SIM115 - the server writes to it for its whole life
    proc = subprocess.Popen(
        [sys.executable, "-m", "ecg_sweep", *args],
        stdout=fh,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.time() + timeout
    while time.time() < deadline:
        m = re.search(pattern, log.read_text())
        if m:
            return proc, m
        if proc.poll() is not None:
            fh.close()
            pytest.fail(f"ecg-sweep {args[0]} exited {proc.returncode}: {log.read_text()[-2000:]}")
        time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    fh.close()
    pytest.fail(f"ecg-sweep {args[0]} printed no {pattern!r} in {timeout:.0f} s: {log.read_text()}")


def stop_server(proc) -> None:
    import signal
    import subprocess

    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
