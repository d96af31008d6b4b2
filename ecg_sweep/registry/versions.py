"""MLflow model registry: register a study's winners, promote with a gate, resolve aliases."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from ecg_sweep.errors import ConfigError, TrackingError
from ecg_sweep.tracking.client import Tracker, store_lock
from ecg_sweep.tracking.contract import (
    CHALLENGER,
    CHAMPION,
    COMPRESSED_FROM_TAG,
    FOLD_FINGERPRINT_TAG,
    KIND_COMPRESSION,
    KIND_TAG,
    METHOD_TAG,
    MODEL_URI_TAG,
    PARENT_TAG,
    PREVIOUS_CHAMPION_TAG,
    PROMOTED_FORCED_TAG,
    RECOMMENDED_TAG,
    STUDY_NAME_TAG,
    TRIAL_NUMBER_TAG,
    VERSION_RUN_ID_TAG,
    VERSION_STUDY_TAG,
    VERSION_TRIAL_TAG,
    registered_model_name,
)

__all__ = [
    "RegisteredVersion",
    "register_study_best",
    "promote",
    "measured_latency_ms",
    "fold_fingerprint",
    "run_model_uri",
]

log = logging.getLogger(__name__)


def fold_fingerprint(ecg_ids, root: str, task: str) -> str:
    """Identity of a test fold: which records, from which dataset, for which task."""
    h = hashlib.sha256(f"{root}|{task}|".encode())
    h.update(",".join(map(str, sorted(int(i) for i in ecg_ids))).encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    method: str
    run_id: str
    test_macro_auc: float
    aliases: tuple[str, ...]


def run_model_uri(tracker: Tracker, run_id: str) -> str | None:
    """The model logged by a run: its model-URI tag (``MODEL_URI_TAG``), else its LoggedModel."""
    run = tracker.get_run(run_id)
    uri = run.data.tags.get(MODEL_URI_TAG)
    if uri:
        return uri
    models = tracker.client.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'", max_results=10
    )
    return models[0].model_uri if models else None


def _version_tags(
    run, method: str, study: str | None, trial: str | None, fold_id: str
) -> dict[str, Any]:
    m = run.data.metrics
    tags = {
        VERSION_STUDY_TAG: study or "",
        VERSION_TRIAL_TAG: trial or "",
        METHOD_TAG: method,
        VERSION_RUN_ID_TAG: run.info.run_id,
        FOLD_FINGERPRINT_TAG: fold_id,
    }
    for key in ("test_macro_auc", "size_bytes", "latency_ms_p50_bs1", "test_macro_f1"):
        if key in m:
            tags[key] = f"{m[key]:.6g}"
    return tags


def _best_compressed(tracker: Tracker, best_run_id: str):
    """The variant compression recommended on the trial's run: the fastest int8 one within
    MAX_AUC_DROP of fp32 on *validation* (the test fold never selects anything)."""
    best = tracker.get_run(best_run_id)
    method = best.data.tags.get(RECOMMENDED_TAG)
    if not method or method == "none":
        return None
    runs = tracker.search_runs(
        f"tags.`{PARENT_TAG}` = '{best_run_id}' and tags.`{KIND_TAG}` = '{KIND_COMPRESSION}' "
        f"and tags.`{METHOD_TAG}` = '{method}'",
        order_by=["attributes.start_time DESC"],
    )
    runs = [r for r in runs if r.info.status == "FINISHED"]
    if not runs or run_model_uri(tracker, runs[0].info.run_id) is None:
        return None
    return runs[0]


def register_study_best(
    tracker: Tracker, best_run_id: str, model: str, fold_id: str, include_compressed: bool = True
) -> list[RegisteredVersion]:
    """Register the best trial's model and its recommended compressed variant as versions of
    ``ecg-<model>``; the best trial's model becomes ``challenger``.

    Serialized per registered model (a lock on the store): workers of one study finish together
    and each registers the best; unlocked, both saw it unregistered and created two versions.
    """
    name = registered_model_name(model)
    with store_lock(tracker.uri, f"ecg-sweep:register:{name}", f"the registration lock of {name}"):
        return _register_held(tracker, best_run_id, model, name, fold_id, include_compressed)


def _register_held(
    tracker: Tracker,
    best_run_id: str,
    model: str,
    name: str,
    fold_id: str,
    include_compressed: bool,
) -> list[RegisteredVersion]:
    client = tracker.client
    best = tracker.get_run(best_run_id)
    study = best.data.tags.get(STUDY_NAME_TAG)
    trial = best.data.tags.get(TRIAL_NUMBER_TAG)
    if "test_macro_auc" not in best.data.metrics:
        raise ConfigError(
            f"run {best_run_id} has no test metrics: it is not an evaluated best trial"
        )
    entries = [(best, "fp32")]
    if include_compressed:
        comp = _best_compressed(tracker, best_run_id)
        if comp is not None:
            entries.append((comp, comp.data.tags[METHOD_TAG]))
    try:
        client.get_registered_model(name)
    except Exception:
        client.create_registered_model(
            name, description=f"ecg-sweep {model}: PTB-XL multi-label classifiers"
        )
    already = {
        v.run_id: v for v in client.search_model_versions(f"name = '{name}'", max_results=1000)
    }
    out = []
    for run, method in entries:
        if run.info.run_id in already:  # a resumed study whose best did not change
            out.append((already[run.info.run_id], run, method))
            continue
        uri = run_model_uri(tracker, run.info.run_id)
        if uri is None:
            raise TrackingError(f"run {run.info.run_id} has no logged model to register")
        model_id = uri.split("/", 1)[1] if uri.startswith("models:/m-") else None
        mv = client.create_model_version(
            name,
            source=uri,
            run_id=run.info.run_id,
            tags=_version_tags(run, method, study, trial, fold_id),
            model_id=model_id,
            description=f"{method} variant of study {study} trial {trial}",
        )
        out.append((mv, run, method))
    # The newest best is the study's best model itself; its compressed sibling is registered
    # beside it (tagged) for `promote --version N` where size and latency matter more.
    winner = out[0]
    client.set_registered_model_alias(name, CHALLENGER, winner[0].version)
    for mv, _, _ in out[1:]:
        client.set_model_version_tag(name, mv.version, COMPRESSED_FROM_TAG, str(winner[0].version))
    return [
        RegisteredVersion(
            name,
            str(mv.version),
            method,
            run.info.run_id,
            run.data.metrics.get("test_macro_auc", float("nan")),
            (CHALLENGER,) if mv is winner[0] else (),
        )
        for mv, run, method in out
    ]


def _alias_version(client, name: str, alias: str):
    try:
        return client.get_model_version_by_alias(name, alias)
    except Exception:
        return None


def measured_latency_ms(tracker: Tracker, mv) -> float | None:
    """A registered version's measured CPU latency at batch 1 (p50, ms): its own tag (compressed
    variants carry it), else the ``fp32`` compression run measured under its run (the float
    model as compression timed it); None when it was never measured."""
    if "latency_ms_p50_bs1" in mv.tags:
        return float(mv.tags["latency_ms_p50_bs1"])
    run_id = mv.tags.get(VERSION_RUN_ID_TAG) or mv.run_id
    runs = tracker.search_runs(
        f"tags.`{PARENT_TAG}` = '{run_id}' and tags.`{KIND_TAG}` = '{KIND_COMPRESSION}' "
        f"and tags.`{METHOD_TAG}` = 'fp32'",
        order_by=["attributes.start_time DESC"],
    )
    for r in runs:
        if r.info.status == "FINISHED" and "latency_ms_p50_bs1" in r.data.metrics:
            return float(r.data.metrics["latency_ms_p50_bs1"])
    return None


def promote(
    tracker: Tracker,
    model: str,
    version: str | None = None,
    force: bool = False,
    max_latency_ms: float | None = None,
) -> dict:
    """Move ``champion`` to ``version`` (default: the challenger) if it beats the champion on
    test macro AUROC of the same test fold; record the previous champion in a tag.

    ``max_latency_ms``: refuse a version whose measured batch-1 latency exceeds it, or that was
    never measured (``--force`` does not override a budget).

    Promotions of one registered model are serialized (a lock on the store), and the champion
    is read again right before the alias moves: a promotion that raced another is refused
    instead of replacing a champion its gate never compared against.
    """
    name = registered_model_name(model)
    with store_lock(tracker.uri, f"ecg-sweep:promote:{name}", f"the promotion lock of {name}"):
        return _promote_held(tracker, model, name, version, force, max_latency_ms)


def _promote_held(
    tracker: Tracker,
    model: str,
    name: str,
    version: str | None,
    force: bool,
    max_latency_ms: float | None,
) -> dict:
    client = tracker.client
    try:
        client.get_registered_model(name)
    except Exception:
        raise ConfigError(
            f"no registered model {name!r}; run `ecg-sweep optimize --model {model}` first"
        ) from None
    if version is None:
        mv = _alias_version(client, name, CHALLENGER)
        if mv is None:
            raise ConfigError(f"{name} has no {CHALLENGER!r} alias; pass --version")
    else:
        try:
            mv = client.get_model_version(name, str(version))
        except Exception:
            raise ConfigError(f"{name} has no version {version}") from None
    if max_latency_ms is not None:
        if not max_latency_ms > 0:
            raise ConfigError(f"--max-latency-ms must be > 0, got {max_latency_ms}")
        latency = measured_latency_ms(tracker, mv)
        if latency is None:
            raise ConfigError(
                f"{name} version {mv.version} has no measured latency; compress its run first "
                f"(ecg-sweep compress --run-id {mv.run_id}) or drop --max-latency-ms"
            )
        if latency > max_latency_ms:
            raise ConfigError(
                f"{name} version {mv.version}: measured latency {latency:.2f} ms (batch 1, p50) "
                f"exceeds --max-latency-ms {max_latency_ms:g}; not promoted"
            )
    champion = _alias_version(client, name, CHAMPION)
    if champion is not None and champion.version == mv.version:
        raise ConfigError(f"{name} version {mv.version} is already the champion")
    new_auc = float(mv.tags.get("test_macro_auc", "nan"))
    result = {"name": name, "version": str(mv.version), "test_macro_auc": new_auc, "previous": None}
    if champion is not None:
        old_auc = float(champion.tags.get("test_macro_auc", "nan"))
        result["previous"] = str(champion.version)
        result["previous_test_macro_auc"] = old_auc
        same_fold = mv.tags.get(FOLD_FINGERPRINT_TAG) == champion.tags.get(FOLD_FINGERPRINT_TAG)
        if not force:
            if not same_fold:
                raise ConfigError(
                    f"{name} version {mv.version} and champion version {champion.version} were "
                    f"evaluated on different test folds; not comparable (--force to promote anyway)"
                )
            if not new_auc > old_auc:
                raise ConfigError(
                    f"{name} version {mv.version} (test macro AUROC {new_auc:.4f}) does not beat "
                    f"champion version {champion.version} ({old_auc:.4f}); not promoted "
                    f"(--force to promote anyway)"
                )
    # Re-read: on a store without a lock another promotion may have moved it since the gate.
    now = _alias_version(client, name, CHAMPION)
    if (now and now.version) != (champion and champion.version):
        raise ConfigError(
            f"{name}: the champion changed to version {now.version if now else 'none'} while "
            f"version {mv.version} was being checked; run promote again"
        )
    if champion is not None:
        client.set_model_version_tag(name, mv.version, PREVIOUS_CHAMPION_TAG, str(champion.version))
    client.set_registered_model_alias(name, CHAMPION, mv.version)
    client.set_model_version_tag(name, mv.version, PROMOTED_FORCED_TAG, str(bool(force)).lower())
    return result
