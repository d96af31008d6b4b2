"""Which threshold policy gives the least surprising accuracy, and what calibration buys.

On a noisy synthetic PTB-XL (``--label-noise``: findings drawn without their signature;
``--normal-variants``: benign look-alikes on NORM records), train each family's ``tiny`` preset
(signal input) for ``--epochs`` epochs once, then decide the test fold's labels with every
``threshold_policy`` (f1, exact_match, fixed), with and without the at-least-one-label rule and
temperature scaling. Thresholds and temperature come from validation only. Prints one row per
(family, policy, rule, calibrate): test exact-match against the predict-the-most-frequent-label-
set baseline, macro F1, Hamming accuracy, ECE, Brier and the worst subgroup macro AUROC.

    python benchmarks/decision_policy.py                               # 1500 records, 10 epochs
    python benchmarks/decision_policy.py --families vit,convnext --epochs 5 --n-records 800
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from ecg_sweep.config import THRESHOLD_POLICIES, DataConfig
from ecg_sweep.data.dataset import prepare
from ecg_sweep.data.synth import synthesize
from ecg_sweep.engine import final_metrics, fit, seed_everything
from ecg_sweep.models import build_model, get_model_spec, make_train_config, model_info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="vit,deit,efficientnetv2,convnext")
    ap.add_argument("--n-records", type=int, default=1500)
    ap.add_argument("--difficulty", type=float, default=0.5)
    ap.add_argument("--label-noise", type=float, default=0.2)
    ap.add_argument("--normal-variants", type=float, default=0.2)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ecg-decision-") as tmp:
        root = Path(tmp) / "data"
        synthesize(
            root, n_records=args.n_records, seed=args.seed, difficulty=args.difficulty,
            sampling_rates=(100,), label_noise=args.label_noise,
            normal_variants=args.normal_variants,
        )  # fmt: skip
        data = prepare(DataConfig(root=root, cache_dir=Path(tmp) / "cache"))
        for name in args.families.split(","):
            seed_everything(0)
            model = build_model(model_info(name, get_model_spec(name).presets["tiny"], data))
            cfg = make_train_config(
                name, max_epochs=args.epochs, batch_size=32, lr=args.lr, n_bootstrap=200,
                device="cpu",
            )  # fmt: skip
            t0 = time.perf_counter()
            fit(model, data, cfg)
            fit_s = time.perf_counter() - t0
            for policy in THRESHOLD_POLICIES:
                for rule in (False, True):
                    for calibrate in (False, True):
                        c = dataclasses.replace(
                            cfg, threshold_policy=policy, at_least_one=rule, calibrate=calibrate
                        )
                        m, _, _ = final_metrics(model, data, c)
                        rows.append(
                            {
                                "family": name,
                                "policy": policy,
                                "at_least_one": rule,
                                "calibrate": calibrate,
                                "auroc": m["test_macro_auc"],
                                "ci_low": m["test_macro_auc_ci_low"],
                                "exact_match": m["test_exact_match_accuracy"],
                                "baseline_em": m["test_baseline_exact_match_accuracy"],
                                "macro_f1": m["test_macro_f1"],
                                "hamming": m["test_hamming_accuracy"],
                                "ece": m["test_ece"],
                                "brier": m["test_brier"],
                                "temperature": m["calibration_temperature"],
                                "worst_subgroup_auroc": m["test_subgroup_min_macro_auc"],
                                "fit_s": fit_s,
                            }
                        )
            print(pd.DataFrame(rows[-12:]).to_string(index=False, float_format="%.3f"), flush=True)
    table = pd.DataFrame(rows)
    print("\nall families:")
    print(table.to_string(index=False, float_format="%.3f"))
    mean = table.groupby(["policy", "at_least_one", "calibrate"])[
        ["exact_match", "baseline_em", "macro_f1", "hamming", "ece"]
    ].mean()
    print("\nmean over families:")
    print(mean.to_string(float_format="%.3f"))


if __name__ == "__main__":
    main()
