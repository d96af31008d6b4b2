"""How fast is the synthetic PTB-XL generator, and where does the time go?

Writes ``--n-records`` records with ``synthesize`` into a temporary folder, prints records/s and
the projected time for the full 21,799 records, then times the stages of one record in-process
(plan, render at 500 Hz, decimate, write) and compares our format-16 writer with ``wfdb.wrsamp``
side by side on the same records.

    python benchmarks/synth_speed.py --n-records 2000 --workers 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import wfdb

from ecg_sweep.data import synth
from ecg_sweep.data.ptbxl import LEADS

FULL_SIZE = 21_799  # records in PTB-XL 1.0.3


def _per_record_ms(fn, items) -> float:
    start = time.perf_counter()
    for item in items:
        fn(item)
    return (time.perf_counter() - start) / len(items) * 1e3


def _wfdb_write(root: Path, spec, fs: int, digital) -> None:
    path = root / synth._filename(spec.ecg_id, fs)
    wfdb.wrsamp(
        path.name,
        fs=fs,
        units=["mV"] * len(LEADS),
        sig_name=list(LEADS),
        d_signal=digital,
        fmt=["16"] * len(LEADS),
        adc_gain=[synth.ADC_GAIN] * len(LEADS),
        baseline=[0] * len(LEADS),
        base_datetime=spec.recorded,
        write_dir=str(path.parent),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-records", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=None, help="default: os.cpu_count()")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--difficulty", type=float, default=0.5)
    parser.add_argument("--rates", default="100,500", help="comma-separated sampling rates")
    parser.add_argument("--stage-records", type=int, default=100, help="records for stage timing")
    args = parser.parse_args()
    rates = tuple(int(r) for r in args.rates.split(","))
    workers = args.workers or os.cpu_count()

    with tempfile.TemporaryDirectory(prefix="synth-speed-") as tmp:
        summary = synthesize_timed(Path(tmp) / "ptbxl", args, rates, workers)
        rate = summary.n_records / summary.seconds
        size = sum(f.stat().st_size for f in summary.root.rglob("*") if f.is_file())
        print(
            f"synthesize: {summary.n_records} records, rates {rates}, {workers} worker(s), "
            f"{os.cpu_count()} CPU(s): {summary.seconds:.1f} s = {rate:.0f} records/s, "
            f"{size / 2**20:.0f} MiB"
        )
        print(
            f"projected full size ({FULL_SIZE} records): {FULL_SIZE / rate:.0f} s "
            f"({FULL_SIZE / rate / 60:.1f} min), {size / summary.n_records * FULL_SIZE / 2**30:.1f} GiB"
        )

        # stages of one record, in this process (one core)
        n = min(args.stage_records, args.n_records)
        start = time.perf_counter()
        _, specs = synth._plan(FULL_SIZE, args.seed, args.difficulty)
        plan_s = time.perf_counter() - start
        specs = specs[:n]
        signals = [synth._render(s) for s in specs]
        render_ms = _per_record_ms(synth._render, specs)
        digital = {fs: [synth._digitize(synth._resample(e, fs)) for e in signals] for fs in rates}
        decimate_ms = _per_record_ms(lambda e: synth._resample(e, 100), signals)
        ours_root, ref_root = Path(tmp) / "ours", Path(tmp) / "wfdb"
        for root in (ours_root, ref_root):
            for fs in rates:
                for s in specs:
                    (root / synth._filename(s.ecg_id, fs)).parent.mkdir(parents=True, exist_ok=True)
        pairs = list(zip(specs, range(n), strict=True))
        ours_ms = _per_record_ms(
            lambda p: [synth._write_record(ours_root, p[0], fs, digital[fs][p[1]]) for fs in rates],
            pairs,
        )
        ref_ms = _per_record_ms(
            lambda p: [_wfdb_write(ref_root, p[0], fs, digital[fs][p[1]]) for fs in rates], pairs
        )
        same = all(
            (ours_root / f).read_bytes() == (ref_root / f).read_bytes()
            for f in (p.relative_to(ours_root) for p in ours_root.rglob("*") if p.is_file())
        )
        print(f"plan {FULL_SIZE} records: {plan_s:.2f} s (serial, main process)")
        print(f"per record, one core: render {render_ms:.2f} ms, decimate {decimate_ms:.2f} ms")
        print(
            f"write {rates}: ours {ours_ms:.2f} ms, wfdb.wrsamp {ref_ms:.2f} ms "
            f"-> {ref_ms / ours_ms:.0f}x faster, byte-identical: {same}"
        )


def synthesize_timed(out: Path, args, rates, workers) -> synth.SynthSummary:
    return synth.synthesize(
        out,
        n_records=args.n_records,
        seed=args.seed,
        difficulty=args.difficulty,
        sampling_rates=rates,
        workers=workers,
    )


if __name__ == "__main__":
    main()
