"""MLflow tracking through ``MlflowClient`` with explicit run ids.

Explicit ids (never the fluent active-run stack) make logging safe from trial threads and from
several processes, and let a resumed study re-attach to its parent run. The names it logs under
are spelled in :mod:`ecg_sweep.tracking.contract`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ecg_sweep._locks import file_lock, try_file_lock
from ecg_sweep.errors import LockTimeoutError, TrackingError
from ecg_sweep.tracking.contract import (
    DATASET_CONTEXT_TAG,
    DATASET_CONTEXT_TRAINING,
    PARAM_CHANGED_PREFIX,
    PARENT_TAG,
    dataset_name,
)

if TYPE_CHECKING:  # data sits below tracking; only its fields are read here
    from ecg_sweep.data.dataset import PreparedData

__all__ = [
    "DEFAULT_TRACKING_URI",
    "STUDY_HTTP_RETRIES",
    "Tracker",
    "bounded_http_retries",
    "mask_url",
    "resolve_tracking_uri",
    "store_lock",
    "try_store_lock",
    "use_store",
]

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"  # MLflow 3's own default, in the working directory
_MAX_PARAM_LEN = 6000

# The userinfo of a URL ends at the authority's LAST "@": a password may hold "@" (and ":").
_URL_PASSWORD = re.compile(
    r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^\s/?#]+)(?P<post>@[^@\s/?#]*)"
)
# libpq / SQLAlchemy / HTTP query parameters that carry a secret: ?password=..., &sslpassword=...
_QUERY_SECRET = re.compile(
    r"(?P<pre>[?&;](?:password|passwd|pwd|sslpassword|secret|token|access_token|api_key)=)"
    r"(?P<pw>[^&;#\s'\"]+?)(?=[&;#\s'\"]|:\s|:?$)",
    re.IGNORECASE,
)


def _sqlite_init_lock(uri: str):
    """A lock beside a sqlite store's file (no-op for other stores)."""
    if not uri.startswith("sqlite:///"):
        return contextlib.nullcontext()
    db = Path(uri[len("sqlite:///") :])
    return file_lock(db.with_name(db.name + ".init.lock"))


@contextlib.contextmanager
def try_store_lock(uri: str, key: str) -> Iterator[bool | None]:
    """A cross-process lock named ``key`` on the tracking store ``uri``, taken only if free.

    Yields True (held for the ``with`` block), False (another process holds it) or None (the
    store offers no lock: an HTTP server). sqlite: an flock on a file in ``<db>.locks/`` beside
    the database; PostgreSQL: a session advisory lock (``pg_try_advisory_lock``).
    """
    import hashlib

    digest = hashlib.sha1(key.encode()).digest()
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        folder = db.with_name(db.name + ".locks")
        folder.mkdir(exist_ok=True)
        with try_file_lock(folder / f"{digest.hex()[:16]}.lock") as held:
            yield held
        return
    if uri.startswith("postgresql"):
        import sqlalchemy as sa

        lock_id = int.from_bytes(digest[:8], "big", signed=True)
        engine = sa.create_engine(uri, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                held = conn.execute(
                    sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_id}
                ).scalar()
                try:
                    yield bool(held)
                finally:
                    if held:
                        conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": lock_id})
        finally:
            engine.dispose()
        return
    yield None


@contextlib.contextmanager
def store_lock(uri: str, key: str, what: str, timeout: float = 120.0) -> Iterator[bool | None]:
    """:func:`try_store_lock`, waiting up to ``timeout`` seconds for it (``what`` names it in
    the :class:`LockTimeoutError`); yields True, or None on a store that offers no lock."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        with try_store_lock(uri, key) as held:
            if held is not False:
                yield held
                return
        if time.monotonic() > deadline:
            raise LockTimeoutError(
                f"gave up after {timeout:g} s waiting for {what} on {mask_url(uri)}: another "
                "ecg-sweep process holds it"
            )
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


# MLflow's HTTP client retries 7 times with backoff 2 and waits 120 s per request by default:
# about 4 minutes per call while a server is away, for every call of every trial. During a
# study these bounds apply instead, unless the user set the variables (then theirs win).
STUDY_HTTP_RETRIES = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}


@contextlib.contextmanager
def bounded_http_retries(bounds: Mapping[str, str] = STUDY_HTTP_RETRIES) -> Iterator[None]:
    """Apply ``bounds`` (MLflow's HTTP retry variables) for the block where the environment
    does not set them already; the environment is restored afterwards."""
    added = [k for k in bounds if k not in os.environ]
    for k in added:
        os.environ[k] = bounds[k]
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def mask_url(text: str) -> str:
    """Replace the password of every ``scheme://user:password@host`` in ``text`` (a password
    may contain ``@``), and the value of every ``?password=`` / ``&token=`` style query
    parameter, with ***."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['pre']}***{m['post']}", str(text))
    return _QUERY_SECRET.sub(lambda m: f"{m['pre']}***", text)


def _check_userinfo(uri: str) -> None:
    """A database URL whose password holds a raw ``@`` is cut at the wrong ``@`` by SQLAlchemy,
    and the error it raises quotes the password's tail: refuse it before, masked."""
    scheme, sep, rest = uri.partition("://")
    if (
        sep
        and not scheme.startswith("http")
        and re.split(r"[/?#]", rest, maxsplit=1)[0].count("@") > 1
    ):
        raise TrackingError(
            f"tracking URI {mask_url(uri)}: its password contains '@': write it as %40"
        )


def resolve_tracking_uri(uri: str | None) -> str:
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else ``sqlite:///mlflow.db`` in the cwd."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def use_store(uri: str) -> None:
    """Point MLflow's process-wide fluent API at one store, tracking and registry alike.

    Setting only the tracking URI leaves the registry URI of an earlier call in place (MLflow
    keeps them apart), so a second store used in one process would register into the first.
    """
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)


def _fmt_param(value: Any) -> str:
    if isinstance(value, float):
        return repr(round(value, 10))
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True)
    text = mask_url(str(value))
    return text[:_MAX_PARAM_LEN]


class Tracker:
    """A thin, explicit-id wrapper over ``MlflowClient`` for one experiment."""

    def __init__(self, tracking_uri: str | None, experiment: str, check: bool = True):
        from mlflow import MlflowClient

        self.uri = resolve_tracking_uri(tracking_uri)
        self.experiment_name = experiment
        if (
            self.uri.startswith("file:")
            or "://" not in self.uri
            and not self.uri.startswith("sqlite")
        ):
            # MLflow 3 refuses file stores unless this is set; the user chose one explicitly.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        _check_userinfo(self.uri)
        if check and self.uri.startswith(("http://", "https://")):
            self._check_http()
        self.experiment_id = None
        # Two processes creating one sqlite store at once race in MLflow's schema migration
        # (duplicate column / CircularDependencyError): serialize the first touch of the store.
        with _sqlite_init_lock(self.uri):
            try:  # a database store connects (and migrates) here
                self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
            except Exception as e:
                raise self._fail("cannot open the tracking store", e) from None
            if check:
                self.experiment_id = self._experiment_id(experiment)

    def check_reachable(self) -> None:
        """Fail fast, in one line, when an HTTP tracking server does not answer."""
        if self.uri.startswith(("http://", "https://")):
            self._check_http()

    def _check_http(self, timeout: float = 10.0) -> None:
        """One quick request: MLflow's own client retries an unreachable server for minutes."""
        import urllib.error
        import urllib.request
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(self.uri)
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        url = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/health", "", ""))
        try:
            urllib.request.urlopen(url, timeout=timeout).close()
        except urllib.error.HTTPError:
            pass  # the server answered (auth proxies may refuse /health): it is reachable
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise TrackingError(
                f"tracking URI {mask_url(self.uri)}: cannot reach the server: {reason}"
            ) from None

    def _fail(self, what: str, e: Exception) -> TrackingError:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return TrackingError(f"tracking URI {mask_url(self.uri)}: {what}: {mask_url(msg)[:300]}")

    def _experiment_id(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        try:
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                try:
                    return self.client.create_experiment(name)
                except MlflowException:
                    # Another process created it between our get and create.
                    exp = self.client.get_experiment_by_name(name)
                    if exp is None:
                        raise
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        except TrackingError:
            raise
        except Exception as e:  # MlflowException, requests errors, sqlalchemy errors
            raise self._fail("cannot reach the tracking store", e) from None

    # --- runs -------------------------------------------------------------------------------

    def start_run(
        self, name: str, tags: Mapping[str, Any] | None = None, parent_run_id: str | None = None
    ) -> str:
        all_tags = {k: _fmt_param(v) for k, v in (tags or {}).items()}
        if parent_run_id:
            all_tags[PARENT_TAG] = parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        return run.info.run_id

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        if tags:
            self.client.log_batch(run_id, tags=[RunTag(k, _fmt_param(v)) for k, v in tags.items()])

    def log_params(self, run_id: str, params: Mapping[str, Any], new_run: bool = False) -> None:
        """Log params; a key already logged with the same value is skipped (resume-safe).

        ``new_run=True`` (a run this process just created) skips reading the existing params.
        """
        from mlflow.entities import Param

        existing = {} if new_run else self.client.get_run(run_id).data.params
        new = {k: _fmt_param(v) for k, v in params.items() if v is not None}
        todo = [Param(k, v) for k, v in new.items() if existing.get(k) != v]
        changed = [p.key for p in todo if p.key in existing]
        if changed:
            # MLflow params are immutable; record the new value under a tag instead of failing.
            self.set_tags(run_id, {f"{PARAM_CHANGED_PREFIX}{k}": new[k] for k in changed})
            todo = [p for p in todo if p.key not in existing]
        for i in range(0, len(todo), 100):
            self.client.log_batch(run_id, params=todo[i : i + 100])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        batch = [
            Metric(k, float(v), ts, step)
            for k, v in metrics.items()
            if v is not None and isinstance(v, (int, float)) and math.isfinite(float(v))
        ]
        for i in range(0, len(batch), 500):
            self.client.log_batch(run_id, metrics=batch[i : i + 500])

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)

    def log_dict(self, run_id: str, obj: Any, artifact_file: str) -> None:
        self.client.log_dict(run_id, obj, artifact_file)

    def log_figure(self, run_id: str, figure: Any, artifact_file: str) -> None:
        import matplotlib.pyplot as plt

        self.client.log_figure(run_id, figure, artifact_file)
        plt.close(figure)

    def log_files(self, run_id: str, files: Mapping[str, bytes | str], artifact_path: str) -> None:
        """Write small in-memory files to a temp folder and log them as one artifact folder."""
        with tempfile.TemporaryDirectory() as d:
            for name, content in files.items():
                p = Path(d) / name
                p.write_bytes(content if isinstance(content, bytes) else content.encode())
            self.client.log_artifacts(run_id, d, artifact_path)

    def log_dataset(
        self, run_id: str, data: PreparedData, context: str = DATASET_CONTEXT_TRAINING
    ) -> None:
        """The prepared PTB-XL folder as the run's MLflow dataset input (the UI's Dataset column;
        ``dataset.name`` / ``dataset.digest`` / ``dataset.context`` in run searches).

        name ``<folder>-<rate>hz-<task>``; digest: the data fingerprint (its first 16 hex
        digits, as in the cache entry's folder name); source: the root folder; profile: rate,
        task, classes, folds and records per split; schema: the (N, 12, T) signal tensor.
        Logging the same input again (a resumed study) adds nothing.
        """
        import numpy as np
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.data.sources import LocalArtifactDatasetSource
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.types import Schema, TensorSpec

        cfg = data.config
        schema = Schema(
            [TensorSpec(np.dtype(np.float16), (-1, data.n_leads, data.n_samples), "signal")]
        )
        meta = MetaDataset(
            LocalArtifactDatasetSource(str(data.root)),
            name=dataset_name(data.root.name, data.sampling_rate, cfg.task),
            digest=(data.fingerprint or "unknown")[:16],
            schema=schema,
        )
        profile = {
            "sampling_rate": data.sampling_rate,
            "task": cfg.task,
            "classes": list(data.classes),
            "train_folds": list(cfg.train_folds),
            "val_folds": list(cfg.val_folds),
            "test_folds": list(cfg.test_folds),
            "n_train": len(data.train),
            "n_val": len(data.val),
            "n_test": len(data.test),
            "skipped_records": len(data.skipped),
            "fingerprint": data.fingerprint,
        }
        d = meta.to_dict()
        entity = Dataset(
            name=d["name"],
            digest=d["digest"],
            source_type=d["source_type"],
            source=d["source"],
            schema=d.get("schema"),
            profile=json.dumps(profile),
        )
        self.client.log_inputs(
            run_id, datasets=[DatasetInput(entity, [InputTag(DATASET_CONTEXT_TAG, context)])]
        )

    @contextlib.contextmanager
    def system_metrics(self, run_id: str, enabled: bool = True) -> Iterator[None]:
        """MLflow system metrics (``system/cpu_utilization_percentage``, memory, disk,
        network; GPU when pynvml finds one) sampled into ``run_id`` while the block runs.

        MLflow's own monitor, started for an explicit run id in a daemon thread; interval and
        samples per point follow ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` (default 10 s) and
        ``MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING``. The final partial interval is logged
        when the block ends.
        """
        if not enabled:
            yield
            return
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(run_id, tracking_uri=self.uri)
        monitor.start()
        try:
            yield
        finally:
            monitor.finish()
            # MLflow's loop drops the samples of the last, unfinished interval: a trial shorter
            # than one interval would log nothing. Sample once more and log what is pending.
            try:
                monitor.collect_metrics()
                monitor.publish_metrics(monitor.aggregate_metrics())
                monitor.mlflow_logger.flush()
            except Exception as e:  # never fail a trial over its monitoring
                log.warning("could not log the last system metrics of run %s: %s", run_id, e)

    def get_run(self, run_id: str):
        return self.client.get_run(run_id)

    def search_runs(self, filter_string: str = "", max_results: int = 1000, order_by=None):
        return self.client.search_runs(
            [self.experiment_id],
            filter_string=filter_string,
            max_results=max_results,
            order_by=order_by,
        )
