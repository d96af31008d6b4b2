"""Optuna plumbing: samplers and pruners by name, storage, the study lock.

The Optuna storage is the source of truth for a study (MLflow is the view). The embedded default
is ``sqlite:///optuna.db`` in the working directory: resumable, shared safely by several processes
on one machine, with heartbeats so a dead worker's trial is failed and retried. PostgreSQL URLs
serve many machines.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna

from ecg_sweep._locks import file_lock
from ecg_sweep.errors import ConfigError, StorageError
from ecg_sweep.tracking.client import mask_url

__all__ = [
    "DEFAULT_STORAGE",
    "SAMPLERS",
    "PRUNERS",
    "make_sampler",
    "make_pruner",
    "make_storage",
    "study_lock",
    "worker_token",
]

log = logging.getLogger(__name__)

DEFAULT_STORAGE = "sqlite:///optuna.db"

SamplerFactory = Callable[[int], optuna.samplers.BaseSampler]
PrunerFactory = Callable[[int], optuna.pruners.BasePruner]

SAMPLERS: dict[str, SamplerFactory] = {}
PRUNERS: dict[str, PrunerFactory] = {}

# Optuna < 4.9 warns on every independently sampled conditional param unless told not to;
# 4.9 deprecated the flag (FutureWarning when passed) and made silence the default.
_OPTUNA_VERSION = tuple(int(p) for p in optuna.__version__.split(".")[:2] if p.isdigit())
_TPE_QUIET: dict[str, bool] = (
    {"warn_independent_sampling": False} if _OPTUNA_VERSION < (4, 9) else {}
)


def _register(table: dict, name: str):
    def deco(fn):
        if name in table:
            raise ValueError(f"{name!r} is already registered")
        table[name] = fn
        return fn

    return deco


@_register(SAMPLERS, "tpe")
def _tpe(seed: int) -> optuna.samplers.BaseSampler:
    # multivariate + group model the conditional geometry params (they depend on input_repr);
    # constant_liar keeps parallel workers from sampling the same point.
    return optuna.samplers.TPESampler(
        seed=seed,
        multivariate=True,
        group=True,
        constant_liar=True,
        n_startup_trials=5,
        **_TPE_QUIET,
    )


@_register(SAMPLERS, "random")
def _random(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


@_register(SAMPLERS, "cmaes")
def _cmaes(seed: int) -> optuna.samplers.BaseSampler:
    # CMA-ES handles the numeric params; categoricals fall back to a seeded random sampler.
    return optuna.samplers.CmaEsSampler(
        seed=seed,
        n_startup_trials=3,
        independent_sampler=optuna.samplers.RandomSampler(seed=seed),
        warn_independent_sampling=False,
    )


@_register(SAMPLERS, "gp")
def _gp(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=5, warn_independent_sampling=False)


@_register(PRUNERS, "median")
def _median(max_epochs: int) -> optuna.pruners.BasePruner:
    # Never prune in the first 2 trials or before the 2nd epoch: early AUROC is noisy.
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)


@_register(PRUNERS, "hyperband")
def _hyperband(max_epochs: int) -> optuna.pruners.BasePruner:
    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(max_epochs, 2))


@_register(PRUNERS, "none")
def _nop(max_epochs: int) -> optuna.pruners.BasePruner:
    return optuna.pruners.NopPruner()


def _lookup(table: dict, kind: str, name: str):
    try:
        return table[name]
    except KeyError:
        raise ConfigError(f"--{kind} {name!r} is unknown; valid: {', '.join(table)}") from None


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    return _lookup(SAMPLERS, "sampler", name)(seed)


def make_pruner(name: str, max_epochs: int) -> optuna.pruners.BasePruner:
    return _lookup(PRUNERS, "pruner", name)(max_epochs)


def make_storage(
    url: str | None,
    heartbeat_interval: int = 30,
    grace_period: int = 120,
    stale_callback: Callable | None = None,
) -> optuna.storages.RDBStorage:
    """An RDBStorage with heartbeats; an unreachable URL is a clear error before any training."""
    url = url or DEFAULT_STORAGE
    engine_kwargs: dict = {}
    if url.startswith("sqlite"):
        # Several processes share one file: wait for locks instead of failing at once.
        engine_kwargs = {"connect_args": {"timeout": 60}}
    elif url.startswith(("postgresql", "mysql")):
        engine_kwargs = {"pool_pre_ping": True}
    try:
        # Workers started together on a fresh database race in Optuna's CREATE TABLEs
        # (PostgreSQL: "duplicate key value violates pg_type_typname_nsp_index"): first touch
        # under the cross-process lock.
        with study_lock(url, "<storage schema>"):
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=stale_callback,
            )
    except Exception as e:  # sqlalchemy OperationalError, ArgumentError, ImportError of drivers
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StorageError(
            f"--storage {mask_url(url)}: cannot open: {mask_url(msg)[:300]}"
        ) from None


@contextlib.contextmanager
def study_lock(url: str | None, study_name: str) -> Iterator[None]:
    """Serialize study setup (creating the MLflow parent run) across processes and machines.

    sqlite: an flock beside the database file. PostgreSQL: a session advisory lock. Others: none.
    """
    url = url or DEFAULT_STORAGE
    key = f"ecg-sweep:{study_name}"
    if url.startswith("sqlite:///"):
        db = Path(url[len("sqlite:///") :] or "optuna.db")
        with file_lock(
            db.with_name(db.name + f".{hashlib.sha1(key.encode()).hexdigest()[:8]}.lock")
        ):
            yield
        return
    if url.startswith("postgresql"):
        import sqlalchemy as sa

        lock_id = int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big", signed=True)
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": lock_id})
                try:
                    yield
                finally:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": lock_id})
        finally:
            engine.dispose()
        return
    log.debug("no cross-process lock for storage %s", mask_url(url))
    yield


def worker_token() -> str:
    return f"{os.uname().nodename}-{os.getpid()}"
