"""What cost-aware search buys: plain TPE vs the default guard vs an epoch-time budget.

Three arms search the full default ViT space on the same synthetic data, each with the same
wall-clock budget (``--minutes``; Optuna's ``timeout``, so the last trial may run over):
  plain     TPE as before issue 11: no cost probe, no guard (``--no-cost-probe``);
  guard     TPE with the probe and the default guard (``--max-cost-ratio 10``);
  budget    TPE with ``--max-epoch-seconds`` = ``--budget-ratio`` x the family default's
            projected epoch seconds (measured by the guard arm).
Printed per arm: trials completed / pruned / stopped as infeasible, best validation AUROC, the
test AUROC of the best trial with its bootstrap CI, seconds spent *training* trials whose real
epoch time broke the arm's criterion (guard: ratio x the default's epoch time; plain is judged
by the guard's criterion), and probe seconds. Then the best trial of each probed arm is
compressed (``onnx_int8``) and the estimated / measured int8 latency and size printed, and the
probe's overhead on a default-configuration trial (probe seconds / training seconds).

    nice -n 10 python benchmarks/search_cost.py [--records 600] [--minutes 3] [--epochs 3]
        [--space default|small]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import optuna
from mlflow import MlflowClient

from ecg_sweep.compression import compress_run
from ecg_sweep.config import CompressConfig, DataConfig, SweepConfig
from ecg_sweep.data.dataset import prepare
from ecg_sweep.data.synth import synthesize
from ecg_sweep.engine import fit, seed_everything
from ecg_sweep.models import build_model, get_model_spec, make_train_config, model_info
from ecg_sweep.sweep import optimize
from ecg_sweep.sweep.cost import INFEASIBLE_ATTR, REFERENCE_ATTR, probe_cost

# ``--space small``: a cut of the default ViT space that keeps its cost range (ECG-native
# signal patches vs the reference 8x8 image patches: ~15x more tokens) with small widths, and the
# tiny preset as the family default, so that a few-minute arm on 2 shared cores runs several
# trials. ``--space default`` is the setting (the full default space).
SMALL_SPACE = (
    ("input_repr", {"choices": ["signal", "image"]}),
    ("patch_time", {"choices": [20, 50]}),
    ("patch_leads", 12),
    ("patch_size", 8),
    ("image_height", 182),
    ("image_width", 256),
    ("embed_dim", {"choices": [48, 192]}),
    ("depth", {"low": 1, "high": 4}),
    ("num_heads", 2),
    ("mlp_ratio", 2.0),
    ("batch_size", 64),
)


def seconds(t: optuna.trial.FrozenTrial) -> float:
    if not t.datetime_complete:
        return 0.0
    return (t.datetime_complete - t.datetime_start).total_seconds()


def arm_row(name, out, wall, limit, client):
    trials = out.study.trials
    states = [t.state for t in trials]
    infeasible = [t for t in trials if INFEASIBLE_ATTR in t.user_attrs]
    wasted = 0.0
    for t in trials:
        run_id = t.user_attrs.get("mlflow_run_id")
        if not run_id or INFEASIBLE_ATTR in t.user_attrs or limit is None:
            continue
        epochs = [m.value for m in client.get_metric_history(run_id, "epoch_seconds")]
        # A trial stopped (timeout) before its first epoch ended, after more than the limit,
        # had an epoch over the limit too.
        if (epochs and statistics.mean(epochs) > limit) or (not epochs and seconds(t) > limit):
            wasted += seconds(t)
    probe = sum(t.user_attrs.get("cost", {}).get("probe_seconds", 0.0) for t in trials)
    m = out.best_metrics
    return {
        "arm": name,
        "wall_s": wall,
        "complete": states.count(optuna.trial.TrialState.COMPLETE),
        "pruned": states.count(optuna.trial.TrialState.PRUNED) - len(infeasible),
        "infeasible": len(infeasible),
        "failed": states.count(optuna.trial.TrialState.FAIL),
        "best_val_auc": out.best_trial.value if out.best_trial else float("nan"),
        "test_auc": m.get("test_macro_auc", float("nan")),
        "ci": (m.get("test_macro_auc_ci_low", float("nan")), m.get("test_macro_auc_ci_high", 0)),
        "s_training_infeasible": wasted,
        "s_probe": probe,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=600)
    ap.add_argument("--minutes", type=float, default=3.0, help="wall-clock budget per arm")
    ap.add_argument("--epochs", type=int, default=3, help="max epochs per trial")
    ap.add_argument("--ratio", type=float, default=10.0, help="the guard's --max-cost-ratio")
    ap.add_argument("--budget-ratio", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--space", choices=("default", "small"), default="default")
    ap.add_argument("--overhead-epochs", type=int, default=2, help="epochs of the default trial")
    ap.add_argument("--out", type=Path, default=None, help="work folder (default: a temp dir)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    work = args.out or Path(tempfile.mkdtemp(prefix="ecg-sweep-bench-cost-"))
    root = work / "synth"
    if not root.exists():
        synthesize(root, n_records=args.records, seed=5, sampling_rates=(100,))
    data = prepare(DataConfig(root=root, cache_dir=work / "cache"))
    print(f"data: {len(data.train)} train / {len(data.val)} val records; work folder {work}")

    def run(name: str, **kw):
        cfg = SweepConfig(
            model="vit",
            n_trials=None,
            timeout=args.minutes * 60,
            max_epochs=args.epochs,
            storage=f"sqlite:///{work}/{name}-optuna.db",
            tracking_uri=f"sqlite:///{work}/{name}-mlflow.db",
            study_name=name,
            seed=args.seed,
            fixed=(("n_bootstrap", 200),),
            search_space=SMALL_SPACE if args.space == "small" else (),
            preset="tiny" if args.space == "small" else None,
            # One trial may not overrun the arm's budget by more than the budget itself.
            trial_timeout=args.minutes * 60,
            **kw,
        )
        t0 = time.monotonic()
        out = optimize(cfg, data, "cpu")
        wall = time.monotonic() - t0
        return cfg, out, wall

    rows, outs = [], {}
    cfg, out, wall = run("guard", max_cost_ratio=args.ratio)
    ref = out.study.user_attrs[REFERENCE_ATTR]["epoch_seconds"]
    guard_limit = args.ratio * ref
    print(f"family default: {ref:.1f} s per epoch (projected); guard limit {guard_limit:.1f} s")
    outs["guard"] = (cfg, out)
    rows.append(arm_row("guard", out, wall, guard_limit, MlflowClient(cfg.tracking_uri)))
    budget = args.budget_ratio * ref
    cfg, out, wall = run("budget", max_epoch_seconds=budget)
    outs["budget"] = (cfg, out)
    rows.append(arm_row(f"budget {budget:.0f}s", out, wall, budget, MlflowClient(cfg.tracking_uri)))
    cfg, out, wall = run("plain", cost_probe=False)
    rows.append(arm_row("plain", out, wall, guard_limit, MlflowClient(cfg.tracking_uri)))

    head = (
        f"{'arm':<12} {'wall s':>7} {'done':>5} {'pruned':>6} {'infeas':>6} {'fail':>4} "
        f"{'best val':>8} {'test AUROC [95% CI]':>24} {'s train infeas':>14} {'s probe':>8}"
    )
    print(head)
    for r in rows:
        print(
            f"{r['arm']:<12} {r['wall_s']:>7.0f} {r['complete']:>5} {r['pruned']:>6} "
            f"{r['infeasible']:>6} {r['failed']:>4} {r['best_val_auc']:>8.4f} "
            f"{r['test_auc']:>8.4f} [{r['ci'][0]:.4f}, {r['ci'][1]:.4f}] "
            f"{r['s_training_infeasible']:>14.0f} {r['s_probe']:>8.0f}"
        )

    # Estimated vs measured int8 cost of each probed arm's best trial.
    ccfg = CompressConfig(methods=("onnx_int8",), n_bootstrap=50)
    for name, (cfg, out) in outs.items():
        if not out.best_run_id:
            continue
        compress_run(out.tracker, out.best_run_id, data, ccfg)
        m = MlflowClient(cfg.tracking_uri).get_run(out.best_run_id).data.metrics
        if "cost_latency_ratio_int8" not in m:
            print(f"{name} best trial {out.best_trial.number}: no int8 estimate to compare")
            continue
        print(
            f"{name} best trial {out.best_trial.number}: int8 latency estimated "
            f"{m['cost_latency_ms_p50_bs1_int8']:.2f} ms / measured "
            f"{m['measured_latency_ms_p50_bs1_int8']:.2f} ms = {m['cost_latency_ratio_int8']:.2f}; "
            f"size {m['cost_size_ratio_int8']:.3f}"
        )

    # The probe's overhead on a default-configuration trial (10 epochs, as `optimize`).
    spec = get_model_spec("vit")
    info = model_info("vit", spec.params("tiny" if args.space == "small" else None), data)
    epochs = args.overhead_epochs
    train_cfg = dataclasses.replace(make_train_config("vit", max_epochs=epochs), device="cpu")
    seed_everything(0)
    model = build_model(info)
    # Probed as a 10-epoch trial (the default --max-epochs), trained for fewer epochs.
    cost = probe_cost(model, data, dataclasses.replace(train_cfg, max_epochs=10))
    t0 = time.monotonic()
    fit(model, data, train_cfg)
    train_s = time.monotonic() - t0
    per_epoch = train_s / epochs
    print(
        f"probe overhead, default {'tiny ' * (args.space == 'small')}ViT: probe {cost.probe_seconds:.1f} s; {epochs} epochs "
        f"{train_s:.1f} s ({per_epoch:.1f} s each; projected {cost.epoch_seconds:.1f}) -> "
        f"{100 * cost.probe_seconds / (10 * per_epoch):.1f}% of a 10-epoch trial"
    )


if __name__ == "__main__":
    main()
