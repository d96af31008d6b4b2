"""PTB-XL layout and benchmark rules (Strodthoff et al. 2020, ecg_ptbxl_benchmarking).

Everything here is metadata: which records exist, their labels and their folds. Signals are read
in :mod:`ecg_sweep.data.records` and cached in :mod:`ecg_sweep.data.cache`.
"""

from __future__ import annotations

import ast
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ecg_sweep.errors import DataError

__all__ = [
    "LEADS",
    "SUPERCLASSES",
    "TASKS",
    "SAMPLING_RATES",
    "RECORD_SECONDS",
    "TRAIN_FOLDS",
    "VAL_FOLDS",
    "TEST_FOLDS",
    "ALL_FOLDS",
    "DATABASE_CSV",
    "STATEMENTS_CSV",
    "REQUIRED_DB_COLUMNS",
    "REQUIRED_STATEMENT_COLUMNS",
    "Metadata",
    "load_metadata",
    "load_statements",
    "task_classes",
    "record_path",
    "class_counts",
    "binarize",
]

log = logging.getLogger(__name__)

# The 12 standard leads in PTB-XL's channel order.
LEADS: tuple[str, ...] = (
    "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
)  # fmt: skip
# Diagnostic superclasses in the benchmark's fixed order (the output order of every model).
SUPERCLASSES: tuple[str, ...] = ("NORM", "MI", "STTC", "CD", "HYP")
SAMPLING_RATES: tuple[int, ...] = (100, 500)
RECORD_SECONDS = 10
# strat_fold split of the benchmark: folds 9 and 10 were human-validated; 10 is the test fold.
TRAIN_FOLDS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
VAL_FOLDS: tuple[int, ...] = (9,)
TEST_FOLDS: tuple[int, ...] = (10,)
ALL_FOLDS: tuple[int, ...] = tuple(range(1, 11))

DATABASE_CSV = "ptbxl_database.csv"
STATEMENTS_CSV = "scp_statements.csv"
REQUIRED_DB_COLUMNS: tuple[str, ...] = (
    "ecg_id", "patient_id", "scp_codes", "strat_fold", "filename_lr", "filename_hr",
)  # fmt: skip
REQUIRED_STATEMENT_COLUMNS: tuple[str, ...] = (
    "diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass",
)  # fmt: skip

# task name -> (statement column that selects codes, column that maps a code to its label;
# None = the code itself). Mirrors compute_label_aggregations() of the benchmark code.
TASKS: dict[str, tuple[str, str | None]] = {
    "superdiagnostic": ("diagnostic", "diagnostic_class"),
    "subdiagnostic": ("diagnostic", "diagnostic_subclass"),
    "diagnostic": ("diagnostic", None),
    "form": ("form", None),
    "rhythm": ("rhythm", None),
}


@dataclass(frozen=True)
class Metadata:
    """Parsed metadata of one PTB-XL root for one task.

    ``records`` is indexed by ``ecg_id`` and keeps every row of the database (labelled or not),
    with a ``labels`` column (tuple of class names, empty when the record has none for the task).
    """

    root: Path
    task: str
    classes: tuple[str, ...]
    records: pd.DataFrame
    unknown_codes: dict[str, int] = field(default_factory=dict)

    @property
    def labelled(self) -> pd.DataFrame:
        return self.records[self.records["labels"].map(len) > 0]


def _read_csv(path: Path, what: str, **kw) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    try:
        return pd.read_csv(path, **kw)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{path}: cannot parse {what}: {msg}") from None


def _require_columns(df: pd.DataFrame, required: tuple[str, ...], path: Path) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing required column(s): {', '.join(missing)}")


def load_statements(root: Path) -> pd.DataFrame:
    """Read ``scp_statements.csv`` (index: the SCP code)."""
    path = root / STATEMENTS_CSV
    df = _read_csv(path, "SCP statements table", index_col=0)
    _require_columns(df, REQUIRED_STATEMENT_COLUMNS, path)
    return df


def task_classes(statements: pd.DataFrame, task: str) -> tuple[str, ...]:
    """The fixed class order of a task: the benchmark order for superdiagnostic, else sorted."""
    select, target = _task(task)
    if task == "superdiagnostic":
        return SUPERCLASSES
    rows = statements[statements[select] == 1]
    values = rows.index if target is None else rows[target].dropna()
    return tuple(sorted({str(v) for v in values}))


def _task(task: str) -> tuple[str, str | None]:
    try:
        return TASKS[task]
    except KeyError:
        raise DataError(f"unknown task {task!r}; valid: {', '.join(TASKS)}") from None


def _parse_scp(text: object, ecg_id: int, path: Path) -> dict[str, float]:
    try:
        value = ast.literal_eval(str(text))
    except (ValueError, SyntaxError):
        raise DataError(f"{path}: ecg_id {ecg_id}: unparseable scp_codes {text!r}") from None
    if not isinstance(value, dict):
        raise DataError(f"{path}: ecg_id {ecg_id}: scp_codes is not a dict: {text!r}")
    return value


def load_metadata(root: str | Path, task: str = "superdiagnostic") -> Metadata:
    """Read ``ptbxl_database.csv`` and ``scp_statements.csv`` of a PTB-XL root and label it.

    Labels follow the benchmark: every key of ``scp_codes`` (any likelihood, 0 included) whose
    statement is selected by the task maps to its class; unknown codes are counted and ignored.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"{root}: dataset folder does not exist")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    root = root.resolve()
    select, target = _task(task)
    statements = load_statements(root)
    db_path = root / DATABASE_CSV
    db = _read_csv(db_path, "PTB-XL database table")
    _require_columns(db, REQUIRED_DB_COLUMNS, db_path)
    if db["ecg_id"].isna().any() or db["ecg_id"].duplicated().any():
        raise DataError(f"{db_path}: ecg_id has missing or duplicate values")
    db["ecg_id"] = db["ecg_id"].astype(int)
    folds = pd.to_numeric(db["strat_fold"], errors="coerce")
    bad = db.loc[folds.isna() | ~folds.isin(ALL_FOLDS), "ecg_id"]
    if len(bad):
        raise DataError(f"{db_path}: ecg_id {int(bad.iloc[0])}: strat_fold must be 1-10")
    db["strat_fold"] = folds.astype(int)
    db = db.set_index("ecg_id", drop=False).sort_index()

    selected = statements[statements[select] == 1]
    mapping = {
        str(code): (str(code) if target is None else row[target])
        for code, row in selected.iterrows()
    }
    known = set(map(str, statements.index))
    unknown: dict[str, int] = {}
    labels = []
    scp = []
    for ecg_id, text in zip(db.index, db["scp_codes"], strict=True):
        codes = _parse_scp(text, int(ecg_id), db_path)
        scp.append(codes)
        found = set()
        for code in codes:
            if code not in known:
                unknown[code] = unknown.get(code, 0) + 1
                continue
            cls = mapping.get(code)
            if isinstance(cls, str) and cls:
                found.add(cls)
        labels.append(tuple(sorted(found)))
    if unknown:
        listed = ", ".join(f"{c} ({n})" for c, n in sorted(unknown.items()))
        log.warning("%s: ignored %d unknown scp code(s): %s", db_path, len(unknown), listed)
    db["scp_codes"] = scp
    db["labels"] = labels
    return Metadata(
        root=root,
        task=task,
        classes=task_classes(statements, task),
        records=db,
        unknown_codes=unknown,
    )


def record_path(meta_row: pd.Series, root: Path, sampling_rate: int) -> Path:
    """Path (without suffix) of a record's WFDB files at the given sampling rate."""
    column = "filename_lr" if sampling_rate == 100 else "filename_hr"
    return root / str(meta_row[column])


def class_counts(labels: pd.Series, classes: tuple[str, ...]) -> dict[str, int]:
    """Number of records carrying each class (multi-label: a record counts once per class)."""
    counts = dict.fromkeys(classes, 0)
    for labs in labels:
        for c in labs:
            if c in counts:
                counts[c] += 1
    return counts


def binarize(labels: pd.Series, classes: tuple[str, ...]) -> np.ndarray:
    """(N,) tuples of class names -> (N, C) float32 multi-hot in the fixed class order."""
    from sklearn.preprocessing import MultiLabelBinarizer

    mlb = MultiLabelBinarizer(classes=list(classes))
    mlb.fit([list(classes)])
    return mlb.transform(list(labels)).astype(np.float32)
