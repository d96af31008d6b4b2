"""Compression: every method on a tiny trial model, nested MLflow runs, artifacts that load back.

One tiny ViT trial (a real ``checkpoint/best.pt`` artifact in a sqlite MLflow store under
tmp_path) goes through every method once (module fixture); the tests read that one outcome.
Latency is never asserted (shared 2-core machines): only that it was measured.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from ecg_sweep.compression import (
    METHODS,
    compress_run,
    get_method,
    register_method,
    resolve_methods,
)
from ecg_sweep.config import CompressConfig
from ecg_sweep.data.dataset import PreparedData, Split
from ecg_sweep.engine import fit, predict_proba, seed_everything
from ecg_sweep.errors import ConfigError
from ecg_sweep.models import (
    build_model,
    get_model_spec,
    make_train_config,
    model_info,
    save_checkpoint,
)
from ecg_sweep.models.onnx import OnnxModule
from ecg_sweep.tracking.client import Tracker, use_store
from ecg_sweep.tracking.contract import KIND_TAG
from ecg_sweep.tracking.model_store import load_model

N_TRAIN = 192  # fine-tuning / QAT / calibration read this many training records: fast
FAST = dict(
    finetune_epochs=1,
    calibration_batches=2,
    calibration_batch_size=16,
    latency_warmup=1,
    latency_rounds=2,
    latency_block=2,
    n_bootstrap=0,
)
RUN_METRICS = (
    "size_bytes",
    "size_ratio",
    "n_params",
    "n_nonzero",
    "latency_ms_p50_bs1",
    "latency_ms_p95_bs1",
    "latency_ms_p50_bs32",
    "speedup_bs1",
    "test_macro_auc",
    "test_macro_auc_delta",
    "test_macro_f1",
    "test_macro_f1_delta",
    "val_macro_auc",
)
# int8 vs fp32 on the same records: at most this share of (record, class) decisions may flip.
INT8_DECISION_FLIPS = 0.15


def _small(data: PreparedData) -> PreparedData:
    tr = data.train
    train = Split(tr.name, tr.x[:N_TRAIN], tr.y[:N_TRAIN], tr.ecg_ids[:N_TRAIN])
    return dataclasses.replace(data, train=train)


def _trial_run(tracker: Tracker, data: PreparedData, model: str, tmp_path, epochs: int = 2) -> str:
    """A completed 'trial' run: params + checkpoint/best.pt, as the sweep leaves them."""
    info = model_info(model, get_model_spec(model).params("tiny"), data)
    seed_everything(0)
    m = build_model(info)
    cfg = make_train_config(model, max_epochs=epochs, device="cpu", n_bootstrap=0)
    fit(m, data, cfg)
    run_id = tracker.start_run("trial-0000", tags={KIND_TAG: "trial"})
    tracker.log_params(run_id, {"lr": cfg.lr, "batch_size": cfg.batch_size})
    ckpt = save_checkpoint(m, tmp_path / model / "best.pt")
    tracker.log_artifact(run_id, ckpt, "checkpoint")
    tracker.end_run(run_id)
    return run_id


@pytest.fixture(scope="module")
def small_data(learn_data) -> PreparedData:
    return _small(learn_data)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    d = tmp_path_factory.mktemp("mlflow")
    return d, Tracker(f"sqlite:///{d}/mlflow.db", "ecg-vit")


@pytest.fixture(scope="module")
def vit_outcome(store, small_data):
    d, tracker = store
    run_id = _trial_run(tracker, small_data, "vit", d)
    report = compress_run(tracker, run_id, small_data, config=CompressConfig(**FAST))
    return tracker, run_id, report


def _children(tracker: Tracker, run_id: str):
    runs = tracker.search_runs(f"tags.`mlflow.parentRunId` = '{run_id}'")
    return {r.data.tags["ecg_sweep.method"]: r for r in runs}


# --- registry -----------------------------------------------------------------------------------


def test_recommendation_is_the_fastest_int8_within_the_auc_budget():
    from ecg_sweep.compression.compress import MAX_AUC_DROP, CompressionRow, recommend

    def row(method, delta, latency, int8=True, status="ok", safe=True):
        metrics = {"val_macro_auc_delta": delta, "latency_ms_p50_bs1": latency}
        return CompressionRow(method, status, int8=int8, loads_without_code=safe, metrics=metrics)

    rows = [
        row("fp32", 0.0, 10.0, int8=False),
        row("fastest_but_worse", -MAX_AUC_DROP - 0.001, 1.0),  # fastest, loses > 0.01: never
        row("slow_int8", -0.002, 6.0),
        row("fast_int8", -MAX_AUC_DROP, 4.0),  # exactly at the budget still counts
        row("failed_fast", 0.0, 0.5, status="failed"),
        row("pruned_fp32", 0.0, 2.0, int8=False),  # not int8: never the recommendation
        row("torchscript_int8", 0.0, 1.5, safe=False),  # would need --trust-pickle to serve
    ]
    assert recommend(rows) == "fast_int8"
    assert recommend([rows[0], rows[1], rows[4], rows[5], rows[6]]) is None
    from ecg_sweep.compression import METHODS

    unsafe = {m for m, spec in METHODS.items() if not spec.loads_without_code}
    assert unsafe == {"prune_structured", "quant_static_int8", "quant_qat_int8"}


def test_registry_names_and_errors():
    assert list(METHODS)[0] == "fp32"
    for name in (
        "prune_l1_unstructured",
        "quant_dynamic_int8",
        "quant_static_int8",
        "quant_qat_int8",
        "prune_structured",
        "onnx_int8",
        "prune_structured+onnx_int8",
    ):
        assert name in METHODS
    with pytest.raises(ConfigError, match="valid: fp32, "):
        get_method("int4_magic")
    with pytest.raises(ValueError, match="already registered"):
        register_method("fp32", "again")(lambda m, c: None)
    # fp32 always runs; a chained method pulls its base in, in registry order.
    names = [m.name for m in resolve_methods(["prune_structured+onnx_int8"])]
    assert names == ["fp32", "prune_structured", "prune_structured+onnx_int8"]
    with pytest.raises(ConfigError, match="threads"):
        CompressConfig(threads=0)


# --- one full compression of a tiny ViT ---------------------------------------------------------


def test_every_method_is_a_nested_run_with_all_metrics(vit_outcome):
    tracker, run_id, report = vit_outcome
    children = _children(tracker, run_id)
    assert set(children) == set(METHODS)
    for name, run in children.items():
        assert run.info.run_name == f"compress-{name}"
        assert run.data.tags[KIND_TAG] == "compression"
        row = report.row(name)
        assert row.status == "ok", f"{name}: {row.reason}"
        assert run.info.status == "FINISHED"
        missing = [k for k in RUN_METRICS if k not in run.data.metrics]
        assert not missing, f"{name} lacks {missing}"
        assert all(math.isfinite(v) for v in run.data.metrics.values())
        assert "threads" in run.data.params and "runtime" in run.data.params
    fp32 = children["fp32"].data.metrics
    assert fp32["size_ratio"] == 1.0 and fp32["speedup_bs1"] == 1.0
    assert fp32["test_macro_auc_delta"] == 0.0
    # every delta is the variant's metric minus fp32's, every ratio the variant over fp32
    for name, run in children.items():
        m = run.data.metrics
        deltas = [k for k in m if k.endswith("_delta")]
        assert {"test_macro_auc_delta", "val_macro_auc_delta"} <= set(deltas), name
        for k in deltas:
            base = k.removesuffix("_delta")
            assert m[k] == pytest.approx(m[base] - fp32[base], abs=1e-6), (name, k)
        assert m["size_ratio"] == pytest.approx(m["size_bytes"] / fp32["size_bytes"], rel=1e-3)
    # The unstructured ablation zeroes 40% of the conv/linear weights but ships the same bytes.
    l1 = children["prune_l1_unstructured"].data.metrics
    assert l1["n_nonzero"] < 0.7 * l1["n_params"]
    assert l1["size_ratio"] == pytest.approx(1.0, abs=0.01)
    # Structured pruning really removes parameters.
    assert children["prune_structured"].data.metrics["n_params"] < 0.75 * fp32["n_params"]
    assert "finetune_val_macro_auc" in children["prune_structured"].data.metrics


def test_int8_artifacts_are_smaller_than_fp32(vit_outcome):
    _, _, report = vit_outcome
    int8 = [r for r in report.rows if r.int8]
    assert {r.method for r in int8} >= {"quant_dynamic_int8", "onnx_int8", "quant_static_int8"}
    for r in int8:
        assert r.metrics["size_bytes"] < report.row("fp32").metrics["size_bytes"], r.method
        assert r.metrics["size_ratio"] < 1.0
    combo = report.row("prune_structured+onnx_int8").metrics["size_ratio"]
    assert combo < report.row("onnx_int8").metrics["size_ratio"]


def test_logged_artifacts_load_back_and_predict_like_in_memory(vit_outcome, small_data):
    tracker, _, report = vit_outcome
    use_store(tracker.uri)  # models:/ resolves in the module's store (reset after every test)
    x, y = small_data.test.x, small_data.test.y
    fp32 = predict_proba(report.modules["fp32"], x, amp=False)
    for r in report.rows:
        # Not rebuildable from metadata: loading runs code from the store, so only on trust.
        needs_trust = r.format == "torchscript" or r.method == "prune_structured"
        if needs_trust:
            with pytest.raises(ConfigError, match="--trust-pickle"):
                load_model(r.model_uri)
        loaded, info = load_model(r.model_uri, trust_pickle=needs_trust)
        assert info.thresholds is not None and len(info.thresholds) == len(info.classes)
        assert info.extra["compression"] == r.method
        if r.format == "onnx":
            assert isinstance(loaded, OnnxModule)
        p_loaded = predict_proba(loaded, x, amp=False)
        p_mem = predict_proba(report.modules[r.method], x, amp=False)
        # Same file, same runtime: the same numbers (float summation order aside).
        np.testing.assert_allclose(p_loaded, p_mem, atol=1e-5, err_msg=r.method)
        thr = np.asarray(info.thresholds)
        assert ((p_loaded >= thr) == (p_mem >= thr)).all(), r.method
        if r.int8 and "prune" not in r.method and "qat" not in r.method:
            # Post-training int8 of the same weights: decisions at 0.5 mostly agree with fp32.
            flips = ((p_loaded >= 0.5) != (fp32 >= 0.5)).mean()
            assert flips <= INT8_DECISION_FLIPS, f"{r.method}: {flips:.1%} decisions flip"
    assert y.shape == fp32.shape


def test_summary_artifacts_and_tags_on_the_trial_run(vit_outcome):
    tracker, run_id, report = vit_outcome
    files = {a.path for a in tracker.client.list_artifacts(run_id, "compression")}
    assert files == {
        "compression/summary.md",
        "compression/summary.csv",
        "compression/tradeoff.png",
    }
    tags = tracker.get_run(run_id).data.tags
    assert tags["ecg_sweep.compression.recommended"] == (report.recommended or "none")
    md = report.to_markdown()
    assert all(name in md for name in METHODS)


def test_onnx_model_takes_raw_batches_of_any_size(vit_outcome, small_data):
    _, _, report = vit_outcome
    onnx_model = report.modules["onnx_int8"]
    for n in (1, 3):
        x = torch.from_numpy(small_data.test.x[:n]).float()
        out = onnx_model.eval()(x)
        assert isinstance(out, torch.Tensor) and out.shape == (n, len(small_data.classes))


# --- a CNN: the dynamic method does not apply and says why --------------------------------------


def test_cnn_skips_dynamic_int8_with_reason_and_quantizes_statically(tmp_path, small_data):
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "ecg-efficientnetv2")
    run_id = _trial_run(tracker, small_data, "efficientnetv2", tmp_path, epochs=1)
    cfg = CompressConfig(methods=("quant_dynamic_int8", "quant_static_int8", "onnx_int8"), **FAST)
    report = compress_run(tracker, run_id, small_data, config=cfg)
    dyn = report.row("quant_dynamic_int8")
    assert dyn.status == "skipped" and "nn.Linear" in dyn.reason
    child = _children(tracker, run_id)["quant_dynamic_int8"]
    assert child.info.status == "KILLED"
    assert "nn.Linear" in child.data.tags["ecg_sweep.skipped_reason"]
    assert not child.data.metrics  # never a made-up number
    for name in ("quant_static_int8", "onnx_int8"):
        row = report.row(name)
        assert row.status == "ok", row.reason
        assert row.metrics["size_ratio"] < 1.0  # tiny nets: graph overhead; ~0.26 at full size


# --- errors and the CLI -------------------------------------------------------------------------


def test_errors_for_unknown_run_and_missing_checkpoint(store, small_data):
    _, tracker = store
    with pytest.raises(Exception, match="not found"):
        compress_run(tracker, "0" * 32, small_data, CompressConfig(methods=("fp32",)))
    bare = tracker.start_run("trial-9999", tags={KIND_TAG: "trial"})
    with pytest.raises(ConfigError, match="no checkpoint/best.pt"):
        compress_run(tracker, bare, small_data, CompressConfig(methods=("fp32",)))
    with pytest.raises(ConfigError, match="unknown compression method"):
        compress_run(tracker, bare, small_data, CompressConfig(methods=("fp32", "nope")))


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    from ecg_sweep.cli.app import main

    code = 0
    try:
        main(list(args))
    except SystemExit as e:
        code = int(e.code or 0)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_cli_by_study_name_prints_the_table(vit_outcome, store, synth_learn, capsys):
    d, tracker = store
    _, trial_run, _ = vit_outcome
    study = tracker.start_run(
        "study-s1", tags={KIND_TAG: "study", "optuna.study_name": "s1", "best_run_id": trial_run}
    )
    tracker.end_run(study)
    common = ["--tracking-uri", f"sqlite:///{d}/mlflow.db", "--data-dir", str(synth_learn)]
    code, out, err = _cli(
        capsys,
        "compress",
        "--study-name",
        "s1",
        "--methods",
        "fp32,quant_dynamic_int8",
        "--device",
        "cpu",
        *common,
    )
    assert code == 0, err
    assert "quant_dynamic_int8" in out and "recommended" in out
    code, _, err = _cli(capsys, "compress", "--study-name", "nope", *common)
    assert code == 2 and "no study run" in err and "Traceback" not in err
    code, _, err = _cli(capsys, "compress", "--run-id", "f" * 32, *common)
    assert code == 2 and "no such run" in err
    code, _, err = _cli(capsys, "compress", "--run-id", trial_run, "--methods", "x", *common)
    assert code == 2 and "unknown compression method 'x'" in err


def test_local_onnx_file_carries_its_model_info(tmp_path, small_data):
    from ecg_sweep.compression.onnx_int8 import export_onnx

    info = model_info("vit", get_model_spec("vit").params("tiny"), small_data)
    model = build_model(info).eval()
    path = export_onnx(model, tmp_path / "m.onnx", small_data.train.x[:2])
    loaded, loaded_info = load_model(str(path))
    assert isinstance(loaded, OnnxModule) and loaded_info == info
    x = torch.from_numpy(small_data.test.x[:4]).float()
    with torch.no_grad():
        np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-4)
    with pytest.raises(ConfigError, match="not found"):
        load_model(str(tmp_path / "missing.onnx"))


# --- what users train: `train` runs and registered models ---------------------------------------


def test_compress_a_train_run_and_a_registered_model(small_data, tmp_path, capsys):
    """A `train` run keeps no checkpoint, only its MLflow model: its weights are read from the
    model's torch.export archive (no unpickling) and the runs nest under the train run; a
    ``models:/`` URI resolves to the run that logged it."""
    from ecg_sweep.tracking.model_store import load_logged_weights, logged_model_uri
    from ecg_sweep.tracking.training_run import train_and_log

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = Tracker(uri, "ecg-vit")
    cfg = make_train_config("vit", max_epochs=1, device="cpu", n_bootstrap=0)
    trained = train_and_log(small_data, "vit", get_model_spec("vit").params("tiny"), cfg, tracker)
    run_id = trained.run_id
    names = {a.path for a in tracker.client.list_artifacts(run_id)}
    assert "checkpoint" not in names  # what made `compress` refuse train runs before
    model_uri = logged_model_uri(tracker, run_id)
    assert model_uri == trained.model_uri
    # The logged model sits in the run's experiment (not MLflow's Default experiment 0).
    (logged,) = tracker.client.search_logged_models([tracker.experiment_id])
    assert logged.source_run_id == run_id
    # Same weights as the trained model, rebuilt from metadata + raw tensors.
    rebuilt = load_logged_weights(model_uri, tmp_path / "dl")
    x = torch.from_numpy(np.ascontiguousarray(small_data.test.x[:4], dtype=np.float32))
    with torch.no_grad():
        np.testing.assert_allclose(rebuilt(x).numpy(), trained.model(x).numpy(), atol=1e-5)

    steps: list[tuple[str, int, int]] = []
    report = compress_run(
        tracker,
        run_id,
        small_data,
        CompressConfig(**{**FAST, "methods": ("quant_dynamic_int8",)}),
        progress=lambda *a: steps.append(a),
    )
    # progress per step: scoring each variant, then the interleaved latency timing
    names = {w for w, _, _ in steps}
    assert {"[1/2] fp32: score validation", "[2/2] quant_dynamic_int8: score test"} <= names
    timing = [(d, t) for w, d, t in steps if w == "timing 2 variants (2 threads)"]
    assert timing[0][0] == 0 and timing[-1][0] == timing[-1][1] > 0
    children = _children(tracker, run_id)
    assert set(children) == {"fp32", "quant_dynamic_int8"}
    (inp,) = children["fp32"].inputs.dataset_inputs  # the data it was measured on
    assert inp.dataset.digest == small_data.fingerprint[:16]
    assert {t.key: t.value for t in inp.tags}["mlflow.data.context"] == "compression"
    assert report.row("fp32").metrics["test_macro_auc"] == pytest.approx(
        trained.metrics["test_macro_auc"], abs=1e-6
    )
    # A compression run is an output, not an input.
    with pytest.raises(ConfigError, match="is itself a compression run"):
        compress_run(tracker, children["fp32"].info.run_id, small_data, CompressConfig(**FAST))

    # models:/ URI through the CLI: nested under the run that logged the registered model.
    client = tracker.client
    client.create_registered_model("ecg-vit")
    version = client.create_model_version("ecg-vit", model_uri, run_id=run_id)
    client.set_registered_model_alias("ecg-vit", "champion", version.version)
    root = small_data.root
    code, out, err = _cli(
        capsys, "compress", "--model-uri", "models:/ecg-vit@champion", "--methods", "fp32",
        "--threads", "1", "--device", "cpu", "--tracking-uri", uri, "--data-dir", str(root),
    )  # fmt: skip
    assert code == 0, err
    runs = tracker.search_runs(f"tags.`mlflow.parentRunId` = '{run_id}'")
    assert len(runs) == 3 and "recommended" in out
    code, _, err = _cli(capsys, "compress", "--model-uri", "models:/ecg-vit@nope",
                        "--tracking-uri", uri, "--data-dir", str(root))  # fmt: skip
    assert code == 2 and "--model-uri models:/ecg-vit@nope: not found" in err


def test_pickled_models_are_not_unpickled_for_their_weights(small_data, tmp_path):
    """A pickle-only model (logged by another tool: no weights-only state dict beside it)."""
    import mlflow

    from ecg_sweep.models import INFO_KEY
    from ecg_sweep.tracking.client import use_store
    from ecg_sweep.tracking.model_store import load_logged_weights

    use_store(f"sqlite:///{tmp_path}/mlflow.db")
    info = model_info("vit", get_model_spec("vit").params("tiny"), small_data)
    with mlflow.start_run():
        uri = mlflow.pytorch.log_model(
            build_model(info).eval(),
            name="model",
            serialization_format="pickle",
            metadata={INFO_KEY: info.as_dict()},
            pip_requirements=["torch"],
        ).model_uri
    with pytest.raises(ConfigError, match="weights are pickled"):
        load_logged_weights(uri, tmp_path / "dl")


def test_two_compressions_of_one_run_at_once_are_refused(tmp_path, monkeypatch):
    """While one process compresses a run (its store lock held, or on a store without locks its
    compress-* runs RUNNING), a second one refuses in one line and starts no runs."""
    import contextlib

    import ecg_sweep.compression.compress as compress_mod
    from ecg_sweep.tracking.client import try_store_lock
    from ecg_sweep.tracking.contract import KIND_COMPRESSION, METHOD_TAG, PARENT_TAG

    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "ecg-vit")
    run_id = tracker.start_run("trial-0000", tags={KIND_TAG: "trial"})
    tracker.end_run(run_id)
    with try_store_lock(tracker.uri, f"ecg-sweep:compress:{run_id}") as held:
        assert held is True
        with pytest.raises(ConfigError, match=f"run {run_id} is being compressed by another"):
            compress_run(tracker, run_id, None, CompressConfig(**FAST))
    assert _children(tracker, run_id) == {}
    # A store without locks (an HTTP server): a RUNNING compress-* run of the trial refuses too.
    tracker.start_run(
        "compress-fp32",
        tags={KIND_TAG: KIND_COMPRESSION, PARENT_TAG: run_id, METHOD_TAG: "fp32"},
        parent_run_id=run_id,
    )
    monkeypatch.setattr(
        compress_mod, "try_store_lock", lambda uri, key: contextlib.nullcontext(None)
    )
    with pytest.raises(ConfigError, match="being compressed"):
        compress_run(tracker, run_id, None, CompressConfig(**FAST))
    assert len(_children(tracker, run_id)) == 1


def test_variants_decide_like_their_source_model():
    """A trial checkpoint is saved before the final evaluation: compression takes the policy,
    rule and temperature the run logged, and the training defaults for a run from before."""
    from types import SimpleNamespace

    from ecg_sweep.compression import compress
    from ecg_sweep.config import TrainConfig
    from ecg_sweep.models import ModelInfo

    info = ModelInfo("vit", {}, ("A", "B"), 100, 12, 1000, {})
    run = SimpleNamespace(
        data=SimpleNamespace(
            params={"threshold_policy": "exact_match", "at_least_one": "False"},
            metrics={"calibration_temperature": 1.7},
        )
    )
    decided = compress._with_run_decision(run, info)
    variant = SimpleNamespace(module=SimpleNamespace(info=decided), float_model=None)
    assert compress._decision(variant) == ("exact_match", False, 1.7)
    old_run = SimpleNamespace(data=SimpleNamespace(params={}, metrics={}))
    old = SimpleNamespace(module=SimpleNamespace(info=compress._with_run_decision(old_run, info)))
    default = TrainConfig()
    assert compress._decision(old) == (default.threshold_policy, default.at_least_one, 1.0)


# --- resnet1d: every method that applies to a CNN ----------------------------------------------


def test_resnet1d_through_the_cnn_methods(tmp_path, small_data):
    """The benchmark's 1-D ResNet (Conv2d (1, k) over leads-as-channels) passes the methods
    where CNNs differ from transformers: structured pruning (torch-pruning through its head),
    FX static int8 and ONNX int8 (ORT shape inference + QDQ); dynamic int8 is skipped."""
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "ecg-resnet1d")
    run_id = _trial_run(tracker, small_data, "resnet1d", tmp_path, epochs=1)
    ran = ("prune_structured", "quant_static_int8", "onnx_int8")
    cfg = CompressConfig(methods=("quant_dynamic_int8", *ran), **FAST)
    report = compress_run(tracker, run_id, small_data, config=cfg)
    assert report.row("quant_dynamic_int8").status == "skipped"
    for name in ran:
        row = report.row(name)
        assert row.status == "ok", (name, row.reason)
        assert math.isfinite(row.metrics["test_macro_auc"]), name
    pruned, fp32 = report.row("prune_structured").metrics, report.row("fp32").metrics
    assert pruned["n_params"] < fp32["n_params"]
