"""Decoded-signal cache vs a per-record ``wfdb.rdsamp`` loop, on a full-size synthetic PTB-XL.

Prints cold decode records/s and the ratio (warm cache load of all signals) / (rdsamp loop),
both measured in this run. Goal: >= 50x.

    python benchmarks/data_cache.py [--root DIR] [--n-records 21799] [--rdsamp-records N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import wfdb

from ecg_sweep.data.cache import load_signals
from ecg_sweep.data.ptbxl import load_metadata
from ecg_sweep.data.synth import synthesize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", type=Path, help="an existing PTB-XL root (default: synthesize one)")
    ap.add_argument("--n-records", type=int, default=21799)
    ap.add_argument("--rdsamp-records", type=int, default=0, help="0 = all records")
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="ecg-bench-") as tmp:
        root = args.root
        if root is None:
            root = Path(tmp) / "ptbxl"
            t = time.perf_counter()
            synthesize(
                root, n_records=args.n_records, seed=0, sampling_rates=(100,), workers=args.workers
            )
            print(f"synthesized {args.n_records} records in {time.perf_counter() - t:.1f} s")
        meta = load_metadata(root)
        n = len(meta.records)
        cache_dir = Path(tmp) / "cache"

        t = time.perf_counter()
        cache = load_signals(meta, 100, cache_dir, workers=args.workers)
        cold = time.perf_counter() - t
        assert cache.created
        print(
            f"cold decode into the cache: {n} records in {cold:.1f} s = {n / cold:,.0f} records/s"
        )

        # Warm: what every later process (trial worker, study) pays: metadata + labels, the
        # fingerprint check, and every signal read into RAM as the float16 array training uses
        # (batches are converted to float32 on the device, see engine._Tensors).
        t = time.perf_counter()
        warm_meta = load_metadata(root)
        warm = load_signals(warm_meta, 100, cache_dir)
        rows = np.flatnonzero(warm.ok)
        signals = np.ascontiguousarray(warm.signals[rows])
        warm_s = time.perf_counter() - t
        assert not warm.created and signals.shape == (n, 12, 1000)
        print(f"warm load of all signals (metadata + fingerprint + float16 in RAM): {warm_s:.2f} s")
        t = time.perf_counter()
        signals.astype(np.float32)
        print(
            f"  (converting all of them to float32 on the CPU would add {time.perf_counter() - t:.2f} s)"
        )

        rels = list(meta.records["filename_lr"])
        if args.rdsamp_records:
            rels = rels[: args.rdsamp_records]
        t = time.perf_counter()
        for rel in rels:
            wfdb.rdsamp(str(root / rel))
        loop = (time.perf_counter() - t) * n / len(rels)
        print(
            f"per-record wfdb.rdsamp loop: {len(rels)} records in {(time.perf_counter() - t):.1f} s"
            f" = {len(rels) / (time.perf_counter() - t):,.0f} records/s (all {n}: {loop:.1f} s)"
        )
        print(f"RATIO warm cache / rdsamp loop: {loop / warm_s:.0f}x faster (goal >= 50x)")
        print(f"RATIO cold decode / rdsamp loop: {loop / cold:.1f}x faster")


if __name__ == "__main__":
    main()
