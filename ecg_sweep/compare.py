"""``ecg-sweep compare``: a leaderboard of studies across model families, read from MLflow."""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from ecg_sweep.errors import ConfigError
from ecg_sweep.metrics import SUBGROUP_MIN_METRIC, SUBGROUPS
from ecg_sweep.tracking.client import Tracker, mask_url
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
    "html_report",
    "leaderboard",
    "rows_as_dicts",
    "worst_subgroup",
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
    # the best trial's lowest subgroup macro AUROC (test_subgroup_min_macro_auc) and its group
    worst_subgroup: str = "-"
    worst_subgroup_macro_auc: float = float("nan")


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


def worst_subgroup(metrics: dict) -> tuple[str, float]:
    """(subgroup, macro AUROC) of ``test_subgroup_min_macro_auc`` in a run's metrics: the
    eligible subgroup (enough records, both label values) with the lowest macro AUROC."""
    low = _f(metrics, f"test_{SUBGROUP_MIN_METRIC}")
    if not math.isfinite(low):
        return "-", float("nan")
    for g in SUBGROUPS:
        if _f(metrics, f"test_macro_auc_{g}") == low:
            return g, low
    return "-", low


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
                raise ConfigError(f"--experiment {name!r} not found in {mask_url(probe.uri)}")
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
                    **dict(
                        zip(
                            ("worst_subgroup", "worst_subgroup_macro_auc"),
                            worst_subgroup(best.data.metrics) if best else ("-", float("nan")),
                            strict=True,
                        )
                    ),
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
    ("worst subgroup AUROC", None, None),
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
    for name, key, fmt in COLUMNS:
        if key is None and name.startswith("worst"):
            out.append(
                "-" if not math.isfinite(row.worst_subgroup_macro_auc)
                else f"{row.worst_subgroup_macro_auc:.4f} ({row.worst_subgroup})"
            )  # fmt: skip
            continue
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
    plotted = False
    for r in rows:
        label = f"{r.model}/{r.study}"
        if math.isfinite(r.fp32_latency_ms) and math.isfinite(r.test_macro_auc):
            ax.scatter(r.fp32_latency_ms, r.test_macro_auc, marker="o")
            plotted = True
            ax.annotate(f"{label} fp32", (r.fp32_latency_ms, r.test_macro_auc), fontsize=7)
        if math.isfinite(r.int8_latency_ms) and math.isfinite(r.int8_test_macro_auc):
            ax.scatter(r.int8_latency_ms, r.int8_test_macro_auc, marker="^")
            ax.annotate(
                f"{label} {r.int8_method}", (r.int8_latency_ms, r.int8_test_macro_auc), fontsize=7
            )
    if plotted:
        ax.set_xscale("log")
    else:  # studies run with --no-compress: latency is measured by compression
        ax.text(
            0.5, 0.5, "no latency measured yet:\nrun `ecg-sweep compress --study-name NAME`",
            ha="center", va="center", transform=ax.transAxes, color="0.4",
        )  # fmt: skip
    ax.margins(x=0.25, y=0.15)  # room for the labels of the outermost points
    ax.set_xlabel("CPU latency, batch 1, p50 (ms, log)")
    ax.set_ylabel("test macro AUROC")
    ax.set_title("AUROC vs latency")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def write_report(
    rows: list[LeaderboardRow], path: Path, tracking_uri: str | None = None
) -> list[Path]:
    """Write ``report.md`` (+ a PNG beside it) or a self-contained ``report.html`` (plot
    embedded, no external resource: it opens offline and travels as one file)."""
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
        path.write_text(html_report(rows, fig, tracking_uri))
    else:
        plt.close(fig)
        raise ConfigError(f"--output {path}: must end in .md or .html")
    plt.close(fig)
    return written


_CSS = """
:root { color-scheme: light; --line: #d8dde3; --muted: #5b6570; --best: #eef7ee; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: #1d232a; margin: 2rem auto; max-width: 1400px; padding: 0 1.5rem; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.2rem; margin: 2rem 0 .5rem; }
p.meta { color: var(--muted); margin: 0 0 1.25rem; }
.scroll { overflow-x: auto; border: 1px solid var(--line); border-radius: 6px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: .45rem .7rem; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { background: #f3f5f7; text-align: left; font-weight: 600; position: sticky; top: 0;
     white-space: normal; vertical-align: bottom; min-width: 3.5rem; }
td.num, th.num { text-align: right; }
tbody tr:nth-child(even) { background: #fafbfc; }
tbody tr.best { background: var(--best); }
tbody tr.best td:first-child { font-weight: 600; }
figure { margin: 0; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; }
figcaption, dl { color: var(--muted); font-size: .9rem; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
dt { font-weight: 600; color: #1d232a; }
code { font-size: .8rem; }
td code { color: var(--muted); }
"""

_NOTES = [
    ("val AUROC", "best trial's validation macro AUROC (what the study optimized)"),
    ("test AUROC [95% CI]", "the best trial on the test fold, bootstrap 95% interval"),
    ("worst subgroup AUROC", "the best trial's lowest test macro AUROC over sex and age bands "
     "with >= 20 records and both label values of every class (the group in brackets)"),
    ("fp32 MB / ms", "size of the model and CPU latency, batch 1, p50, measured by compression"),
    ("int8 method", "the int8 variant compression recommended (fastest within 0.01 "
     "validation AUROC of fp32), else the fastest int8 variant"),
    ("wall min", "first trial start to last trial end"),
]  # fmt: skip


def html_report(rows: list[LeaderboardRow], fig, tracking_uri: str | None = None) -> str:
    """The leaderboard as one self-contained HTML page: escaped text, the AUROC-vs-latency
    figure embedded as a PNG data URI, no script, no external stylesheet or font."""
    import datetime

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130)
    img = base64.b64encode(buf.getvalue()).decode()
    numeric = {i for i, (_, key, fmt) in enumerate(COLUMNS) if key is None or fmt != "{}"}
    numeric.discard(0)
    head = "".join(
        f"<th{' class=num' if i in numeric else ''}>{html.escape(name)}</th>"
        for i, (name, _, _) in enumerate(COLUMNS)
    )
    head += "<th>study run</th>"
    body = []
    for n, r in enumerate(rows):
        tds = "".join(
            f"<td{' class=num' if i in numeric else ''}>{html.escape(c)}</td>"
            for i, c in enumerate(cells(r))
        )
        tds += f"<td><code>{html.escape(r.study_run_id)}</code></td>"
        best = " class=best" if n == 0 and math.isfinite(r.test_macro_auc) else ""
        body.append(f"<tr{best}>{tds}</tr>")
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    source = f" from <code>{html.escape(mask_url(tracking_uri))}</code>" if tracking_uri else ""
    notes = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in _NOTES)
    empty = (
        ""
        if rows
        else "<p>No studies found: run <code>ecg-sweep optimize --model M</code> first.</p>"
    )
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width, initial-scale=1'>"
        f"<title>ecg-sweep leaderboard</title><style>{_CSS}</style></head><body>"
        "<h1>ecg-sweep leaderboard</h1>"
        f"<p class=meta>{len(rows)} {'study' if len(rows) == 1 else 'studies'}, best trial of "
        f"each on the test fold, sorted by test macro AUROC; generated {html.escape(when)}"
        f"{source}.</p>{empty}"
        f"<div class=scroll><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></div>"
        "<h2>AUROC vs latency</h2><figure>"
        f"<img alt='Test macro AUROC against CPU latency (batch 1, p50), fp32 and int8 per study' "
        f"src='data:image/png;base64,{img}'>"
        "<figcaption>Circles: fp32 models; triangles: their int8 variant. Up and to the left "
        "is better.</figcaption></figure>"
        f"<h2>Columns</h2><dl>{notes}</dl></body></html>\n"
    )


def rows_as_dicts(rows: list[LeaderboardRow]) -> list[dict]:
    return [asdict(r) for r in rows]
