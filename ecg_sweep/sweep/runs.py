"""The MLflow view of a study: the parent run, trial runs, the best trial and the plots.

Names and tags come from :mod:`ecg_sweep.tracking.contract`. All calls use explicit run ids (safe from trial threads and
from several processes). The study's parent run id is kept in a study user attribute so a
resumed study re-attaches to it.
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ecg_sweep.tracking.client import Tracker
from ecg_sweep.tracking.contract import (
    BEST_PARAM_PREFIX,
    BEST_PARAMS_ARTIFACT,
    BEST_RUN_ID_TAG,
    BEST_TAG,
    BEST_TRIAL_NUMBER_TAG,
    KIND_STUDY,
    KIND_TAG,
    KIND_TRIAL,
    MODEL_TAG,
    PARENT_TAG,
    RUN_STATUS,
    SEARCH_SPACE_ARTIFACT,
    STOP_REASON_TAG,
    STUDY_NAME_TAG,
    STUDY_PLOTS_DIR,
    TRIAL_NUMBER_TAG,
    TRIAL_STATE_TAG,
    TRIALS_ARTIFACT,
    study_run_name,
)

__all__ = [
    "FAIL_REASON_ATTR",
    "RUN_ATTR",
    "attach_study_run",
    "close_finished_trial_runs",
    "end_trial_run",
    "log_study_summary",
    "mark_stale_trial",
    "previous_best_runs",
    "trial_tags",
]

log = logging.getLogger(__name__)

RUN_ATTR = "mlflow_run_id"  # trial user attr: the trial's MLflow run
_STUDY_RUN_ATTR = "mlflow_study_run:{experiment_id}"  # study user attr: the parent run


def attach_study_run(
    tracker: Tracker, study: optuna.Study, params: dict[str, Any], space: dict
) -> tuple[str, bool]:
    """Return (parent run id, created). Call under ``study_lock`` so workers share one run."""
    attr = _STUDY_RUN_ATTR.format(experiment_id=tracker.experiment_id)
    run_id = study.user_attrs.get(attr)
    if run_id:
        try:
            run = tracker.get_run(run_id)
            if run.info.lifecycle_stage == "active":
                tracker.client.update_run(run_id, status="RUNNING")
                tracker.log_params(run_id, params)
                return run_id, False
        except Exception:  # deleted, or the store was reset: start a new parent run
            log.warning("study run %s not found in the tracking store; creating a new one", run_id)
    run_id = tracker.start_run(
        study_run_name(study.study_name),
        tags={
            KIND_TAG: KIND_STUDY,
            STUDY_NAME_TAG: study.study_name,
            MODEL_TAG: params.get("model", ""),
        },
    )
    tracker.log_params(run_id, params)
    tracker.log_dict(run_id, space, SEARCH_SPACE_ARTIFACT)
    study.set_user_attr(attr, run_id)
    return run_id, True


def trial_tags(study: optuna.Study, trial_number: int, model: str) -> dict[str, Any]:
    return {
        KIND_TAG: KIND_TRIAL,
        STUDY_NAME_TAG: study.study_name,
        TRIAL_NUMBER_TAG: trial_number,
        TRIAL_STATE_TAG: "RUNNING",
        MODEL_TAG: model,
    }


def end_trial_run(tracker: Tracker, run_id: str, state: str, reason: str | None = None) -> None:
    tags = {TRIAL_STATE_TAG: state}
    if reason:
        tags[STOP_REASON_TAG] = reason[:5000]
    tracker.set_tags(run_id, tags)
    tracker.end_run(run_id, RUN_STATUS[state])


FAIL_REASON_ATTR = "fail_reason"  # trial user attr: why it failed, recorded in Optuna first


def close_finished_trial_runs(tracker: Tracker, study: optuna.Study, study_run_id: str) -> int:
    """End the runs left RUNNING by trials that Optuna has finished (the tracking server was
    away when the trial ended): with the trial's state and the reason Optuna recorded.
    Returns how many were closed."""
    runs = tracker.search_runs(
        f"tags.`{PARENT_TAG}` = '{study_run_id}' and attributes.status = 'RUNNING'"
    )
    if not runs:
        return 0
    by_run = {t.user_attrs.get(RUN_ATTR): t for t in study.get_trials(deepcopy=False)}
    closed = 0
    for r in runs:
        t = by_run.get(r.info.run_id)
        if t is None or t.state.name not in RUN_STATUS:  # a live trial of another worker
            continue
        reason = t.user_attrs.get(FAIL_REASON_ATTR) or "closed on resume: left RUNNING"
        end_trial_run(
            tracker, r.info.run_id, t.state.name, None if t.state.name == "COMPLETE" else reason
        )
        closed += 1
    return closed


def mark_stale_trial(tracker: Tracker, trial: FrozenTrial) -> None:
    """A worker died mid-trial (heartbeat stale): its run ends FAILED instead of RUNNING forever."""
    run_id = trial.user_attrs.get(RUN_ATTR)
    if not run_id:
        return
    try:
        end_trial_run(
            tracker, run_id, "FAIL", "worker stopped sending heartbeats (killed?); trial retried"
        )
    except Exception as e:
        log.warning("could not close the run %s of stale trial %d: %s", run_id, trial.number, e)


def _plots(study: optuna.Study, out: Path) -> list[Path]:
    """Optuna's optimization history, parameter importances and parallel coordinates."""
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as vm

    made = []
    plots = {
        "optimization_history": vm.plot_optimization_history,
        "param_importances": vm.plot_param_importances,
        "parallel_coordinate": vm.plot_parallel_coordinate,
        "intermediate_values": vm.plot_intermediate_values,
    }
    for name, fn in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = fn(study)
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(9, 5)
            fig.tight_layout()
            path = out / f"{name}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            made.append(path)
        except Exception as e:  # e.g. importances need >= 2 complete trials with varying params
            log.info("skipped the %s plot: %s", name, str(e).splitlines()[0] if str(e) else e)
        try:
            import optuna.visualization as pv

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fig = getattr(pv, fn.__name__)(study)
            path = out / f"{name}.html"
            fig.write_html(str(path), include_plotlyjs="cdn")
            made.append(path)
        except Exception:  # plotly missing or too few trials: the PNG is enough
            pass
    return made


def log_study_summary(
    tracker: Tracker,
    study_run_id: str,
    study: optuna.Study,
    best_run_id: str | None,
    best_metrics: dict[str, float],
) -> None:
    """best_* metrics, best params (as tags: they change when a resumed study finds better),
    trial counts and the Optuna plots on the study run."""
    states = [t.state for t in study.trials]
    counts = {
        s.name.lower(): states.count(s)
        for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    }
    metrics = {f"n_trials_{k}": v for k, v in counts.items()}
    metrics["n_trials"] = len(study.trials)
    tags: dict[str, Any] = {}
    if best_run_id is not None:
        best = study.best_trial
        metrics["best_val_macro_auc"] = best.value
        metrics["best_trial_number"] = best.number
        for k, v in best_metrics.items():
            if k.startswith("test_"):
                metrics[f"best_{k}"] = v
        tags.update({f"{BEST_PARAM_PREFIX}{k}": v for k, v in best.params.items()})
        tags.update({BEST_TRIAL_NUMBER_TAG: best.number, BEST_RUN_ID_TAG: best_run_id})
        tracker.log_dict(
            study_run_id,
            {
                "trial": best.number,
                "value": best.value,
                "params": best.params,
                "run_id": best_run_id,
            },
            BEST_PARAMS_ARTIFACT,
        )
    tracker.log_metrics(study_run_id, metrics)
    tracker.set_tags(study_run_id, tags)
    with tempfile.TemporaryDirectory() as d:
        for path in _plots(study, Path(d)):
            tracker.log_artifact(study_run_id, path, STUDY_PLOTS_DIR)
    rows = [
        {"number": t.number, "state": t.state.name, "value": t.value, **t.params}
        for t in study.trials
    ]
    tracker.log_text(study_run_id, json.dumps(rows, indent=1, default=str), TRIALS_ARTIFACT)


def previous_best_runs(tracker: Tracker, study_run_id: str) -> list[str]:
    runs = tracker.search_runs(
        f"tags.`{PARENT_TAG}` = '{study_run_id}' and tags.`{BEST_TAG}` = 'true'"
    )
    return [r.info.run_id for r in runs]
