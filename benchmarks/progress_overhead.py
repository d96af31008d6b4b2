"""Cost of progress inside epochs: fit() with the CLI's progress display vs fit() without.

The same model trains the same epochs three ways, interleaved round by round in one process:
  none   fit() with no progress hook;
  lines  the CLI's ProgressDisplay as it runs when stderr is not a terminal (a plain line
         every 30 s; the hook is called per batch and returns at once in between);
  bar    the CLI's ProgressDisplay as a live rich bar (forced terminal, rendered into memory at
         rich's 10 Hz refresh: the refresh thread competes with training for the GIL).
Reported: the wall time of fit() (everything: batches, hook, validation) and fit()'s own
train_samples_per_s (which excludes the hook's time by construction), medians over rounds.
Also the direct cost of one hook call (the display's update, per batch) in both modes, as a
share of a batch's training time: robust where a loaded machine makes wall ratios noisy.
Goal: wall(bar or lines) / wall(none) <= 1.02.

    python benchmarks/progress_overhead.py [--rounds 5] [--epochs 2] [--records 1200]
        [--batch-size 32] [--preset tiny]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console

from ecg_sweep.cli import _common
from ecg_sweep.config import DataConfig
from ecg_sweep.data.dataset import prepare
from ecg_sweep.data.synth import synthesize
from ecg_sweep.engine import fit, seed_everything
from ecg_sweep.models import build_model, get_model_spec, make_train_config, model_info


def run(data, info, cfg, mode: str) -> tuple[float, float]:
    seed_everything(0)
    model = build_model(info)
    if mode == "none":
        t = time.perf_counter()
        res = fit(model, data, cfg)
        return time.perf_counter() - t, res.train_samples_per_s
    live = mode == "bar"
    _common.console = Console(file=io.StringIO(), force_terminal=live, width=120, stderr=True)
    with _common.ProgressDisplay(interval=30.0) as display:
        assert display.live == live
        t = time.perf_counter()
        res = fit(model, data, cfg, progress=display.hook("train"))
        return time.perf_counter() - t, res.train_samples_per_s


def hook_cost(live: bool, calls: int = 20000) -> float:
    """Seconds per ``display.update`` call (the per-batch hook) while the display runs."""
    _common.console = Console(file=io.StringIO(), force_terminal=live, width=120, stderr=True)
    with _common.ProgressDisplay(interval=30.0) as display:
        hook = display.hook("train")
        t = time.perf_counter()
        for i in range(calls):
            hook("epoch 0 train", i, calls)
        return (time.perf_counter() - t) / calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--records", type=int, default=1200)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--preset", default="tiny")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ecg-bench-") as tmp:
        root = Path(tmp) / "synth"
        synthesize(root, n_records=args.records, seed=0, sampling_rates=(100,))
        data = prepare(DataConfig(root=root, cache_dir=Path(tmp) / "cache"))
        info = model_info("vit", get_model_spec("vit").params(args.preset), data)
        cfg = make_train_config(
            "vit", max_epochs=args.epochs, batch_size=args.batch_size, patience=args.epochs
        )
        steps = -(-len(data.train) // args.batch_size)
        print(
            f"torch {torch.__version__}, {torch.get_num_threads()} threads; vit "
            f"{args.preset or 'default'}; {len(data.train)} train / {len(data.val)} val records, "
            f"{steps} batches x {args.epochs} epochs per fit()"
        )
        run(data, info, cfg, "none")  # warm-up (allocator, kernels)
        modes = ("none", "lines", "bar")
        wall: dict[str, list[float]] = {m: [] for m in modes}
        speed: dict[str, list[float]] = {m: [] for m in modes}
        for r in range(args.rounds):
            for m in modes[r % 3 :] + modes[: r % 3]:  # rotate the order: drift hits all alike
                w, s = run(data, info, cfg, m)
                wall[m].append(w)
                speed[m].append(s)
            print(
                f"round {r}: "
                + ", ".join(
                    f"{m} {wall[m][-1]:.2f} s ({speed[m][-1]:.0f} samples/s)" for m in modes
                ),
                flush=True,
            )
    base_wall, base_speed = statistics.median(wall["none"]), statistics.median(speed["none"])
    for m in modes:
        print(
            f"{m:5s} fit() wall median {statistics.median(wall[m]):6.2f} s, "
            f"train {statistics.median(speed[m]):7.1f} samples/s"
        )
    batch_s = args.batch_size / base_speed  # seconds of training per batch, no hook
    for m, live in (("lines", False), ("bar", True)):
        per = hook_cost(live)
        print(
            f"hook {m:5s}: {1e6 * per:6.1f} us per call = {100 * per / batch_s:.3f}% of a "
            f"{args.batch_size}-sample batch ({1000 * batch_s:.0f} ms)"
        )
    for m in ("lines", "bar"):
        print(
            f"RATIO wall {m}/none = {statistics.median(wall[m]) / base_wall:.3f}, "
            f"train samples/s {m}/none = {statistics.median(speed[m]) / base_speed:.3f} "
            "(goal: wall <= 1.02)"
        )


if __name__ == "__main__":
    main()
