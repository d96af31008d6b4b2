"""fit() vs a raw forward/backward loop, per family, at the reference configuration's geometry and the ECG-native one.

Same model, same process, same batch size; both loops run the adapter, BCE, backward and the
optimizer step. fit() additionally gathers batches from the float16 dataset, runs the LR
schedule, clips gradients and evaluates validation once per epoch (included in its time).
Goal: fit() >= 0.9x raw. Also prints the native/reference speed ratio per family.

    python benchmarks/train_throughput.py [--families vit,deit,efficientnetv2,convnext]
        [--preset tiny] [--samples 256] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ecg_sweep.config import DataConfig
from ecg_sweep.data.dataset import PreparedData, prepare
from ecg_sweep.data.synth import synthesize
from ecg_sweep.engine import fit, seed_everything
from ecg_sweep.models import build_model, get_model_spec, make_train_config, model_info

GEOMETRIES = {
    # the reference configuration's: the 12 x T matrix as a 182 x 256 image (rounded to the patch), 3 channels
    "reference": {"input_repr": "image", "image_height": 182, "image_width": 256},
    # ECG-native: lead-by-time patches for transformers, leads-as-channels 1-D CNN for CNNs
    "native": {"input_repr": "signal"},
}


def raw_loop(model, x, y, batch_size, lr, steps):
    """Pre-made tensors, the same loss and optimizer; returns samples/s."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    if hasattr(model, "set_distilled_training"):
        model.set_distilled_training(True)

    def step(i):
        xb = x[i * batch_size % len(x) :][:batch_size]
        yb = y[i * batch_size % len(y) :][:batch_size]
        out = model(xb)
        loss = (
            sum(F.binary_cross_entropy_with_logits(o, yb) for o in out) / 2
            if isinstance(out, tuple)
            else F.binary_cross_entropy_with_logits(out, yb)
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step(0)  # warm-up
    t = time.perf_counter()
    for i in range(steps):
        step(i)
    return steps * batch_size / (time.perf_counter() - t)


def measure(
    data: PreparedData,
    family: str,
    geometry: str,
    preset: str | None,
    batch_size: int,
    samples: int,
):
    spec = get_model_spec(family)
    params = {**(spec.presets.get(preset, {}) if preset else {}), **GEOMETRIES[geometry]}
    info = model_info(family, params, data)
    steps = max(2, samples // batch_size)
    seed_everything(0)
    raw_model = build_model(info)
    x = torch.from_numpy(data.train.x[: steps * batch_size]).float()
    y = torch.from_numpy(data.train.y[: steps * batch_size])
    raw = raw_loop(raw_model, x, y, batch_size, 1e-3, steps)
    seed_everything(0)
    model = build_model(info)
    # fit() on exactly `steps` batches: a training split cut to that size, one epoch, plus
    # its validation pass (a quarter of the training size, as PTB-XL's fold 9 vs folds 1-8 ~ 1/8).
    n = steps * batch_size
    sub = dataclasses.replace(
        data,
        train=dataclasses.replace(data.train, x=data.train.x[:n], y=data.train.y[:n], ecg_ids=data.train.ecg_ids[:n]),
        val=dataclasses.replace(data.val, x=data.val.x[: n // 8 or 2], y=data.val.y[: n // 8 or 2], ecg_ids=data.val.ecg_ids[: n // 8 or 2]),
    )  # fmt: skip
    cfg = make_train_config(family, max_epochs=1, batch_size=batch_size, warmup_epochs=0)
    fit(model, sub, dataclasses.replace(cfg, max_epochs=1))  # warm-up run (allocator, kernels)
    seed_everything(0)
    model = build_model(info)
    t = time.perf_counter()
    res = fit(model, sub, cfg)
    wall = time.perf_counter() - t
    return {
        "raw": raw,
        "fit_train": res.train_samples_per_s,
        "fit_wall": n / wall,
        "input": "x".join(map(str, model.adapter.spec.shape)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--families", default="vit,deit,efficientnetv2,convnext")
    ap.add_argument("--preset", default=None, help="e.g. tiny; default: the reference model sizes")
    ap.add_argument("--samples", type=int, default=128, help="samples timed per measurement")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="ecg-bench-") as tmp:
        root = Path(tmp) / "synth"
        synthesize(root, n_records=max(400, 2 * args.samples), seed=0, sampling_rates=(100,))
        data = prepare(DataConfig(root=root, cache_dir=Path(tmp) / "cache"))
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
              f"preset {args.preset or 'default (reference sizes)'}")  # fmt: skip
        header = f"{'family':15s} {'geometry':8s} {'input':>12s} {'raw/s':>8s} {'fit/s':>8s} {'fit+val/s':>9s} {'fit/raw':>7s} {'(+val)':>6s}"
        print(header)
        speeds = {}
        for family in args.families.split(","):
            for geometry in GEOMETRIES:
                r = measure(data, family, geometry, args.preset, args.batch_size, args.samples)
                speeds[family, geometry] = r["fit_wall"]
                print(f"{family:15s} {geometry:8s} {r['input']:>12s} {r['raw']:8.1f} {r['fit_train']:8.1f} "
                      f"{r['fit_wall']:9.1f} {r['fit_train'] / r['raw']:7.2f} {r['fit_wall'] / r['raw']:6.2f}",
                      flush=True)  # fmt: skip
        for family in args.families.split(","):
            ratio = speeds[family, "native"] / speeds[family, "reference"]
            print(
                f"RATIO {family}: native / reference geometry = {ratio:.1f}x faster (fit, incl. validation)"
            )


if __name__ == "__main__":
    main()
