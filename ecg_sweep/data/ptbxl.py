"""PTB-XL layout and benchmark rules (Strodthoff et al. 2020, ecg_ptbxl_benchmarking).

Everything here is metadata: which records exist, their labels and their folds. Signals are read
in :mod:`ecg_sweep.data.records` and cached in :mod:`ecg_sweep.data.cache`.
"""

from __future__ import annotations

import ast
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ecg_sweep.errors import DataError, clip

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
        raise DataError(f"{path}: cannot parse {what}: {clip(msg)}") from None


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


# A real scp_codes cell is under 100 characters; parsing a megabyte of nested literals with
# ast.literal_eval costs memory and time (and can overflow the parser's recursion), so refuse it.
MAX_SCP_CODES_CHARS = 10_000
# filename_lr/_hr are like "records100/00000/00001_lr"; anything far longer is not a record path.
MAX_RECORD_PATH_CHARS = 255
_CLEAN_PATH = re.compile(r"[\w-]+(?:/[\w-]+)*")
_DRIVE = re.compile(r"[A-Za-z]:")


def _parse_scp(text: object, ecg_id: int, path: Path) -> dict[str, float]:
    text = str(text)
    if len(text) > MAX_SCP_CODES_CHARS:
        raise DataError(
            f"{path}: ecg_id {ecg_id}: scp_codes is {len(text):,} characters long "
            f"(at most {MAX_SCP_CODES_CHARS:,}): {clip(text)}"
        )
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise DataError(f"{path}: ecg_id {ecg_id}: unparseable scp_codes {clip(text)}") from None
    if not isinstance(value, dict):
        raise DataError(f"{path}: ecg_id {ecg_id}: scp_codes is not a dict: {clip(text)}")
    return value


def _parse_ecg_ids(db: pd.DataFrame, path: Path) -> pd.Series:
    """``ecg_id`` as int64; one line naming the first bad value (missing, not a whole number)."""
    raw = db["ecg_id"]
    ids = pd.to_numeric(raw, errors="coerce")
    whole = ids.notna() & (ids == ids.round()) & (ids.abs() < 2**62)
    if not whole.all():
        row = int(np.flatnonzero(~whole.to_numpy())[0])
        value = raw.iloc[row]
        shown = "an empty cell" if pd.isna(value) else clip(value)
        raise DataError(f"{path}: ecg_id must be a whole number; data row {row + 1} has {shown}")
    ids = ids.astype(np.int64)
    dup = ids[ids.duplicated()]
    if len(dup):
        raise DataError(f"{path}: ecg_id {int(dup.iloc[0])} appears more than once")
    return ids


def _record_key(rel: str) -> str | None:
    """One spelling per file ("a//b", "./a/b", "a\\b" -> "a/b"); None if it leaves the folder."""
    if _CLEAN_PATH.fullmatch(rel):  # records100/00000/00001_lr: the fast, common case
        return rel
    posix = rel.replace("\\", "/")
    if posix.startswith("/") or _DRIVE.match(posix):
        return None
    parts = [p for p in posix.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def _check_record_paths(db: pd.DataFrame, path: Path) -> None:
    """filename_lr/_hr: relative paths inside the dataset, one record per path.

    A path with ``..`` or an absolute one would read files outside the dataset; two rows naming
    the same record would give a test record a training record's signal.
    """
    for column in ("filename_lr", "filename_hr"):
        seen: dict[str, int] = {}
        for ecg_id, rel in zip(db["ecg_id"].tolist(), db[column].tolist(), strict=True):
            if not isinstance(rel, str):  # an empty cell: that record is missing at this rate
                continue
            if len(rel) > MAX_RECORD_PATH_CHARS:
                raise DataError(
                    f"{path}: ecg_id {ecg_id}: {column} is {len(rel):,} characters long: {clip(rel)}"
                )
            key = _record_key(rel)
            if key is None:
                raise DataError(
                    f"{path}: ecg_id {ecg_id}: {column} {clip(rel)} leaves the dataset folder "
                    "(absolute or '..'): refused"
                )
            other = seen.setdefault(key, ecg_id)
            if other != ecg_id:
                raise DataError(
                    f"{path}: ecg_id {other} and {ecg_id} name the same record {clip(rel)} in "
                    f"{column}: refused (one record's signal would be read for another)"
                )


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
    db["ecg_id"] = _parse_ecg_ids(db, db_path)
    _check_record_paths(db, db_path)
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
        shown = sorted(unknown.items())[:20]
        listed = ", ".join(f"{clip(c, 40, bare=True)} ({n})" for c, n in shown)
        more = f" and {len(unknown) - len(shown)} more" if len(unknown) > len(shown) else ""
        log.warning("%s: ignored %d unknown scp code(s): %s%s", db_path, len(unknown), listed, more)
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
