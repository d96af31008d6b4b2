"""Optuna studies tracked in MLflow: the contract's runs and tags, resume, concurrency, crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from ecg_sweep.config import SweepConfig
from ecg_sweep.errors import ConfigError, StorageError, TrackingError
from ecg_sweep.sweep import optimize
from tests.conftest import run_cli

# Tiny, fast trials: the space is narrowed like a user would with --search-space.
TINY_SPACE = (
    ("input_repr", "signal"),
    ("embed_dim", {"choices": [24, 48]}),
    ("num_heads", 2),
    ("depth", {"low": 1, "high": 2}),
    ("patch_time", 25),
    ("patch_leads", 12),
    ("mlp_ratio", 2.0),
    ("batch_size", 64),
    ("lr", {"low": 1e-3, "high": 3e-3}),
)
TINY_SPACE_YAML = """\
input_repr: signal
embed_dim: {choices: [24, 48]}
num_heads: 2
depth: {low: 1, high: 2}
patch_time: 25
patch_leads: 12
mlp_ratio: 2.0
batch_size: 64
lr: {low: 0.001, high: 0.003}
"""


def sweep_cfg(tmp: Path, **kw) -> SweepConfig:
    base = dict(
        model="vit",
        n_trials=3,
        max_epochs=3,
        search_space=TINY_SPACE,
        storage=f"sqlite:///{tmp}/optuna.db",
        tracking_uri=f"sqlite:///{tmp}/mlflow.db",
        study_name="s1",
        fixed=(("n_bootstrap", 50),),
        cost_probe=False,  # the cost probe has its own tests (test_cost.py)
    )
    base.update(kw)
    return SweepConfig(**base)


def runs_of(uri: str, experiment: str = "ecg-vit"):
    client = MlflowClient(uri, uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    study = [r for r in runs if r.data.tags.get("ecg_sweep.kind") == "study"]
    trials = [r for r in runs if r.data.tags.get("ecg_sweep.kind") == "trial"]
    return study, trials


def test_three_trial_study_contract(learn_data, tmp_path):
    space = (*TINY_SPACE, ("lr", {"low": 1e-9, "high": 3e-3}))
    cfg = sweep_cfg(tmp_path, n_trials=3, search_space=space)
    # Trial 2 is enqueued with a learning rate that cannot learn: the median pruner stops it.
    study = optuna.create_study(study_name="s1", storage=cfg.storage, direction="maximize")
    study.enqueue_trial({"lr": 1e-3, "depth": 2, "embed_dim": 48})
    study.enqueue_trial({"lr": 2e-3, "depth": 2, "embed_dim": 48})
    study.enqueue_trial({"lr": 1e-9, "depth": 1, "embed_dim": 24})
    out = optimize(cfg, learn_data)
    parents, trials = runs_of(cfg.tracking_uri)
    assert len(parents) == 1 and len(trials) == 3
    parent = parents[0]
    assert parent.info.run_name == "study-s1"
    assert parent.data.tags["optuna.study_name"] == "s1"
    assert {"sampler", "pruner", "n_trials", "seed"} <= set(parent.data.params)
    for run in trials:
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        n = int(tags["optuna.trial_number"])
        assert run.info.run_name == f"trial-{n:04d}"
        assert tags["ecg_sweep.kind"] == "trial"
        assert {
            "model",
            "input_repr",
            "max_epochs",
            "batch_size",
            "seed",
            "lr",
            "depth",
            "embed_dim",
        } <= set(params)
        assert "patch_size" not in params  # the image geometry does not apply to signal input
        history = MlflowClient(cfg.tracking_uri).get_metric_history(
            run.info.run_id, "val_macro_auc"
        )
        assert [m.step for m in history] == list(range(len(history)))
        for key in ("train_loss", "val_loss", "val_macro_f1"):
            assert key in metrics
    pruned = [r for r in trials if r.data.tags["optuna.trial_state"] == "PRUNED"]
    assert len(pruned) == 1 and pruned[0].info.status == "KILLED"
    assert "pruned at epoch" in pruned[0].data.tags["ecg_sweep.stop_reason"]
    complete = [r for r in trials if r.data.tags["optuna.trial_state"] == "COMPLETE"]
    assert all(
        r.info.status == "FINISHED" and "best_val_macro_auc" in r.data.metrics for r in complete
    )
    # The best trial: test metrics with CI, ROC curves, per-class table, the model.
    best = [r for r in trials if r.data.tags.get("ecg_sweep.best") == "true"]
    assert len(best) == 1 and best[0].info.run_id == out.best_run_id
    bm = best[0].data.metrics
    for key in ("test_macro_auc", "test_macro_f1", "test_exact_match_accuracy", "test_hamming_accuracy",
                "test_auc_NORM", "test_auc_HYP", "test_macro_auc_ci_low", "test_macro_auc_ci_high"):  # fmt: skip
        assert key in bm, key
    arts = {a.path for a in MlflowClient(cfg.tracking_uri).list_artifacts(out.best_run_id, "plots")}
    assert "plots/roc_test.png" in arts
    arts = {
        a.path for a in MlflowClient(cfg.tracking_uri).list_artifacts(out.best_run_id, "metrics")
    }
    assert "metrics/test_per_class.csv" in arts
    # the logged best model predicts the test fold as its logged metric says
    from ecg_sweep.engine import predict_proba
    from ecg_sweep.metrics import macro_auc
    from ecg_sweep.tracking.client import use_store
    from ecg_sweep.tracking.model_store import load_model

    use_store(cfg.tracking_uri)
    model, _ = load_model(out.best_model_uri)
    probs = predict_proba(model, learn_data.test.x)
    assert macro_auc(learn_data.test.y, probs) == pytest.approx(bm["test_macro_auc"], abs=1e-4)
    # Study run summary: best_* metrics, best params, Optuna plots.
    parent = MlflowClient(cfg.tracking_uri).get_run(parent.info.run_id)
    assert parent.data.metrics["best_val_macro_auc"] == pytest.approx(out.study.best_value)
    assert "best_test_macro_auc" in parent.data.metrics
    logged = {
        k.removeprefix("best_param."): v
        for k, v in parent.data.tags.items()
        if k.startswith("best_param.")
    }
    assert set(logged) == set(out.study.best_params)
    for k, v in out.study.best_params.items():
        assert logged[k] == str(v) or float(logged[k]) == pytest.approx(v), k
    plots = {
        a.path for a in MlflowClient(cfg.tracking_uri).list_artifacts(parent.info.run_id, "plots")
    }
    assert {"plots/optimization_history.png", "plots/parallel_coordinate.png"} <= plots


def test_resume_keeps_trials_and_parent_run(sweep_data, tmp_path):
    first = optimize(sweep_cfg(tmp_path, n_trials=2, max_epochs=1), sweep_data)
    second = optimize(sweep_cfg(tmp_path, n_trials=2, max_epochs=1), sweep_data)
    assert second.study_run_id == first.study_run_id
    assert len(second.study.trials) == 4
    parents, trials = runs_of(sweep_cfg(tmp_path).tracking_uri)
    assert len(parents) == 1 and len(trials) == 4
    assert sorted(int(r.data.tags["optuna.trial_number"]) for r in trials) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("sampler", "pruner"),
    [("tpe", "median"), ("random", "hyperband"), ("cmaes", "none"), ("gp", "median")],
)
def test_every_sampler_and_pruner(sweep_data, tmp_path, sampler, pruner):
    out = optimize(
        sweep_cfg(tmp_path, n_trials=3, max_epochs=2, sampler=sampler, pruner=pruner), sweep_data
    )
    assert len(out.study.trials) == 3 and out.counts["FAIL"] == 0
    assert type(out.study.sampler).__name__.lower().startswith(sampler[:2])
    expected = {"median": "MedianPruner", "hyperband": "HyperbandPruner", "none": "NopPruner"}
    assert type(out.study.pruner).__name__ == expected[pruner]
    params = MlflowClient(sweep_cfg(tmp_path).tracking_uri).get_run(out.study_run_id).data.params
    assert (params["sampler"], params["pruner"]) == (sampler, pruner)


def test_parallel_trials_in_threads(sweep_data, tmp_path):
    out = optimize(sweep_cfg(tmp_path, n_trials=4, max_epochs=1, n_jobs=2), sweep_data)
    assert sorted(t.number for t in out.study.trials) == [0, 1, 2, 3]
    parents, trials = runs_of(sweep_cfg(tmp_path).tracking_uri)
    assert len(parents) == 1 and len(trials) == 4
    assert {t.user_attrs["mlflow_run_id"] for t in out.study.trials} == {
        r.info.run_id for r in trials
    }
    assert all(r.info.status == "FINISHED" for r in trials)


def test_fixed_trial_rebuilds_best_model(sweep_data, tmp_path):
    import torch

    from ecg_sweep.config import split_params
    from ecg_sweep.engine import evaluate
    from ecg_sweep.metrics import macro_auc
    from ecg_sweep.models import SpaceContext, build_model, get_model_spec, model_info
    from ecg_sweep.models.space import apply_overrides
    from ecg_sweep.tracking.client import Tracker
    from ecg_sweep.tracking.model_store import download_checkpoint

    out = optimize(sweep_cfg(tmp_path, n_trials=2, max_epochs=1), sweep_data)
    spec = get_model_spec("vit")
    ctx = SpaceContext(12, 1000)
    space = apply_overrides(spec.search_space(ctx), dict(TINY_SPACE), "vit")
    params = spec.suggest(optuna.trial.FixedTrial(out.study.best_params), space, ctx)
    tracker = Tracker(sweep_cfg(tmp_path).tracking_uri, "ecg-vit")
    best = tracker.client.get_run(out.best_run_id).data
    for k, v in params.items():
        assert best.params[k] == str(v) or float(best.params[k]) == pytest.approx(float(v)), k
    # the params rebuild the architecture; its checkpoint reproduces the logged validation AUROC
    model_params, _ = split_params(params)
    model = build_model(model_info("vit", model_params, sweep_data))
    ckpt = torch.load(download_checkpoint(tracker, out.best_run_id, tmp_path), weights_only=True)
    model.load_state_dict(ckpt["state_dict"])
    probs, _ = evaluate(model, sweep_data.val)
    assert macro_auc(sweep_data.val.y, probs) == pytest.approx(
        best.metrics["best_val_macro_auc"], abs=1e-4
    )


def test_bad_configuration_fails_before_training(sweep_data, tmp_path):
    with pytest.raises(ConfigError, match="--sampler 'annealing' is unknown"):
        optimize(sweep_cfg(tmp_path, sampler="annealing"), sweep_data)
    with pytest.raises(ConfigError, match="'depthh' is not a parameter"):
        optimize(sweep_cfg(tmp_path, search_space=(("depthh", 2),)), sweep_data)
    with pytest.raises(TrackingError, match="cannot reach"):
        optimize(sweep_cfg(tmp_path, tracking_uri="http://127.0.0.1:9"), sweep_data)
    with pytest.raises(StorageError) as exc:
        optimize(
            sweep_cfg(tmp_path, storage="postgresql://ecg:s3cret@127.0.0.1:9/nope"), sweep_data
        )
    assert "s3cret" not in str(exc.value) and "ecg:***@" in str(exc.value)
    assert not (tmp_path / "optuna.db").exists() or not optuna.get_all_study_summaries(
        f"sqlite:///{tmp_path}/optuna.db"
    )


def test_trial_timeout_ends_trial_and_study_goes_on(sweep_data, tmp_path):
    out = optimize(
        sweep_cfg(tmp_path, n_trials=2, max_epochs=30, trial_timeout=1.5, pruner="none"), sweep_data
    )
    states = [t.state.name for t in out.study.trials]
    assert len(states) == 2 and set(states) <= {"PRUNED", "FAIL"}
    _, trials = runs_of(sweep_cfg(tmp_path).tracking_uri)
    assert all("timeout" in r.data.tags["ecg_sweep.stop_reason"] for r in trials)
    assert all(r.info.status in ("KILLED", "FAILED") for r in trials)


# --- several processes on one storage --------------------------------------------------------------


def _optimize_proc(
    data_dir: Path, cache: Path, workdir: Path, storage: str, tracking: str, n: int, extra=()
):
    space = workdir / "space.yaml"
    space.write_text(TINY_SPACE_YAML)
    return subprocess.Popen(
        [sys.executable, "-m", "ecg_sweep", "optimize", "--model", "vit", "--n-trials", str(n),
         "--max-epochs", "2", "--search-space", str(space), "--study-name", "shared",
         "--storage", storage, "--tracking-uri", tracking, "--data-dir", str(data_dir),
         "--cache-dir", str(cache), "--no-compress", "--no-cost-probe", "--set", "n_bootstrap=50", *extra],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
        # two workers on a 2-core machine: one thread each instead of oversubscribing
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip


def _assert_exact(storage: str, tracking: str, expected: int) -> None:
    study = optuna.load_study(study_name="shared", storage=storage)
    numbers = [t.number for t in study.trials]
    assert len(numbers) == expected and sorted(numbers) == list(range(expected))
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)
    parents, trials = runs_of(tracking)
    assert len(parents) == 1
    assert sorted(int(r.data.tags["optuna.trial_number"]) for r in trials) == list(range(expected))
    run_ids = {t.user_attrs["mlflow_run_id"] for t in study.trials}
    assert run_ids == {r.info.run_id for r in trials}
    # each worker runs its trials one after the other: overlapping trials prove two workers
    # really trained at the same time (not one after the other)
    spans = [(t.datetime_start, t.datetime_complete) for t in study.trials]
    assert any(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1 :])
    # both workers registered the study's best at their end: never one run twice
    client = MlflowClient(tracking, tracking)
    versions = client.search_model_versions("name = 'ecg-vit'")
    assert versions and len({v.run_id for v in versions}) == len(versions)


def test_two_processes_sqlite(synth_sweep, tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    procs = [
        _optimize_proc(synth_sweep, tmp_path / "cache", tmp_path, storage, tracking, 2)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    _assert_exact(storage, tracking, 4)


@pytest.fixture
def pg_url():
    psycopg = pytest.importorskip("psycopg")
    try:
        conn = psycopg.connect(
            "host=127.0.0.1 port=5432 dbname=postgres user=postgres connect_timeout=3",
            autocommit=True,
        )
    except psycopg.OperationalError as e:
        pytest.skip(f"PostgreSQL not reachable on 127.0.0.1:5432: {e}")
    name = f"ecg_sweep_{uuid.uuid4().hex[:10]}"
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    conn.close()


@pytest.mark.postgres
def test_two_processes_postgres(synth_sweep, tmp_path, pg_url):
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    procs = [
        _optimize_proc(synth_sweep, tmp_path / "cache", tmp_path, pg_url, tracking, 2)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    _assert_exact(pg_url, tracking, 4)


def test_sigkill_mid_trial_then_resume(synth_sweep, tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    hb = ("--heartbeat-interval", "1", "--grace-period", "3", "--pruner", "none")
    p = _optimize_proc(
        synth_sweep, tmp_path / "cache", tmp_path, storage, tracking, 5, (*hb, "--max-epochs", "30")
    )
    # Wait until trial 0 is complete and trial 1 is running, then kill the worker outright.
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            study = optuna.load_study(study_name="shared", storage=storage)
            states = [t.state.name for t in study.trials]
        except Exception:
            states = []
        if states[:1] == ["COMPLETE"] and "RUNNING" in states[1:]:
            break
        time.sleep(0.5)
    else:
        p.kill()
        pytest.fail(f"never saw a running trial after a complete one: {p.communicate()[0][-3000:]}")
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    killed = [t for t in study.trials if t.state.name == "RUNNING"][0]
    killed_run = killed.user_attrs["mlflow_run_id"]
    assert MlflowClient(tracking).get_run(killed_run).info.status == "RUNNING"
    time.sleep(4)  # past the grace period
    r = _optimize_proc(
        synth_sweep, tmp_path / "cache", tmp_path, storage, tracking, 1, (*hb, "--max-epochs", "1")
    )
    out = r.communicate(timeout=600)[0]
    assert r.returncode == 0, out
    study = optuna.load_study(study_name="shared", storage=storage)
    states = {t.number: t.state.name for t in study.trials}
    assert states[0] == "COMPLETE"  # no completed trial lost
    assert states[killed.number] == "FAIL"  # the dead worker's trial was failed ...
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retried) == 1 and retried[0].params == killed.params  # ... and retried
    run = MlflowClient(tracking).get_run(killed_run)
    assert run.info.status == "FAILED" and "heartbeat" in run.data.tags["ecg_sweep.stop_reason"]


# --- CLI ------------------------------------------------------------------------------------------


def test_cli_unreachable_tracking_is_one_line(synth_sweep, tmp_path):
    r = run_cli(
        "optimize", "--model", "vit", "--data-dir", str(synth_sweep), "--tracking-uri",
        "http://user:hunter2@127.0.0.1:9", "--storage", f"sqlite:///{tmp_path}/o.db", cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "hunter2" not in r.stderr + r.stdout
    assert (
        r.stderr.strip()
        .splitlines()[-1]
        .startswith("error: tracking URI http://user:***@127.0.0.1:9")
    )
    assert "trial 0" not in r.stderr  # nothing trained


def test_cli_bad_search_space_file(synth_sweep, tmp_path):
    (tmp_path / "s.yaml").write_text("depth: {low: 9, high: 2}\n")
    r = run_cli(
        "optimize",
        "--model",
        "vit",
        "--data-dir",
        str(synth_sweep),
        "--search-space",
        str(tmp_path / "s.yaml"),
        cwd=tmp_path,
    )
    assert (
        r.returncode == 2 and "'depth': low 9 > high 2" in r.stderr and "Traceback" not in r.stderr
    )


@pytest.mark.slow
@pytest.mark.postgres
def test_workers_opening_a_fresh_postgres_storage_at_once(pg_database):
    """Optuna's CREATE TABLEs race when workers start together on an empty database
    (UniqueViolation on pg_type); make_storage serializes that first touch."""
    url = f"postgresql://postgres@127.0.0.1:5432/{pg_database('race')}"
    code = "from ecg_sweep.sweep.study import make_storage; import sys; make_storage(sys.argv[1])"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    errors = [p.communicate(timeout=600)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), [e[-500:] for e in errors if e]
    assert optuna.get_all_study_names(url) == []  # a usable, empty storage


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "code", "line"),
    [
        (signal.SIGTERM, 143, "error: terminated (SIGTERM)"),
        (signal.SIGINT, 130, "error: interrupted"),
    ],
    ids=["sigterm", "ctrl-c"],
)
def test_signal_mid_trial_fails_the_trial_and_kills_its_runs(
    synth_sweep, tmp_path, sig, code, line
):
    """SIGTERM behaves like Ctrl-C: the running trial FAILs in Optuna, its run and the study
    run end KILLED (not RUNNING until a resume), and the command says so in one line."""
    storage = f"sqlite:///{tmp_path}/optuna.db"
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    p = _optimize_proc(
        synth_sweep, tmp_path / "cache", tmp_path, storage, tracking, 3,
        ("--pruner", "none", "--max-epochs", "50"),
    )  # fmt: skip
    deadline = time.time() + 300
    running = None
    while time.time() < deadline and running is None:
        try:
            study = optuna.load_study(study_name="shared", storage=storage)
            running = next(
                (
                    t
                    for t in study.trials
                    if t.state.name == "RUNNING" and "mlflow_run_id" in t.user_attrs
                ),
                None,
            )
        except Exception:
            pass
        time.sleep(0.5)
    if running is None:
        p.kill()
        pytest.fail(f"never saw a running trial: {p.communicate()[0][-3000:]}")
    time.sleep(1)  # inside fit()
    p.send_signal(sig)
    out = p.communicate(timeout=120)[0]
    assert p.returncode == code, out
    assert out.rstrip().splitlines()[-1] == line and "Traceback" not in out, out
    assert "KeyboardInterrupt" not in out and "Terminated" not in out, out
    study = optuna.load_study(study_name="shared", storage=storage)
    assert study.trials[running.number].state.name == "FAIL"
    client = MlflowClient(tracking)
    run = client.get_run(running.user_attrs["mlflow_run_id"])
    assert run.info.status == "KILLED" and run.data.tags["optuna.trial_state"] == "FAIL"
    (parent,), _ = runs_of(tracking)
    assert parent.info.status == "KILLED"


def test_tracking_server_away_mid_trial_reason_in_optuna_run_closed_on_resume(
    sweep_data, tmp_path, monkeypatch
):
    """MLflow fails mid-trial and cannot close the run: the trial FAILs with its reason kept in
    Optuna; the next optimize of the study closes the run (FAILED, with that reason)."""
    import ecg_sweep.sweep.objective as objective
    from ecg_sweep.errors import TrackingError
    from ecg_sweep.tracking.client import Tracker

    def away(*a, **k):
        raise TrackingError("tracking URI http://mlflow:5000: cannot reach the tracking store")

    cfg = sweep_cfg(tmp_path, n_trials=1, max_epochs=1)
    with monkeypatch.context() as m:
        m.setattr(Tracker, "log_metrics", away)
        m.setattr(objective, "end_trial_run", away)
        with pytest.raises(TrackingError, match="cannot reach"):  # one line for the CLI
            optimize(cfg, sweep_data)
    study = optuna.load_study(study_name="s1", storage=cfg.storage)
    (trial,) = study.trials
    assert trial.state.name == "FAIL" and "cannot reach" in trial.user_attrs["fail_reason"]
    client = MlflowClient(cfg.tracking_uri)
    run_id = trial.user_attrs["mlflow_run_id"]
    assert client.get_run(run_id).info.status == "RUNNING"
    optimize(cfg, sweep_data)  # the resume
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["optuna.trial_state"] == "FAIL"
    assert "cannot reach" in run.data.tags["ecg_sweep.stop_reason"]


def test_mlflow_http_retries_are_bounded_during_a_study_unless_set(monkeypatch):
    from ecg_sweep.tracking.client import STUDY_HTTP_RETRIES, bounded_http_retries

    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")  # the user's own setting wins
    with bounded_http_retries():
        from mlflow.environment_variables import (
            MLFLOW_HTTP_REQUEST_MAX_RETRIES,
            MLFLOW_HTTP_REQUEST_TIMEOUT,
        )

        retries = int(STUDY_HTTP_RETRIES["MLFLOW_HTTP_REQUEST_MAX_RETRIES"])
        assert MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == retries < 7  # MLflow's default is 7
        assert MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 7
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
