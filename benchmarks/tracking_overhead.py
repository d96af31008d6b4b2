"""Cost of tracking a study in MLflow: ours vs none vs optuna-integration's MLflowCallback.

The same N-trial study (fixed parameters, tiny ViT, sqlite MLflow and Optuna stores in a temp
dir) runs four ways, interleaved round by round (order rotated every round) in one process:
  none      plain Optuna objective: fit() with trial.report/should_prune, no MLflow;
  ours      ecg_sweep.sweep.optimize(): nested trial runs, params, per-epoch curves, tags,
            the best-weights checkpoint artifact of every trial;
  callback  optuna-integration MLflowCallback (params + final value per trial; flat runs);
  ours+sys  ours with --system-metrics (MLflow's SystemMetricsMonitor on every trial run,
            sampling every --sys-interval seconds).
Pruning is off in all three so that each trial trains the same epochs. Per-trial time = Optuna's datetime_complete - datetime_start (the end-of-study evaluation of the
best trial on the test fold is not a per-trial cost and is excluded). Goals: ours <= 3% over
none; ours+sys <= 3% over ours.

    python benchmarks/tracking_overhead.py [--trials 4] [--rounds 3] [--epochs 3] [--sys-interval 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import optuna

from ecg_sweep.config import DataConfig, SweepConfig
from ecg_sweep.data.dataset import prepare
from ecg_sweep.data.synth import synthesize
from ecg_sweep.engine import fit, seed_everything
from ecg_sweep.models import build_model, make_train_config, model_info
from ecg_sweep.sweep import optimize

PARAMS = {
    "input_repr": "signal", "patch_time": 20, "patch_leads": 12, "embed_dim": 64, "num_heads": 2,
    "depth": 2, "mlp_ratio": 2.0, "dropout": 0.1, "drop_path": 0.0, "lr": 2e-3,
    "weight_decay": 0.01, "batch_size": 64,
}  # fmt: skip


def trial_seconds(study: optuna.Study) -> list[float]:
    return [
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in study.trials
        if t.datetime_complete
    ]


def plain_objective(data, epochs):
    def objective(trial: optuna.Trial) -> float:
        params = {k: trial.suggest_categorical(k, [v]) for k, v in PARAMS.items()}
        model_params = {
            k: v for k, v in params.items() if k not in ("lr", "weight_decay", "batch_size")
        }
        cfg = make_train_config(
            "vit", max_epochs=epochs, lr=params["lr"], weight_decay=params["weight_decay"],
            batch_size=params["batch_size"], seed=trial.number,
        )  # fmt: skip
        seed_everything(cfg.seed)
        model = build_model(model_info("vit", model_params, data))

        def hook(epoch, m):
            trial.report(m["val_macro_auc"], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        return fit(model, data, cfg, on_epoch_end=hook).best_val_macro_auc

    return objective


def monitor_cost(tracking_uri: str, samples: int = 30) -> float:
    """Seconds of one system-metrics sample as MLflow's monitor thread spends them: read every
    monitor (psutil), check the run is still RUNNING, log the aggregated metrics; flushed."""
    from mlflow import MlflowClient
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    from ecg_sweep.tracking.client import Tracker

    tracker = Tracker(tracking_uri, "bench-system-metrics")
    run_id = tracker.start_run("monitor")
    mon = SystemMetricsMonitor(run_id, tracking_uri=tracking_uri)
    mon.collect_metrics()  # warm-up (psutil's first cpu_percent is 0)
    t = time.perf_counter()
    for _ in range(samples):
        mon.collect_metrics()
        MlflowClient(tracking_uri).get_run(run_id)
        mon.publish_metrics(mon.aggregate_metrics())
    mon.mlflow_logger.flush()
    return (time.perf_counter() - t) / samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--sys-interval", type=float, default=2.0)
    ap.add_argument(
        "--monitor-only", action="store_true", help="only the per-sample cost of system metrics"
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ecg-bench-") as tmp:
        per = monitor_cost(f"sqlite:///{tmp}/mlflow.db")
    print(
        f"system metrics: {1000 * per:.1f} ms per sample (collect + run check + log, sqlite) = "
        f"{100 * per / 10:.2f}% of one core at MLflow's default 10 s interval, "
        f"{100 * per / args.sys_interval:.2f}% at {args.sys_interval:g} s"
    )
    if args.monitor_only:
        return
    os.environ["MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"] = str(args.sys_interval)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    os.environ["MLFLOW_LOGGING_LEVEL"] = "WARNING"
    from optuna_integration.mlflow import MLflowCallback

    times: dict[str, list[float]] = {"none": [], "ours": [], "callback": [], "ours+sys": []}
    with tempfile.TemporaryDirectory(prefix="ecg-bench-") as tmp:
        tmp = Path(tmp)
        synthesize(tmp / "synth", n_records=args.records, seed=0, sampling_rates=(100,))
        data = prepare(DataConfig(root=tmp / "synth", cache_dir=tmp / "cache"))
        space = tuple((k, v) for k, v in PARAMS.items())
        # Identical work in every variant: no pruning (trials differ only by seed).
        nop = optuna.pruners.NopPruner()
        for r in range(args.rounds):

            def none(r=r) -> list[float]:
                study = optuna.create_study(
                    direction="maximize", storage=f"sqlite:///{tmp}/none{r}.db", study_name="b",
                    pruner=nop,
                )  # fmt: skip
                study.optimize(plain_objective(data, args.epochs), n_trials=args.trials)
                return trial_seconds(study)

            ours_cfg = SweepConfig(
                model="vit", n_trials=args.trials, max_epochs=args.epochs, search_space=space,
                storage=f"sqlite:///{tmp}/ours{r}.db", tracking_uri=f"sqlite:///{tmp}/mlflow_ours.db",
                study_name=f"b{r}", pruner="none", fixed=(("n_bootstrap", 10),),
            )  # fmt: skip

            def ours(cfg=ours_cfg) -> list[float]:
                return trial_seconds(optimize(cfg, data).study)

            def callback(r=r) -> list[float]:
                cb = MLflowCallback(
                    tracking_uri=f"sqlite:///{tmp}/mlflow_cb.db", metric_name="val_macro_auc"
                )
                study = optuna.create_study(
                    direction="maximize", storage=f"sqlite:///{tmp}/cb{r}.db", study_name="b",
                    pruner=nop,
                )  # fmt: skip
                study.optimize(
                    plain_objective(data, args.epochs), n_trials=args.trials, callbacks=[cb]
                )
                return trial_seconds(study)

            sys_cfg = dataclasses.replace(
                ours_cfg, storage=f"sqlite:///{tmp}/sys{r}.db",
                tracking_uri=f"sqlite:///{tmp}/mlflow_sys.db", system_metrics=True,
            )  # fmt: skip

            def ours_sys(cfg=sys_cfg) -> list[float]:
                return trial_seconds(optimize(cfg, data).study)

            variants = [
                ("none", none),
                ("ours", ours),
                ("callback", callback),
                ("ours+sys", ours_sys),
            ]
            # The order rotates every round: drift and warm-up hit every variant alike.
            shift = r % len(variants)
            for name, run in variants[shift:] + variants[:shift]:
                times[name] += run()
            print(
                f"round {r}: "
                + ", ".join(f"{k} {statistics.median(v):.2f} s/trial" for k, v in times.items()),
                flush=True,
            )
    base = statistics.median(times["none"])
    for k, v in times.items():
        med = statistics.median(v)
        print(
            f"{k:9s} median {med:6.2f} s/trial over {len(v)} trials  overhead vs none {100 * (med / base - 1):+5.1f}%"
        )
    ours = statistics.median(times["ours"]) / base - 1
    print(
        f"ours costs {1000 * (statistics.median(times['ours']) - base):+.0f} ms per trial of {args.epochs} epochs"
    )
    print(f"RATIO ours/none = {1 + ours:.3f} (goal <= 1.03)")
    sys_ratio = statistics.median(times["ours+sys"]) / statistics.median(times["ours"])
    print(
        f"RATIO ours+sys/ours = {sys_ratio:.3f} (goal <= 1.03; system metrics every "
        f"{args.sys_interval:g} s)"
    )


if __name__ == "__main__":
    main()
