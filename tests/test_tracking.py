"""The tracking layer: masked URLs, resume-safe params, the model store (log + load back)."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ecg_sweep.errors import ConfigError
from ecg_sweep.models import build_model, get_model_spec, model_info
from ecg_sweep.tracking.client import Tracker, mask_url, resolve_tracking_uri, use_store
from ecg_sweep.tracking.contract import (
    MODEL_SUBGROUPS_FILE,
    PARAM_CHANGED_PREFIX,
    RELIABILITY_PLOT,
    SUBGROUPS_CSV,
    SUBGROUPS_MD,
    THRESHOLDS_ARTIFACT,
    experiment_name,
    registered_model_name,
    trial_run_name,
)
from ecg_sweep.tracking.model_store import load_model, load_teacher, log_model, log_thresholds
from tests.conftest import run_cli


def test_mask_url_hides_passwords_only():
    assert (
        mask_url("postgresql://ann:s3cret@db:5432/optuna") == "postgresql://ann:***@db:5432/optuna"
    )
    assert mask_url("http://mlflow:5000") == "http://mlflow:5000"
    text = "cannot reach mysql://u:pw@h/x and https://v:pw2@k/"
    assert "pw" not in mask_url(text).replace("***", "")


def test_names_of_the_contract():
    assert experiment_name("vit") == "ecg-vit" and experiment_name("vit", "mine") == "mine"
    assert registered_model_name("deit") == "ecg-deit"
    assert trial_run_name(7) == "trial-0007"


def test_default_tracking_uri(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None) == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///x.db")
    assert resolve_tracking_uri(None) == "sqlite:///x.db"
    assert resolve_tracking_uri("sqlite:///y.db") == "sqlite:///y.db"


def test_params_are_resume_safe(tmp_path):
    """Logging the same params again is a no-op; a changed value goes to a tag, not an error."""
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "ecg-test")
    run_id = tracker.start_run("r")
    tracker.log_params(run_id, {"lr": 0.001, "depth": 4}, new_run=True)
    tracker.log_params(run_id, {"lr": 0.001, "depth": 4})
    tracker.log_params(run_id, {"lr": 0.002, "depth": 4})
    run = tracker.get_run(run_id)
    assert run.data.params == {"lr": "0.001", "depth": "4"}
    assert run.data.tags[f"{PARAM_CHANGED_PREFIX}lr"] == "0.002"


@pytest.fixture(scope="module")
def tiny_vit(request):
    data = request.getfixturevalue("sweep_data")
    info = model_info("vit", get_model_spec("vit").presets["tiny"], data)
    torch.manual_seed(0)
    return build_model(info).eval(), data


def test_logged_model_loads_back_with_its_info_and_predicts_alike(tiny_vit, tmp_path):
    model, data = tiny_vit
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "ecg-vit")
    run_id = tracker.start_run("r")
    model.info = model.info.with_thresholds([0.3] * len(data.classes))
    uri = log_model(tracker, run_id, model, model.info, data.test.x[:2])
    log_thresholds(tracker, run_id, data.classes, model.info.thresholds)
    import mlflow

    mlflow.set_tracking_uri(tracker.uri)
    loaded, info = load_model(uri)
    assert info == model.info and info.thresholds == (0.3,) * len(data.classes)
    x = torch.from_numpy(np.ascontiguousarray(data.test.x[:8], dtype=np.float32))
    with torch.no_grad():
        np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-5)
    local = tracker.client.download_artifacts(run_id, THRESHOLDS_ARTIFACT, str(tmp_path))
    assert json.loads(Path(local).read_text())["classes"] == list(data.classes)


def test_second_store_in_one_process_registers_and_loads_there(tiny_vit, tmp_path):
    """MLflow keeps the registry URI apart from the tracking URI: after a first store, a
    second one must register into, and resolve ``models:/`` against, itself."""
    model, data = tiny_vit
    first, second = (f"sqlite:///{tmp_path}/{n}.db" for n in ("first", "second"))
    logged = {}
    for uri, scale in ((first, 1.0), (second, -1.0)):
        tracker = Tracker(uri, "ecg-vit")
        run_id = tracker.start_run("r")
        model = copy.deepcopy(model)
        with torch.no_grad():  # the second store's model is told apart by its output layer
            [*_, last] = (m for m in model.modules() if isinstance(m, torch.nn.Linear))
            last.weight.mul_(scale)
            last.bias.add_(scale)
        source = log_model(tracker, run_id, model, model.info, data.test.x[:2])
        tracker.client.create_registered_model("x")
        tracker.client.create_model_version("x", source, run_id, model_id=source.split("/")[-1])
        x = torch.from_numpy(np.ascontiguousarray(data.test.x[:4], dtype=np.float32))
        with torch.no_grad():
            logged[uri] = model(x).numpy()
    import mlflow

    use_store(first)
    mlflow.set_registry_uri(first)  # as an earlier command or a notebook cell leaves it
    use_store(second)
    loaded, _ = load_model("models:/x/1")
    with torch.no_grad():
        np.testing.assert_allclose(loaded(x).numpy(), logged[second], rtol=1e-4, atol=1e-5)
    assert not np.allclose(logged[first], logged[second])


def test_teacher_only_for_distilled_models(tmp_path):
    with pytest.raises(ConfigError, match="distilled"):
        load_teacher(str(tmp_path / "t.pt"), "vit")
    assert load_teacher(None, "deit") is None


# --- the MLflow view: dataset inputs, system metrics, params as they ran ------------------------


def _dataset_of(run):
    (inp,) = run.inputs.dataset_inputs
    tags = {t.key: t.value for t in inp.tags}
    return inp.dataset, tags["mlflow.data.context"]


def test_study_and_trials_carry_dataset_system_metrics_and_params_as_run(sweep_data, tmp_path):
    from ecg_sweep.config import SweepConfig
    from ecg_sweep.sweep import optimize
    from tests.conftest import TINY_VIT_SPACE

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = SweepConfig(
        model="vit", n_trials=2, max_epochs=1, search_space=TINY_VIT_SPACE, storage=f"sqlite:///{tmp_path}/o.db",
        tracking_uri=uri, study_name="view", fixed=(("n_bootstrap", 20),), system_metrics=True, cost_probe=False,
    )  # fmt: skip
    out = optimize(cfg, sweep_data)
    optimize(dataclasses.replace(cfg, n_trials=1, system_metrics=False), sweep_data)  # resume
    tracker = out.tracker
    runs = tracker.search_runs()
    study = next(r for r in runs if r.data.tags["ecg_sweep.kind"] == "study")
    trials = [r for r in runs if r.data.tags["ecg_sweep.kind"] == "trial"]
    assert len(trials) == 3
    name = f"{sweep_data.root.name}-100hz-superdiagnostic"
    digest = sweep_data.fingerprint[:16]
    assert len(sweep_data.fingerprint) == 64 and digest in sweep_data.cache_path.name
    for run in [study, *trials]:
        ds, context = _dataset_of(run)  # exactly one input, also on the resumed study run
        assert (ds.name, ds.digest, context) == (name, digest, "training")
        assert json.loads(ds.source) == {"uri": str(sweep_data.root)}
        profile = json.loads(ds.profile)
        assert profile["sampling_rate"] == 100 and profile["task"] == "superdiagnostic"
        assert profile["n_train"] == len(sweep_data.train) and profile["test_folds"] == [10]
    # Users filter runs by the data they saw.
    found = tracker.search_runs(f"dataset.digest = '{digest}' and dataset.name = '{name}'")
    assert {r.info.run_id for r in found} == {r.info.run_id for r in [study, *trials]}
    # System metrics on the trials that asked for them (even ones shorter than MLflow's 10 s
    # sampling interval), none on the resumed invocation's trial.
    with_sys = [r for r in trials if "system/cpu_utilization_percentage" in r.data.metrics]
    assert len(with_sys) == 2
    assert all("system/system_memory_usage_megabytes" in r.data.metrics for r in with_sys)
    assert study.data.params["system_metrics"] == "True"
    # amp and channels_last do nothing on CPU: logged as what ran.
    for r in trials:
        p = r.data.params
        assert (p["device"], p["amp"], p["channels_last"]) == ("cpu", "False", "False")


def test_train_run_params_and_dataset(sweep_data, tmp_path):
    from ecg_sweep.models import make_train_config
    from ecg_sweep.tracking.training_run import train_and_log

    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "ecg-vit")
    cfg = make_train_config("vit", max_epochs=1, n_bootstrap=0, amp=True, channels_last=True)
    out = train_and_log(sweep_data, "vit", get_model_spec("vit").params("tiny"), cfg, tracker)
    run = tracker.get_run(out.run_id)
    ds, context = _dataset_of(run)
    assert ds.digest == sweep_data.fingerprint[:16] and context == "training"
    p = run.data.params
    assert (p["device"], p["amp"], p["channels_last"]) == ("cpu", "False", "False")
    assert not any(k.startswith("system/") for k in run.data.metrics)  # not asked for
    # calibration and subgroups: metrics, the reliability diagram, the subgroup table (in the
    # run and inside the logged model, which registered versions point to)
    m = run.data.metrics
    assert {"test_brier", "test_ece", "calibration_temperature"} <= set(m)
    assert {"test_baseline_exact_match_accuracy", "test_subgroup_min_macro_auc"} <= set(m)
    assert m["test_n_sex_male"] + m["test_n_sex_female"] == len(sweep_data.test)
    files = {
        a.path for d in ("plots", "metrics") for a in tracker.client.list_artifacts(out.run_id, d)
    }
    assert {RELIABILITY_PLOT, SUBGROUPS_CSV, SUBGROUPS_MD} <= files
    model_id = out.model_uri.split("/", 1)[1]
    in_model = {a.path for a in tracker.client.list_logged_model_artifacts(model_id)}
    assert MODEL_SUBGROUPS_FILE in in_model
    info = out.model.info
    assert (info.threshold_policy, info.at_least_one) == (cfg.threshold_policy, cfg.at_least_one)
    assert info.temperature == m["calibration_temperature"] == 1.0  # calibrate is off


# --- no code from the model store ---------------------------------------------------------------


class _Payload(torch.nn.Module):
    """A module whose unpickling runs code: it writes ``marker`` and then yields a working
    (B, 12, T) -> (B, C) module, as an attacker's champion would."""

    def __init__(self, marker: Path, n_in: int, n_out: int):
        super().__init__()
        self.expr = (
            f"(open({str(marker)!r}, 'w').write('ran'), __import__('torch').nn.Sequential("
            f"__import__('torch').nn.Flatten(), __import__('torch').nn.Linear({n_in}, {n_out})))[1]"
        )

    def __reduce_ex__(self, protocol):
        return (eval, (self.expr,))


def test_pickled_model_in_the_store_is_refused_unless_trusted(tiny_vit, tmp_path):
    """`predict` on a pickle-format champion refuses it in one line and runs nothing;
    --trust-pickle loads it (and so runs its code: that is what trust means)."""
    import mlflow

    from ecg_sweep.models import INFO_KEY

    _, data = tiny_vit
    info = model_info("vit", get_model_spec("vit").presets["tiny"], data)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    use_store(uri)
    marker = tmp_path / "pwned"
    evil = _Payload(marker, data.n_leads * data.n_samples, len(data.classes))
    with mlflow.start_run():
        model_uri = mlflow.pytorch.log_model(
            evil,
            name="model",
            serialization_format="pickle",
            metadata={INFO_KEY: info.as_dict()},
            pip_requirements=["torch"],
        ).model_uri
    assert not marker.exists()
    record = str(next((data.root / "records100").rglob("*.hea")).with_suffix(""))
    args = ("predict", "--model-uri", model_uri, record, "--tracking-uri", uri)
    r = run_cli(*args)
    assert r.returncode == 2, r.stderr
    assert not marker.exists()
    line = r.stderr.strip()
    assert "\n" not in line and model_uri in line and "--trust-pickle" in line, r.stderr
    r = run_cli(*args, "--trust-pickle")
    assert r.returncode == 0, r.stderr
    assert marker.read_text() == "ran"


def test_logged_torch_models_load_without_unpickling(tiny_vit, tmp_path, monkeypatch):
    """What ecg-sweep logs (pt2 or pickle) loads back from its weights-only state dict."""
    import mlflow

    model, data = tiny_vit
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "ecg-vit")
    uris = [
        log_model(tracker, tracker.start_run(f"r{i}"), model, model.info, data.test.x[:2], fmt)
        for i, fmt in enumerate(("auto", "pickle"))
    ]

    def no_unpickling(*a, **k):
        raise AssertionError("mlflow.pytorch.load_model was called")

    monkeypatch.setattr(mlflow.pytorch, "load_model", no_unpickling)
    x = torch.from_numpy(np.ascontiguousarray(data.test.x[:4], dtype=np.float32))
    for uri in uris:
        loaded, _ = load_model(uri)
        with torch.no_grad():
            np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-5)


def test_mask_url_hides_query_passwords_and_passwords_with_at():
    masked = mask_url("tracking URI postgresql://ann:p@ss:w0rd@db:5432/x?password=qq: refused")
    assert masked == "tracking URI postgresql://ann:***@db:5432/x?password=***: refused"
    assert mask_url("http://db/x?user=a&PassWord=s3&sslmode=require") == (
        "http://db/x?user=a&PassWord=***&sslmode=require"
    )
    assert mask_url("https://mlflow/?token=abc") == "https://mlflow/?token=***"
    assert mask_url("sqlite:///data@home/mlflow.db") == "sqlite:///data@home/mlflow.db"
