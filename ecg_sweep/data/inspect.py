"""``ecg-sweep data inspect``: counts per fold and class, and a validation of every record."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ecg_sweep.data.cache import scan_records_with_warnings
from ecg_sweep.data.ptbxl import ALL_FOLDS, class_counts, load_metadata

__all__ = ["inspect_dataset"]


def inspect_dataset(
    root: str | Path,
    sampling_rate: int = 100,
    task: str = "superdiagnostic",
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Report in the shape of DESIGN.md §4 (counts over labelled records; bad records listed).

    Reads every record (nothing is written, not even the cache). Besides the §4 keys,
    ``warnings`` lists records that decode but look wrong (``{"ecg_id", "path", "warning"}``,
    e.g. a flat lead); they do not make the dataset bad.
    """
    meta = load_metadata(root, task)
    bad, warnings = scan_records_with_warnings(meta, sampling_rate, workers, progress)
    labelled = meta.labelled
    folds = labelled["strat_fold"].value_counts()
    return {
        "root": str(meta.root),
        "records": int(len(meta.records)),
        "labelled": int(len(labelled)),
        "sampling_rate": int(sampling_rate),
        "folds": {str(f): int(folds.get(f, 0)) for f in ALL_FOLDS},
        "classes": class_counts(labelled["labels"], meta.classes),
        "bad_records": [b.as_dict() for b in bad],
        "warnings": [w.as_dict() for w in warnings],
    }
