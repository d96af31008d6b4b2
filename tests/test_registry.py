"""Registry, promotion gate, prediction; a real MLflow server; the UI in Chromium."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from ecg_sweep.config import SweepConfig
from ecg_sweep.errors import ConfigError
from ecg_sweep.registry import fold_fingerprint, promote, register_study_best
from ecg_sweep.sweep import optimize
from ecg_sweep.tracking.client import Tracker, use_store
from tests.conftest import TINY_VIT_SPACE as SPACE
from tests.conftest import run_cli, run_study


def test_promote_gate_both_ways(sweep_data, synth_small, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = Tracker(uri, "ecg-vit")
    _, bad = run_study(sweep_data, uri, tmp_path, "bad", lr=1e-9)
    assert bad[0].aliases == ("challenger",) and bad[0].version == "1"
    first = promote(tracker, "vit")  # no champion yet: the challenger is promoted
    assert first["version"] == "1" and first["previous"] is None
    _, good = run_study(sweep_data, uri, tmp_path, "good", lr=3e-3, epochs=5)
    assert good[0].test_macro_auc > bad[0].test_macro_auc + 0.1
    r = promote(tracker, "vit")  # the better challenger beats the champion
    assert r["version"] == "2" and r["previous"] == "1"
    client = MlflowClient(uri, uri)
    assert str(client.get_model_version_by_alias("ecg-vit", "champion").version) == "2"
    assert client.get_model_version("ecg-vit", "2").tags["previous_champion"] == "1"
    with pytest.raises(
        ConfigError, match=r"version 1 \(test macro AUROC 0\.\d+\) does not beat champion version 2"
    ):
        promote(tracker, "vit", version="1")
    assert str(client.get_model_version_by_alias("ecg-vit", "champion").version) == "2"
    forced = promote(tracker, "vit", version="1", force=True)
    assert (
        forced["version"] == "1"
        and client.get_model_version("ecg-vit", "1").tags["promoted_forced"] == "true"
    )
    # A model evaluated on another test fold is not comparable.
    from ecg_sweep.config import DataConfig
    from ecg_sweep.data.dataset import prepare

    other = prepare(DataConfig(root=synth_small, cache_dir=tmp_path / "c2"))
    run_study(other, uri, tmp_path, "other-fold", lr=3e-3, epochs=1)
    with pytest.raises(ConfigError, match="different test folds"):
        promote(tracker, "vit", version="3")
    # CLI: one line, exit 2
    r = run_cli("promote", "--model", "vit", "--version", "3", "--tracking-uri", uri)
    assert r.returncode == 2 and "different test folds" in r.stderr and "Traceback" not in r.stderr


def test_registered_model_carries_preprocessing(sweep_data, tmp_path):

    from ecg_sweep.tracking.model_store import load_model

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    out, versions = run_study(sweep_data, uri, tmp_path, "s", lr=3e-3, epochs=1)
    promote(Tracker(uri, "ecg-vit"), "vit")
    use_store(uri)
    model, info = load_model("models:/ecg-vit@champion")
    assert info.classes == ("NORM", "MI", "STTC", "CD", "HYP")
    assert info.standardizer == sweep_data.standardizer.as_dict()
    assert info.params["input_repr"] == "signal" and info.params["patch_time"] == 20
    assert info.thresholds is not None and len(info.thresholds) == 5
    assert info.sampling_rate == 100 and info.n_samples == 1000
    assert (info.threshold_policy, info.at_least_one, info.temperature) == ("fixed", True, 1.0)
    mv = MlflowClient(uri, uri).get_model_version("ecg-vit", versions[0].version)
    tags = mv.tags
    assert {"ecg_sweep.study", "ecg_sweep.trial", "ecg_sweep.method", "test_macro_auc"} <= set(tags)
    # the version carries its subgroup table (macro AUROC per sex and age band) as an artifact
    import mlflow

    where = MlflowClient(uri, uri).get_model_version_download_uri("ecg-vit", mv.version)
    files = {Path(a.path).name for a in mlflow.artifacts.list_artifacts(artifact_uri=where)}
    assert "test_subgroups.csv" in files, (mv.source, where, files)
    # A DeiT student distils from the registered champion (teacher by registry URI).
    from ecg_sweep.engine import fit, predict_proba
    from ecg_sweep.models import build_model, get_model_spec, make_train_config, model_info
    from ecg_sweep.tracking.model_store import load_teacher

    teacher = load_teacher("models:/ecg-vit@champion", "deit")
    assert predict_proba(teacher, sweep_data.val.x[:4]).shape == (4, 5)
    student = build_model(model_info("deit", get_model_spec("deit").presets["tiny"], sweep_data))
    cfg = make_train_config("deit", max_epochs=1, distill_alpha=0.5, distill_temperature=2.0)
    assert fit(student, sweep_data, cfg, teacher=teacher).epochs_run == 1


def test_predict_applies_the_models_temperature_thresholds_and_at_least_one_rule(synth_small):
    import dataclasses

    import numpy as np
    import torch

    from ecg_sweep.models import ModelInfo
    from ecg_sweep.registry import predict_records

    records = [synth_small / f"records100/00000/{i:05d}_lr" for i in (1, 2, 3)]
    logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, -2.0, -4.0], [1.0, 1.0, -1.0]])

    def model(x):  # fixed logits per record: what is checked is what predict does with them
        return logits[: len(x)]

    info = ModelInfo(
        model="vit", params={}, classes=("A", "B", "C"), sampling_rate=100, n_leads=12,
        n_samples=1000, standardizer={}, thresholds=(0.6, 0.6, 0.6),
    )  # fmt: skip
    plain = predict_records(model, info, records)
    assert [p.labels for p in plain] == [("A", "C"), (), ("A", "B")]
    hot = dataclasses.replace(info, temperature=2.0, at_least_one=True)
    preds = predict_records(model, hot, records)
    expected = torch.sigmoid(logits / 2.0).numpy()
    np.testing.assert_allclose([list(p.probabilities.values()) for p in preds], expected, rtol=1e-6)
    # T = 2: C of record 1 drops to sigmoid(0.25) = 0.56 < 0.6; A and B of record 3 stay at
    # sigmoid(0.5) = 0.62; record 2 passes nothing and gets its most probable class, B
    assert [p.labels for p in preds] == [("A",), ("B",), ("A", "B")]


def test_predict_real_records_and_bad_record(sweep_data, real30, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    out, _ = run_study(sweep_data, uri, tmp_path, "s", lr=3e-3, epochs=1)
    promote(Tracker(uri, "ecg-vit"), "vit")
    import numpy as np
    import pandas as pd
    import torch

    from ecg_sweep.data.records import read_record
    from ecg_sweep.models import load_checkpoint
    from ecg_sweep.tracking.model_store import download_checkpoint

    db = pd.read_csv(real30 / "ptbxl_database.csv")
    records = [str(real30 / f) for f in db["filename_lr"]]
    out_json = tmp_path / "pred.json"
    r = run_cli(
        "predict",
        "--model-uri",
        "models:/ecg-vit@champion",
        *records,
        "--output",
        str(out_json),
        "--tracking-uri",
        uri,
    )
    assert r.returncode == 0, r.stderr
    preds = json.loads(out_json.read_text())
    assert len(preds) == 30
    classes = ("NORM", "MI", "STTC", "CD", "HYP")
    got = np.array([[p[c] for c in classes] for p in preds])
    # the same records in-process, raw millivolts into the trial's checkpoint (whose adapter
    # standardizes once): the CLI must agree (a second standardization or a wrong file would not)
    ckpt = download_checkpoint(Tracker(uri, "ecg-vit"), out.best_run_id, tmp_path / "ckpt")
    model = load_checkpoint(ckpt).eval()
    x = np.stack([read_record(Path(r), 100) for r in records]).astype(np.float32)
    with torch.no_grad():
        ref = torch.sigmoid(model(torch.from_numpy(x))).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4)
    # A 500 Hz record for a 100 Hz model: a clear error naming the file, no traceback.
    hr = str(real30 / db["filename_hr"][0])
    r = run_cli("predict", "--model-uri", "models:/ecg-vit@champion", hr, "--tracking-uri", uri)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "00841_hr: header sampling rate 500 Hz, expected 100 Hz" in r.stderr


# --- a real MLflow server ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """``mlflow server`` on 127.0.0.1 in its own process group, stopped as a group."""
    d = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    with open(d / "server.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{d}/mlflow.db",
             "--artifacts-destination", str(d / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"mlflow server exited: {(d / 'server.log').read_text()[-2000:]}")
                time.sleep(0.5)
        else:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("mlflow server did not start in 120 s")
        yield url
        os.killpg(proc.pid, signal.SIGTERM)  # the whole group: gunicorn/uvicorn workers too
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_server_study_registry_prediction(mlflow_server, sweep_data, real30, tmp_path):
    out, versions = run_study(sweep_data, mlflow_server, tmp_path, "served", lr=3e-3, epochs=2)
    promote(Tracker(mlflow_server, "ecg-vit"), "vit")
    client = MlflowClient(mlflow_server, mlflow_server)
    exp = client.get_experiment_by_name("ecg-vit")
    runs = client.search_runs([exp.experiment_id])
    assert {r.info.run_name for r in runs} >= {"study-served", "trial-0000"}
    assert exp.artifact_location.startswith("mlflow-artifacts:")  # artifacts go through the server
    assert (
        str(client.get_model_version_by_alias("ecg-vit", "champion").version) == versions[0].version
    )
    rec = str(real30 / "records100/00000/00841_lr")
    r = run_cli(
        "predict",
        "--model-uri",
        "models:/ecg-vit@champion",
        rec,
        "--tracking-uri",
        mlflow_server,
        "--output",
        str(tmp_path / "p.csv"),
    )
    assert r.returncode == 0, r.stderr
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "record,NORM,MI,STTC,CD,HYP,labels" and len(lines) == 2


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.chromium
@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium)")
def test_ui_shows_study_with_nested_trials(mlflow_server, sweep_data, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    run_study(sweep_data, mlflow_server, tmp_path, "ui", lr=3e-3, epochs=1)
    exp = MlflowClient(mlflow_server, mlflow_server).get_experiment_by_name("ecg-vit")
    shot = tmp_path / "experiment.png"
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )  # fmt: skip
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"{mlflow_server}/#/experiments/{exp.experiment_id}/runs")
        study_cell = page.locator("[role=gridcell]").filter(has_text="study-ui").first
        study_cell.wait_for(timeout=60_000)
        study_cell.locator("button").first.click()  # expand the nested trial runs
        page.get_by_text("trial-0000").first.wait_for(timeout=30_000)
        page.screenshot(path=str(shot))
        rows = page.locator("[role=row]").all_inner_texts()
        browser.close()
    study_row = next(i for i, t in enumerate(rows) if "study-ui" in t)
    assert any("trial-0000" in t for t in rows[study_row + 1 :])
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_compressed_variant_registered_and_predicts(sweep_data, real30, tmp_path):
    """The recommended int8 variant becomes a version of its own; predict runs it (ONNX Runtime)."""
    from ecg_sweep.compression import compress_run
    from ecg_sweep.config import CompressConfig

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = SweepConfig(
        model="vit", n_trials=1, max_epochs=3, search_space=(*SPACE, ("lr", 3e-3)),
        storage=f"sqlite:///{tmp_path}/optuna.db", tracking_uri=uri, study_name="c",
        fixed=(("n_bootstrap", 50), ("warmup_epochs", 0.0)), cost_probe=False,
    )  # fmt: skip
    out = optimize(cfg, sweep_data)
    report = compress_run(
        out.tracker, out.best_run_id, sweep_data, CompressConfig(methods=("onnx_int8",), threads=1)
    )
    assert report.recommended == "onnx_int8", report.table()
    fold = fold_fingerprint(sweep_data.test.ecg_ids, str(sweep_data.root), sweep_data.config.task)
    versions = register_study_best(out.tracker, out.best_run_id, "vit", fold)
    assert [v.method for v in versions] == ["fp32", "onnx_int8"]
    assert versions[0].aliases == ("challenger",) and versions[1].aliases == ()
    tags = MlflowClient(uri, uri).get_model_version("ecg-vit", versions[1].version).tags
    assert (
        float(tags["size_bytes"]) > 0
        and tags["ecg_sweep.compressed_from_version"] == versions[0].version
    )
    # registering again (a resumed study whose best did not change) adds no version
    assert [v.version for v in register_study_best(out.tracker, out.best_run_id, "vit", fold)] == [
        v.version for v in versions
    ]
    rec = str(real30 / "records100/00000/00841_lr")
    r = run_cli(
        "predict",
        "--model-uri",
        f"models:/ecg-vit/{versions[1].version}",
        rec,
        "--tracking-uri",
        uri,
        "--output",
        str(tmp_path / "p.json"),
    )
    assert r.returncode == 0, r.stderr
    (pred,) = json.loads((tmp_path / "p.json").read_text())
    assert set(pred) >= {"NORM", "MI", "STTC", "CD", "HYP", "labels"}


# --- a team stack: MLflow server on PostgreSQL with proxied artifacts, workers on PostgreSQL ---

TEAM_SPACE_YAML = """\
input_repr: signal
embed_dim: 48
num_heads: 2
depth: 1
patch_time: 20
patch_leads: 12
mlp_ratio: 2.0
batch_size: 64
lr: {low: 0.001, high: 0.003}
"""


def _can_hide_folders() -> bool:
    """Whether this process may give a child its own mount namespace (root, unshare)."""
    if shutil.which("unshare") is None:
        return False
    r = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs none /mnt"], capture_output=True
    )
    return r.returncode == 0


@pytest.mark.slow
@pytest.mark.postgres
def test_team_stack_postgres_server_two_workers_compress_register_predict(
    pg_database, synth_sweep, real30, tmp_path
):
    """`mlflow server` on PostgreSQL with --artifacts-destination; two `optimize` workers on a
    PostgreSQL Optuna storage; compress + register; promote; `predict` from the champion in a
    process whose view of the server's folder is an empty tmpfs (artifacts only over HTTP)."""
    from tests.conftest import stop_server

    server_dir, artifacts = tmp_path / "server", tmp_path / "server" / "artifacts"
    artifacts.mkdir(parents=True)
    port = _free_port()
    backend = f"postgresql://postgres@127.0.0.1:5432/{pg_database('mlflow')}"
    storage = f"postgresql://postgres@127.0.0.1:5432/{pg_database('optuna')}"
    url = f"http://127.0.0.1:{port}"
    with open(server_dir / "server.log", "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend,
             "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1"],
            cwd=server_dir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.time() + 180
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2).close()
                break
            except OSError:
                assert server.poll() is None, (server_dir / "server.log").read_text()[-3000:]
                assert time.time() < deadline, "mlflow server did not start in 180 s"
                time.sleep(0.5)
        space = tmp_path / "space.yaml"
        space.write_text(TEAM_SPACE_YAML)
        common = ["--tracking-uri", url, "--data-dir", str(synth_sweep), "--cache-dir",
                  str(tmp_path / "cache")]  # fmt: skip
        workers = []
        for i in range(2):
            wd = tmp_path / f"worker{i}"
            wd.mkdir()
            workers.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "ecg_sweep",
                        "optimize",
                        "--model",
                        "vit",
                        "--n-trials",
                        "2",
                        "--max-epochs",
                        "2",
                        "--search-space",
                        str(space),
                        "--study-name",
                        "team",
                        "--storage",
                        storage,
                        "--no-compress",
                        "--no-register",
                        "--no-cost-probe",
                        "--set",
                        "n_bootstrap=50",
                        *common,
                    ],
                    cwd=wd,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    env={**os.environ, "OMP_NUM_THREADS": "1"},  # each its share of 2 cores
                )  # fmt: skip
            )
        outs = [w.communicate(timeout=1200)[0] for w in workers]
        assert all(w.returncode == 0 for w in workers), outs
        # Nothing local: the workers used the server and the database only.
        for i in range(2):
            assert sorted(p.name for p in (tmp_path / f"worker{i}").iterdir()) == []

        client = MlflowClient(url, url)
        exp = client.get_experiment_by_name("ecg-vit")
        assert exp.artifact_location.startswith("mlflow-artifacts:")
        runs = client.search_runs([exp.experiment_id])
        kinds = sorted(r.data.tags.get("ecg_sweep.kind", "") for r in runs)
        assert kinds == ["study", "trial", "trial", "trial", "trial"]
        import optuna

        study = optuna.load_study(study_name="team", storage=storage)
        assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]

        # One machine compresses the study's best and registers it; promotion.
        cdir = tmp_path / "compress"
        cdir.mkdir()
        r = run_cli(
            "compress", "--study-name", "team", "--register", "--methods",
            "fp32,quant_dynamic_int8", "--threads", "1", "--device", "cpu", *common,
            cwd=cdir, env={"OMP_NUM_THREADS": "1"},
        )  # fmt: skip
        assert r.returncode == 0, r.stderr[-3000:]
        assert "registered ecg-vit version 1 (fp32" in r.stdout
        r = run_cli("promote", "--model", "vit", "--tracking-uri", url, cwd=cdir)
        assert r.returncode == 0 and "models:/ecg-vit@champion" in r.stdout, r.stderr
        best = study.best_trial.user_attrs["mlflow_run_id"]
        children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{best}'")
        assert {c.info.run_name for c in children} == {
            "compress-fp32", "compress-quant_dynamic_int8"
        }  # fmt: skip
        stored = [p for p in artifacts.rglob("*") if p.is_file()]
        assert any(p.name == "best.pt" for p in stored)  # the server stored what workers sent

        # A third process predicts from the champion with the server's folder hidden.
        pdir = tmp_path / "predict"
        pdir.mkdir()
        rec = str(real30 / "records100/00000/00841_lr")
        cmd = [sys.executable, "-m", "ecg_sweep", "predict", "--model-uri",
               "models:/ecg-vit@champion", rec, "--tracking-uri", url, "--output",
               str(pdir / "p.csv")]  # fmt: skip
        if _can_hide_folders():
            script = f'mount -t tmpfs none "{server_dir}" && test ! -e "{artifacts}" && exec "$@"'
            cmd = ["unshare", "-m", "sh", "-c", script, "sh", *cmd]
        r = subprocess.run(cmd, cwd=pdir, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        lines = (pdir / "p.csv").read_text().splitlines()
        assert lines[0] == "record,NORM,MI,STTC,CD,HYP,labels" and len(lines) == 2
        assert sorted(p.name for p in pdir.iterdir()) == ["p.csv"]  # no local store created
    finally:
        stop_server(server)


# --- promotions that race -----------------------------------------------------------------------


def _three_versions(tmp_path) -> tuple[Tracker, MlflowClient]:
    """ecg-vit versions 1, 2, 3 (test AUROC 0.7, 0.8, 0.9, one fold), version 1 champion."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = Tracker(uri, "ecg-vit")
    client = MlflowClient(uri, uri)
    client.create_registered_model("ecg-vit")
    for auc in (0.7, 0.8, 0.9):
        client.create_model_version(
            "ecg-vit",
            source=str(tmp_path),
            tags={"test_macro_auc": str(auc), "ecg_sweep.fold_fingerprint": "f"},
        )
    client.set_registered_model_alias("ecg-vit", "champion", "1")
    return tracker, client


def test_promote_rechecks_the_champion_before_moving_the_alias(tmp_path, monkeypatch):
    """Another promotion moves the champion to version 3 after this one's gate compared version 2
    against version 1: this one must not then replace the better champion."""
    import ecg_sweep.registry.versions as versions

    tracker, client = _three_versions(tmp_path)
    real = versions._alias_version
    calls = []

    def racing(c, name, alias):
        mv = real(c, name, alias)
        if alias == "champion" and not calls:
            calls.append(alias)
            client.set_registered_model_alias("ecg-vit", "champion", "3")  # the other promoter
        return mv

    monkeypatch.setattr(versions, "_alias_version", racing)
    with pytest.raises(ConfigError, match="the champion changed to version 3"):
        promote(tracker, "vit", "2")
    assert str(client.get_model_version_by_alias("ecg-vit", "champion").version) == "3"


def test_promotions_of_one_model_take_turns(tmp_path):
    """While one promotion holds the model's lock, another waits for it (then gates against
    the champion the first one left)."""
    import threading

    from ecg_sweep.tracking.client import try_store_lock

    tracker, client = _three_versions(tmp_path)
    result = {}
    with try_store_lock(tracker.uri, "ecg-sweep:promote:ecg-vit") as held:
        assert held is True
        t = threading.Thread(target=lambda: result.update(promote(tracker, "vit", "3")))
        t.start()
        t.join(1.5)
        assert t.is_alive() and not result  # waiting for the lock
        client.set_registered_model_alias("ecg-vit", "champion", "2")  # the holder's promotion
    t.join(30)
    assert result["version"] == "3" and result["previous"] == "2"
