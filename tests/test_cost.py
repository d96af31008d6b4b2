"""Cost-aware search: the cost probe before training, budgets as Optuna constraints, the default
guard, measured vs estimated int8 cost after compression, and promote's latency budget."""

from __future__ import annotations

import math

import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from ecg_sweep.config import CompressConfig, SweepConfig
from ecg_sweep.errors import ConfigError
from ecg_sweep.sweep import optimize
from ecg_sweep.sweep.cost import REFERENCE_ATTR, TrialCost, check_cost
from tests.conftest import TINY_VIT_SPACE

COST_METRICS = (
    "cost_params",
    "cost_size_bytes_int8",
    "cost_latency_ms_p50_bs1_int8",
    "cost_latency_ms_p50_bs1_fp32",
    "cost_epoch_seconds",
)
EPOCH_METRICS = ("train_loss", "val_loss", "val_macro_auc")


def cost_cfg(tmp_path, name: str, **kw) -> SweepConfig:
    base = dict(
        model="vit",
        n_trials=1,
        max_epochs=1,
        search_space=(*TINY_VIT_SPACE, ("lr", 2e-3)),
        storage=f"sqlite:///{tmp_path}/optuna.db",
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        study_name=name,
        fixed=(("n_bootstrap", 20),),
    )
    base.update(kw)
    return SweepConfig(**base)


def trial_run(cfg: SweepConfig, trial):
    client = MlflowClient(cfg.tracking_uri, cfg.tracking_uri)
    return client, client.get_run(trial.user_attrs["mlflow_run_id"])


def test_budgets_constraints_and_measured_cost(sweep_data, tmp_path):
    # An impossible size budget: the trial is measured, never trained, and Optuna sees why.
    cfg = cost_cfg(tmp_path, "tight", max_size_mb=1e-4)
    out = optimize(cfg, sweep_data)
    t = out.study.trials[0]
    assert t.state == TrialState.PRUNED and out.best_trial is None
    assert t.constraints["size_mb_int8"] > 0  # what TPE / GP / NSGA-II read (system attrs)
    assert t.user_attrs["constraints"] == pytest.approx(t.constraints)
    client, run = trial_run(cfg, t)
    assert run.info.status == "KILLED"
    assert "int8 size" in run.data.tags["ecg_sweep.infeasible"]
    assert "--max-size-mb 0.0001" in run.data.tags["ecg_sweep.infeasible"]
    assert all(k in run.data.metrics for k in COST_METRICS)
    assert not any(k in run.data.metrics for k in EPOCH_METRICS)  # not one epoch ran
    assert not client.list_artifacts(run.info.run_id, "checkpoint")

    # Generous budgets: the trial trains, carries its (negative) constraint values, and its
    # cost was logged before its first epoch.
    cfg = cost_cfg(tmp_path, "loose", max_latency_ms=1e6, max_size_mb=1e3, max_epoch_seconds=1e6)
    out = optimize(cfg, sweep_data)
    t = out.study.trials[0]
    assert t.state == TrialState.COMPLETE
    assert set(t.constraints) == {"latency_ms_int8", "size_mb_int8", "epoch_seconds"}
    assert all(v < 0 for v in t.constraints.values())
    client, run = trial_run(cfg, t)
    assert "ecg_sweep.infeasible" not in run.data.tags
    first_epoch = client.get_metric_history(run.info.run_id, "train_loss")[0].timestamp
    for k in COST_METRICS:
        assert client.get_metric_history(run.info.run_id, k)[0].timestamp <= first_epoch
    assert run.data.metrics["cost_params"] == float(run.data.params["n_params"])

    # After compression: the int8 variant as measured, beside the estimate, with their ratio.
    from ecg_sweep.compression import compress_run
    from ecg_sweep.registry import fold_fingerprint, promote, register_study_best

    ccfg = CompressConfig(
        methods=("onnx_int8",), latency_warmup=2, latency_rounds=2, latency_block=3, n_bootstrap=20
    )
    report = compress_run(out.tracker, out.best_run_id, sweep_data, ccfg)
    m = client.get_run(out.best_run_id).data.metrics
    measured = report.row("onnx_int8").metrics
    assert m["measured_latency_ms_p50_bs1_int8"] == measured["latency_ms_p50_bs1"]
    assert m["cost_latency_ratio_int8"] == pytest.approx(
        m["cost_latency_ms_p50_bs1_int8"] / measured["latency_ms_p50_bs1"]
    )
    # Same architecture, same export and quantization: the size estimate is close.
    assert m["cost_size_ratio_int8"] == pytest.approx(1.0, abs=0.1)

    # promote --max-latency-ms: refused over the measured latency, accepted within it.
    fold = fold_fingerprint(sweep_data.test.ecg_ids, str(sweep_data.root), sweep_data.config.task)
    register_study_best(out.tracker, out.best_run_id, "vit", fold)
    with pytest.raises(ConfigError, match=r"measured latency .* exceeds --max-latency-ms 1e-06"):
        promote(out.tracker, "vit", max_latency_ms=1e-6)
    assert promote(out.tracker, "vit", max_latency_ms=1e6)["version"] == "1"


# An image ViT with 8x8 patches (736 tokens) against the tiny signal ViT's 50 tokens:
# tens of times slower per epoch, in a configuration cheap to probe (batch 4).
SLOW_SPACE = (
    ("input_repr", "image"),
    ("patch_size", 8),
    ("embed_dim", 128),
    ("num_heads", 4),
    ("depth", 4),
    ("mlp_ratio", 4.0),
    ("batch_size", 4),
    ("lr", 1e-3),
)


def test_guard_stops_a_much_slower_configuration_and_resume_keeps_its_unit(sweep_data, tmp_path):
    cfg = cost_cfg(tmp_path, "guard", preset="tiny", search_space=SLOW_SPACE)
    out = optimize(cfg, sweep_data)
    ref = out.study.user_attrs[REFERENCE_ATTR]
    t = out.study.trials[0]
    assert t.state == TrialState.PRUNED and t.constraints["cost_ratio"] > 0
    client, run = trial_run(cfg, t)
    reason = run.data.tags["ecg_sweep.infeasible"]
    # One line naming both costs.
    assert "\n" not in reason and "--max-cost-ratio 10" in reason
    assert f"{t.user_attrs['cost']['epoch_seconds']:.1f} s per epoch" in reason
    assert f"family default's {ref['epoch_seconds']:.1f} s" in reason
    assert not any(k in run.data.metrics for k in EPOCH_METRICS)
    # The probe stopped at the epoch projection: no int8 export for a trial that cannot train.
    assert "cost_latency_ms_p50_bs1_int8" not in run.data.metrics

    # Resumed: the study's unit is reused (not measured again), and the guard still holds.
    again = optimize(cfg, sweep_data)
    assert again.study.user_attrs[REFERENCE_ATTR] == ref
    t2 = again.study.trials[1]
    assert t2.state == TrialState.PRUNED
    assert f"family default's {ref['epoch_seconds']:.1f} s" in t2.user_attrs["infeasible"]


def test_check_cost_budgets_and_guard_switches():
    cost = TrialCost(
        params=10, epoch_seconds=50.0, size_bytes_int8=2e6, latency_ms_int8=4.0, latency_ms_fp32=8
    )
    base = dict(model="vit")
    values, reason = check_cost(cost, SweepConfig(**base), reference_epoch_seconds=2.0)
    assert values == {"cost_ratio": pytest.approx(50 / 20 - 1)} and "25.0x" in reason
    assert check_cost(cost, SweepConfig(**base, max_cost_ratio=0), 2.0) == ({}, None)
    assert check_cost(cost, SweepConfig(**base, max_cost_ratio=30), 2.0)[1] is None
    # Any budget replaces the guard; each broken budget is named.
    values, reason = check_cost(cost, SweepConfig(**base, max_latency_ms=2, max_size_mb=5), 2.0)
    assert set(values) == {"latency_ms_int8", "size_mb_int8"}
    assert values["size_mb_int8"] == pytest.approx(2 / 5 - 1)
    assert reason == "int8 batch-1 latency 4.00 ms > --max-latency-ms 2"
    # A latency/size budget that could not be checked is not met.
    blind = TrialCost(params=10, epoch_seconds=1.0, int8_error="RuntimeError: export failed")
    assert "could not be measured" in check_cost(blind, SweepConfig(**base, max_size_mb=5), 2)[1]
    assert check_cost(blind, SweepConfig(**base, max_epoch_seconds=5), 2)[1] is None
    for bad in (dict(max_latency_ms=0), dict(max_size_mb=-1), dict(max_cost_ratio=0.5)):
        with pytest.raises(ConfigError, match="--max-"):
            SweepConfig(**base, **bad)
    with pytest.raises(ConfigError, match="--no-cost-probe"):
        SweepConfig(**base, max_epoch_seconds=10, cost_probe=False)
    assert math.isclose(SweepConfig(**base, cost_probe=False).guard_ratio, 0.0)


def test_cli_bad_budget_is_one_line(synth_sweep, tmp_path):
    from tests.conftest import run_cli

    r = run_cli(
        "optimize", "--model", "vit", "--data-dir", str(synth_sweep), "--max-cost-ratio", "0.5",
        "--storage", f"sqlite:///{tmp_path}/o.db", "--tracking-uri", f"sqlite:///{tmp_path}/m.db",
        cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        "error: --max-cost-ratio must be 0 (off) or >= 1, got 0.5"
    )
    assert not (tmp_path / "o.db").exists()  # nothing was created
