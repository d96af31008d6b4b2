"""What several commands share besides options: consoles, progress, data preparation, ``--set``
parsing, the compression table. Command modules import this, never each other."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

__all__ = [
    "console",
    "out",
    "progress_bar",
    "ProgressDisplay",
    "PROGRESS_INTERVAL_ENV",
    "path_or_none",
    "prepare_data",
    "parse_set_options",
    "print_compression_report",
    "compress_and_report",
    "register_and_report",
]

console = Console(
    stderr=True, soft_wrap=True, highlight=False
)  # status and progress go to stderr; results to stdout
out = Console(highlight=False, soft_wrap=True)


PROGRESS_INTERVAL_ENV = "ECG_SWEEP_PROGRESS_INTERVAL"  # seconds between plain progress lines
_FORCE_BAR_ENV = "ECG_SWEEP_FORCE_PROGRESS"  # draw the rich bar even when stderr is no terminal


class _RateColumn(ProgressColumn):
    """``123 samples/s`` (rich's moving-window speed of the task)."""

    def render(self, task) -> Text:
        unit = task.fields.get("unit", "")
        if task.speed is None:
            return Text(f"? {unit}/s", style="progress.data.speed")
        return Text(f"{task.speed:,.0f} {unit}/s", style="progress.data.speed")


@dataclasses.dataclass
class _Phase:
    what: str
    started: float
    last_line: float
    task: Any = None


class ProgressDisplay:
    """Progress of long work (epochs, cache builds, compression steps) on stderr.

    In a terminal: a rich bar per running job with done/total, rate and ETA (transient: the
    finished bars disappear, the lines that matter stay). Otherwise (CI logs, ``nohup``, pipes):
    one plain line per job every ``$ECG_SWEEP_PROGRESS_INTERVAL`` seconds (default 30), e.g.
    ``trial 3 epoch 2 train: 6400/17418 samples (37%), 118 samples/s, ETA 1:33``.
    ``update`` may be called from trial threads and must stay cheap: it is called per batch.
    """

    def __init__(self, unit: str = "samples", interval: float | None = None):
        self.unit = unit
        self.interval = (
            interval if interval is not None else float(os.environ.get(PROGRESS_INTERVAL_ENV, 30))
        )
        self.live = console.is_terminal or bool(os.environ.get(_FORCE_BAR_ENV))
        self._phases: dict[str, _Phase] = {}
        self._lock = threading.Lock()
        self._bar = (
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[unit]}"),
                _RateColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            )
            if self.live
            else None
        )

    def __enter__(self) -> ProgressDisplay:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()

    def update(self, key: str, what: str, done: int, total: int) -> None:
        """Job ``key`` is at ``done`` of ``total`` in its phase ``what``."""
        now = time.monotonic()
        with self._lock:
            phase = self._phases.get(key)
            if phase is None or phase.what != what:
                task = phase.task if phase is not None else None
                phase = _Phase(what, now, now, task)
                self._phases[key] = phase
                if self._bar is not None:
                    if task is None:
                        phase.task = self._bar.add_task(what, total=total, unit=self.unit)
                    else:  # a new phase of the same job: restart its rate and ETA
                        self._bar.reset(task, total=total, completed=0, description=what)
            if self._bar is not None:
                self._bar.update(phase.task, completed=done, total=total)
                return
            if now - phase.last_line < self.interval:
                return
            phase.last_line = now
        rate = done / max(now - phase.started, 1e-9)
        eta = (total - done) / rate if rate > 0 else math.inf
        eta_text = "?" if not math.isfinite(eta) else _clock(eta)
        console.print(
            f"{what}: {done}/{total} {self.unit} ({100 * done / max(total, 1):.0f}%), "
            f"{rate:,.1f} {self.unit}/s, ETA {eta_text}",
            markup=False,
            highlight=False,
        )

    def finish(self, key: str) -> None:
        """Job ``key`` ended: drop its bar."""
        with self._lock:
            phase = self._phases.pop(key, None)
            if phase is not None and self._bar is not None and phase.task is not None:
                self._bar.remove_task(phase.task)

    def hook(self, key: str, prefix: str = "") -> Callable[[str, int, int], None]:
        """A ``progress(what, done, total)`` callback (``fit``, ``compress_run``) for job ``key``."""
        return lambda what, done, total: self.update(key, f"{prefix}{what}", done, total)


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds + 0.5), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


@contextlib.contextmanager
def progress_bar(description: str, unit: str = "records") -> Iterator[Callable[[int, int], None]]:
    """Yield a ``progress(done, total)`` callback: a rich bar with rate and ETA on stderr in a
    terminal, plain periodic lines otherwise (see :class:`ProgressDisplay`)."""
    with ProgressDisplay(unit) as display:
        yield lambda done, total: display.update(description, description, done, total)


def path_or_none(p: Path | None) -> Path | None:
    return Path(p).expanduser() if p else None


def prepare_data(
    data_dir: Path | None,
    cache_dir: Path | None,
    sampling_rate: int,
    task: str,
    on_bad_record: str,
):
    """Build the DataConfig from CLI options and prepare the dataset once, with a progress bar."""
    from ecg_sweep.config import DataConfig
    from ecg_sweep.data.dataset import prepare

    cfg = DataConfig(
        root=path_or_none(data_dir),
        sampling_rate=sampling_rate,
        task=task,
        cache_dir=path_or_none(cache_dir),
        on_bad_record=on_bad_record,
    )
    with progress_bar("decoding records (once; cached)") as progress:
        data = prepare(cfg, progress)
    console.print(
        f"data: {data.root} @ {data.sampling_rate} Hz, train {len(data.train)} / val "
        f"{len(data.val)} / test {len(data.test)}, classes {', '.join(data.classes)}"
    )
    return data


def _coerce(key: str, text: str, like: Any) -> Any:
    from ecg_sweep.errors import ConfigError

    try:
        if isinstance(like, bool):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(like, int):
            return int(text)
        if isinstance(like, float):
            return float(text)
    except ValueError:
        raise ConfigError(f"--set {key}={text}: expected a {type(like).__name__}") from None
    return text


def parse_set_options(model: str, items: list[str]) -> dict[str, Any]:
    """``["lr=3e-4", "depth=4"]`` -> typed dict, typed like each key's default; unknown keys fail."""
    from ecg_sweep.config import TrainConfig
    from ecg_sweep.errors import ConfigError
    from ecg_sweep.models import get_model_spec

    spec = get_model_spec(model)
    known = {**{f.name: f.default for f in dataclasses.fields(TrainConfig)}, **spec.defaults}
    known.update(spec.train_defaults)
    out_: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value")
        if key not in known:
            raise ConfigError(
                f"--set {key}: not a parameter of model {model!r} or of training; valid: "
                f"{', '.join(sorted(known))}"
            )
        out_[key] = _coerce(key, value.strip(), known[key])
    return out_


def _fmt(value: float, spec: str) -> str:
    return (
        "-"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:{spec}}"
    )


def print_compression_report(report) -> None:
    """The summary table on stdout, then the recommended variant and where everything is.

    A wide terminal gets a rich table; pipes, logs and narrow terminals the markdown table
    (rich would squeeze 14 columns into 80 characters of ellipses).
    """
    from rich.table import Table

    from ecg_sweep.compression import MAX_AUC_DROP

    if not (out.is_terminal and out.width >= 150):
        out.print(report.to_markdown(), markup=False, highlight=False)
        _print_footer(report, MAX_AUC_DROP)
        return
    t = report.table()
    table = Table(
        title=f"compression of {report.model} (trial run {report.best_run_id}, "
        f"{report.config.threads} threads)",
        title_justify="left",
    )
    cols = [
        ("method", "method", "s"),
        ("size MB", "size_MB", ".3f"),
        ("size x", "size_ratio", ".3f"),
        ("params M", "params_M", ".3f"),
        ("nonzero", "nonzero", ".2f"),
        ("p50 bs1 ms", "p50_bs1_ms", ".2f"),
        ("p95 bs1 ms", "p95_bs1_ms", ".2f"),
        ("p50 bs32 ms", "p50_bs32_ms", ".1f"),
        ("speedup", "speedup_bs1", ".2f"),
        ("test AUROC", "test_auc", ".4f"),
        ("Δ AUROC", "test_auc_delta", "+.4f"),
        ("test F1", "test_f1", ".4f"),
        ("Δ F1", "test_f1_delta", "+.4f"),
    ]
    for header, _, _ in cols:
        table.add_column(header, justify="left" if header == "method" else "right")
    table.add_column("note")
    for _, r in t.iterrows():
        if r["status"] != "ok":
            table.add_row(r["method"], *["-"] * (len(cols) - 1), f"{r['status']}: {r['note']}")
            continue
        table.add_row(*[_fmt(r[key], spec) for _, key, spec in cols], r["runtime"])
    out.print(table)
    _print_footer(report, MAX_AUC_DROP)


def _print_footer(report, max_drop: float) -> None:
    from ecg_sweep.tracking.contract import COMPRESSION_DIR, compression_run_name

    out.print(
        f"recommended int8 variant (fastest within {max_drop} validation AUROC of fp32): "
        f"{report.recommended or 'none'}"
    )
    out.print(
        f"summary: artifacts {COMPRESSION_DIR}/summary.md, summary.csv, tradeoff.png of run "
        f"{report.best_run_id}; one nested run {compression_run_name('<method>')} per method"
    )


def register_and_report(tracker, run_id: str, model: str, data, include_compressed: bool):
    """Register a run's model (and the variant compression recommended) as versions of
    ``ecg-<model>``, the model as ``challenger``; print them. ``optimize`` and ``compress``."""
    from ecg_sweep.registry import fold_fingerprint, register_study_best

    versions = register_study_best(
        tracker,
        run_id,
        model,
        fold_fingerprint(data.test.ecg_ids, str(data.root), data.config.task),
        include_compressed=include_compressed,
    )
    for v in versions:
        alias = f" @{', @'.join(v.aliases)}" if v.aliases else ""
        out.print(
            f"registered {v.name} version {v.version} ({v.method}, test macro AUROC "
            f"{v.test_macro_auc:.4f}){alias}"
        )
    out.print(f"promote it to serving: ecg-sweep promote --model {model}")
    return versions


def compress_and_report(tracker, best_run_id: str, data, config=None):
    """Compress ``best_run_id`` (every method unless ``config`` says otherwise), print the
    table, return the report. ``ecg-sweep compress`` and ``optimize`` (unless --no-compress)."""
    from ecg_sweep.compression import compress_run

    console.print(f"compressing the model of run {best_run_id} ...")
    with ProgressDisplay("steps") as display:
        report = compress_run(tracker, best_run_id, data, config, progress=display.hook("c"))
    print_compression_report(report)
    return report
