"""Accuracy of every family against a plain 3-layer 1-D CNN, with the training recipe's ablations.

On a synthetic PTB-XL (``difficulty`` high, so labels are not trivially visible), every family at
the same preset and epochs, ``resnet1d``, and the reference: a plain 3-layer 1-D CNN written here
(12 -> 64 -> 64 -> 64 channels, kernel 7, BatchNorm, ReLU, max-pool, global average pool, linear),
trained by the same ``fit()``. Then the recipe's parts, one at a time (``augment`` on, ViT's
``patch_embed=conv``). Prints, per row: test macro AUROC [95% bootstrap CI], exact-match accuracy
and the predict-the-most-frequent-label-set baseline, macro F1 (per-class thresholds tuned on
validation), parameters and training seconds.

Sized for the shared 2-core machine (one row = one model trained ``--epochs`` epochs):

    nice -n 10 timeout 1800 python benchmarks/accuracy.py --records 1000 --epochs 4
    python benchmarks/accuracy.py --rows cnn3,resnet1d,resnet1d+augment --preset tiny

``--preset ''`` trains the families at their defaults (meant for a GPU; hours on CPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch
from torch import nn

from ecg_sweep.config import DataConfig
from ecg_sweep.data.dataset import prepare
from ecg_sweep.data.synth import synthesize
from ecg_sweep.engine import final_metrics, fit, seed_everything
from ecg_sweep.metrics import majority_baseline
from ecg_sweep.models import (
    ECGClassifier,
    build_model,
    get_model_spec,
    make_train_config,
    model_info,
)

FAMILIES = ("cnn3", "resnet1d", "vit", "deit", "efficientnetv2", "convnext")
# name -> (family, model params over the preset, TrainConfig overrides)
ABLATIONS: dict[str, tuple[str, dict, dict]] = {
    "resnet1d+augment": ("resnet1d", {}, {"augment": True}),
    "vit+augment": ("vit", {}, {"augment": True}),
    "vit+conv_stem": ("vit", {"patch_embed": "conv"}, {}),
    "deit+conv_stem": ("deit", {"patch_embed": "conv"}, {}),
}


class PlainCNN(nn.Module):
    """The reference: 3 conv blocks (kernel 7, BN, ReLU, max-pool 2), global average, linear."""

    def __init__(self, leads: int, num_classes: int, width: int = 64):
        super().__init__()
        layers: list[nn.Module] = []
        for ci in (leads, width, width):
            layers += [
                nn.Conv1d(ci, width, 7, padding=3),
                nn.BatchNorm1d(width),
                nn.ReLU(),
                nn.MaxPool1d(2),
            ]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, 12, 1, T) from the leads-as-channels adapter -> (B, 12, T)
        return self.fc(self.features(x.squeeze(2)).mean(dim=-1))


def build_row(row: str, data, preset: str | None):
    family, params, train = ABLATIONS.get(row, (row, {}, {}))
    if family == "cnn3":
        # resnet1d's info gives the adapter (standardization, leads-as-channels layout) and the
        # checkpoint metadata; the backbone is replaced by the plain CNN.
        info = model_info("resnet1d", get_model_spec("resnet1d").params("tiny"), data)
        seed_everything(0)
        base = build_model(info)
        model = ECGClassifier(base.adapter, PlainCNN(data.n_leads, len(data.classes)), info)
        cfg_family, train = "resnet1d", {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0}
        return model, cfg_family, train
    spec = get_model_spec(family)
    info = model_info(family, {**spec.params(preset or None), **params}, data)
    seed_everything(0)
    return build_model(info), family, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench-accuracy", help="dataset and cache folder")
    ap.add_argument("--records", type=int, default=1000)
    ap.add_argument("--difficulty", type=float, default=0.9)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--preset", default="tiny", help="preset for every family ('' = defaults)")
    ap.add_argument("--rows", default=",".join(FAMILIES + tuple(ABLATIONS)))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    out = Path(args.out)
    root = out / f"synth-{args.records}-d{args.difficulty}"
    if not root.exists():
        synthesize(
            root, n_records=args.records, seed=0, difficulty=args.difficulty, sampling_rates=(100,)
        )
    data = prepare(DataConfig(root=root, cache_dir=out / "cache"))
    base = majority_baseline(data.train.y, data.test.y)
    print(
        f"data: {root} ({len(data.train)} train / {len(data.val)} val / {len(data.test)} test), "
        f"{args.epochs} epochs, batch {args.batch_size}, preset {args.preset or 'defaults'}; "
        f"predict-most-frequent baseline: exact-match "
        f"{base['test_exact_match_accuracy']:.3f}, macro F1 {base['test_macro_f1']:.3f}"
    )
    print(
        f"{'row':<18} {'macro AUROC [95% CI]':<24} {'exact':>6} {'base':>6} {'F1':>6} "
        f"{'params':>8} {'train s':>8}"
    )
    for row in args.rows.split(","):
        model, family, train = build_row(row, data, args.preset)
        cfg = make_train_config(
            family,
            max_epochs=args.epochs,
            batch_size=args.batch_size,
            patience=args.epochs,
            device="cpu",
            n_bootstrap=500,
            **train,
        )
        t = time.monotonic()
        fit(model, data, cfg)
        seconds = time.monotonic() - t
        m, _, _ = final_metrics(model, data, dataclasses.replace(cfg, seed=0))
        n = sum(p.numel() for p in model.parameters())
        ci = f"[{m['test_macro_auc_ci_low']:.3f}, {m['test_macro_auc_ci_high']:.3f}]"
        print(
            f"{row:<18} {m['test_macro_auc']:.3f} {ci:<18} {m['test_exact_match_accuracy']:>6.3f} "
            f"{base['test_exact_match_accuracy']:>6.3f} {m['test_macro_f1']:>6.3f} {n:>8d} "
            f"{seconds:>8.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
