"""``ecg-sweep compare``: a leaderboard of studies across model families, read from MLflow."""

from __future__ import annotations

import base64
import io
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from ecg_sweep.errors import ConfigError
from ecg_sweep.tracking.client import Tracker
from ecg_sweep.tracking.contract import (
    BEST_RUN_ID_TAG,
    EXPERIMENT_PREFIX,
    KIND_COMPRESSION,
    KIND_STUDY,
    KIND_TAG,
    METHOD_TAG,
    MODEL_TAG,
    PARENT_TAG,
    RECOMMENDED_TAG,
    STUDY_NAME_TAG,
    model_from_experiment,
)

__all__ = [
    "COLUMNS",
    "LeaderboardRow",
    "auc_latency_figure",
    "cells",
    "compression_metrics",
    "leaderboard",
    "rows_as_dicts",
    "write_report",
]


@dataclass
class LeaderboardRow:
    experiment: str
    model: str
    study: str
    trials: int
    best_val_macro_auc: float
    test_macro_auc: float
    test_macro_auc_ci_low: float
    test_macro_auc_ci_high: float
    test_macro_f1: float
    n_params: float
    fp32_size_mb: float
    fp32_latency_ms: float
    int8_method: str
    int8_size_mb: float
    int8_latency_ms: float
    int8_test_macro_auc: float
    wall_minutes: float
    study_run_id: str


def _f(d: dict, k: str) -> float:
    v = d.get(k)
    return float(v) if v is not None else float("nan")


def compression_metrics(
    tracker: Tracker, best_run_id: str, recommended: str | None
) -> tuple[dict, dict | None, str]:
    """(fp32 metrics, int8 metrics, int8 method) of the best trial's compression runs.

    The int8 variant is the one compression recommended (fastest within the validation AUROC
    budget; the one registered beside the fp32 model); without one, the fastest int8 variant.
    """
    runs = tracker.search_runs(
        f"tags.`{PARENT_TAG}` = '{best_run_id}' and tags.`{KIND_TAG}` = '{KIND_COMPRESSION}'"
    )
    fp32, int8 = {}, {}
    for r in runs:
        method = r.data.tags.get(METHOD_TAG, "")
        if method == "fp32":
            fp32 = r.data.metrics
        elif "int8" in method and "speedup_bs1" in r.data.metrics:
            int8[method] = r.data.metrics
    if recommended in int8:
        return fp32, int8[recommended], recommended
    if not int8:
        return fp32, None, ""
    method = max(int8, key=lambda k: int8[k]["speedup_bs1"])
    return fp32, int8[method], method


def leaderboard(
    tracking_uri: str | None, experiments: list[str] | None = None
) -> list[LeaderboardRow]:
    """One row per study run in the given experiments (default: every ``ecg-*`` experiment)."""
    probe = Tracker(tracking_uri, "Default")
    client = probe.client
    if experiments:
        exps = []
        for name in experiments:
            e = client.get_experiment_by_name(name)
            if e is None:
                raise ConfigError(f"--experiment {name!r} not found in {probe.uri}")
            exps.append(e)
    else:
        exps = [e for e in client.search_experiments() if e.name.startswith(EXPERIMENT_PREFIX)]
    rows = []
    for exp in exps:
        tracker = Tracker(probe.uri, exp.name)
        for study in tracker.search_runs(f"tags.`{KIND_TAG}` = '{KIND_STUDY}'"):
            m, t = study.data.metrics, study.data.tags
            best_id = t.get(BEST_RUN_ID_TAG)
            best = tracker.get_run(best_id) if best_id else None
            children = tracker.search_runs(f"tags.`{PARENT_TAG}` = '{study.info.run_id}'")
            starts = [c.info.start_time for c in children if c.info.start_time]
            ends = [c.info.end_time for c in children if c.info.end_time]
            wall = (max(ends) - min(starts)) / 60000 if starts and ends else float("nan")
            fp32, int8, method = (
                compression_metrics(tracker, best_id, best.data.tags.get(RECOMMENDED_TAG))
                if best is not None
                else ({}, None, "")
            )
            int8 = int8 or {}
            rows.append(
                LeaderboardRow(
                    experiment=exp.name,
                    model=t.get(MODEL_TAG, model_from_experiment(exp.name)),
                    study=t.get(STUDY_NAME_TAG, ""),
                    trials=int(m.get("n_trials", len(children))),
                    best_val_macro_auc=_f(m, "best_val_macro_auc"),
                    test_macro_auc=_f(m, "best_test_macro_auc"),
                    test_macro_auc_ci_low=_f(m, "best_test_macro_auc_ci_low"),
                    test_macro_auc_ci_high=_f(m, "best_test_macro_auc_ci_high"),
                    test_macro_f1=_f(m, "best_test_macro_f1"),
                    n_params=_f(best.data.params, "n_params") if best else float("nan"),
                    fp32_size_mb=_f(fp32, "size_bytes") / 1e6,
                    fp32_latency_ms=_f(fp32, "latency_ms_p50_bs1"),
                    int8_method=method or "-",
                    int8_size_mb=_f(int8, "size_bytes") / 1e6,
                    int8_latency_ms=_f(int8, "latency_ms_p50_bs1"),
                    int8_test_macro_auc=_f(int8, "test_macro_auc"),
                    wall_minutes=wall,
                    study_run_id=study.info.run_id,
                )
            )
    rows.sort(key=lambda r: -r.test_macro_auc if math.isfinite(r.test_macro_auc) else math.inf)
    return rows


COLUMNS = [
    ("model", "model", "{}"),
    ("study", "study", "{}"),
    ("trials", "trials", "{}"),
    ("val AUROC", "best_val_macro_auc", "{:.4f}"),
    ("test AUROC [95% CI]", None, None),
    ("test F1", "test_macro_f1", "{:.4f}"),
    ("params (M)", "n_params", None),
    ("fp32 MB", "fp32_size_mb", "{:.2f}"),
    ("fp32 ms", "fp32_latency_ms", "{:.2f}"),
    ("int8 method", "int8_method", "{}"),
    ("int8 MB", "int8_size_mb", "{:.2f}"),
    ("int8 ms", "int8_latency_ms", "{:.2f}"),
    ("int8 test AUROC", "int8_test_macro_auc", "{:.4f}"),
    ("wall min", "wall_minutes", "{:.1f}"),
]


def cells(row: LeaderboardRow) -> list[str]:
    out = []
    for _, key, fmt in COLUMNS:
        if key is None:
            out.append(
                "-" if not math.isfinite(row.test_macro_auc)
                else f"{row.test_macro_auc:.4f} [{row.test_macro_auc_ci_low:.4f}, {row.test_macro_auc_ci_high:.4f}]"
            )  # fmt: skip
            continue
        v = getattr(row, key)
        if key == "n_params":
            out.append("-" if not math.isfinite(v) else f"{v / 1e6:.2f}")
        elif isinstance(v, float) and not math.isfinite(v):
            out.append("-")
        else:
            out.append(fmt.format(v))
    return out


def auc_latency_figure(rows: list[LeaderboardRow]):
    """Test macro AUROC vs bs1 CPU latency: fp32 (circles) and best int8 (triangles) per study."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        label = f"{r.model}/{r.study}"
        if math.isfinite(r.fp32_latency_ms) and math.isfinite(r.test_macro_auc):
            ax.scatter(r.fp32_latency_ms, r.test_macro_auc, marker="o")
            ax.annotate(f"{label} fp32", (r.fp32_latency_ms, r.test_macro_auc), fontsize=7)
        if math.isfinite(r.int8_latency_ms) and math.isfinite(r.int8_test_macro_auc):
            ax.scatter(r.int8_latency_ms, r.int8_test_macro_auc, marker="^")
            ax.annotate(
                f"{label} {r.int8_method}", (r.int8_latency_ms, r.int8_test_macro_auc), fontsize=7
            )
    ax.set_xscale("log")
    ax.set_xlabel("CPU latency, batch 1, p50 (ms, log)")
    ax.set_ylabel("test macro AUROC")
    ax.set_title("AUROC vs latency")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def write_report(rows: list[LeaderboardRow], path: Path) -> list[Path]:
    """Write ``report.md`` (+ a PNG beside it) or a self-contained ``report.html``."""
    from matplotlib import pyplot as plt

    header = [c[0] for c in COLUMNS]
    fig = auc_latency_figure(rows)
    written = [path]
    if path.suffix == ".md":
        png = path.with_suffix(".png")
        fig.savefig(png, dpi=120)
        lines = [
            "# ecg-sweep leaderboard",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
        ]
        lines += ["| " + " | ".join(cells(r)) + " |" for r in rows]
        lines += ["", f"![AUROC vs latency]({png.name})", ""]
        path.write_text("\n".join(lines))
        written.append(png)
    elif path.suffix in (".html", ".htm"):
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120)
        img = base64.b64encode(buf.getvalue()).decode()
        head = "".join(f"<th>{h}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in cells(r)) + "</tr>" for r in rows)
        path.write_text(
            "<!doctype html><meta charset='utf-8'><title>ecg-sweep leaderboard</title>"
            "<style>body{font-family:sans-serif}td,th{padding:4px 8px;border-bottom:1px solid #ddd}</style>"
            f"<h1>ecg-sweep leaderboard</h1><table><tr>{head}</tr>{body}</table>"
            f"<h2>AUROC vs latency</h2><img alt='AUROC vs latency' src='data:image/png;base64,{img}'>"
        )
    else:
        plt.close(fig)
        raise ConfigError(f"--output {path}: must end in .md or .html")
    plt.close(fig)
    return written


def rows_as_dicts(rows: list[LeaderboardRow]) -> list[dict]:
    return [asdict(r) for r in rows]
