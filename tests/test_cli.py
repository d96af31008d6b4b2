"""The command line as a user meets it: help, models, data synth/inspect, train, ui."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from mlflow import MlflowClient

from tests.conftest import TINY_VIT_SPACE, run_cli, start_server_cli, stop_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip

COMMANDS = [
    [], ["data"], ["data", "synth"], ["data", "download"], ["data", "inspect"], ["models"],
    ["train"], ["optimize"], ["compress"], ["compare"], ["promote"], ["predict"], ["ui"],
    ["dashboard"],
]  # fmt: skip


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_help_on_every_command(cmd):
    r = run_cli(*cmd, "--help")
    assert r.returncode == 0, r.stderr
    assert "Usage" in r.stdout


def test_models_json_lists_families_and_spaces():
    r = run_cli("models", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert sorted(report) == ["convnext", "deit", "efficientnetv2", "resnet1d", "vit"]
    assert report["vit"]["defaults"]["embed_dim"] == 256
    assert report["vit"]["search_space"]["patch_time"]["choices"] == [10, 20, 25, 40, 50]
    assert "distill_alpha" in report["deit"]["search_space"]
    assert report["convnext"]["train_defaults"]["lr"] == 4e-3


def test_data_synth_then_inspect(tmp_path):
    out = tmp_path / "ds"
    r = run_cli(
        "data", "synth", "--out", str(out), "--n-records", "40", "--seed", "5",
        "--label-noise", "1", "--normal-variants", "1",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "wrote 40 records" in r.stdout
    # every finding without its signature, every NORM-only record with a variant
    n = re.search(r"(\d+)/(\d+) findings without their signature, (\d+) normal", r.stdout)
    assert n and n[1] == n[2] != "0" and int(n[3]) > 0, r.stdout
    r = run_cli("data", "inspect", str(out), "--json", "--sampling-rate", "500")
    report = json.loads(r.stdout)
    assert (
        report["records"] == 40 and report["sampling_rate"] == 500 and report["bad_records"] == []
    )
    assert all(report["folds"][str(f)] > 0 for f in range(1, 11))
    # refuses to overwrite a dataset
    r = run_cli("data", "synth", "--out", str(out), "--n-records", "40")
    assert r.returncode == 2 and "Traceback" not in r.stderr and str(out) in r.stderr


def test_download_unreachable_is_one_line(tmp_path):
    r = run_cli(
        "data",
        "download",
        "--out",
        str(tmp_path / "ptbxl"),
        "--url",
        "http://127.0.0.1:9/ptbxl.zip",
        "--sums-sha256",
        "0" * 64,  # pinned: no request for the published checksum list
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("error:") and "127.0.0.1:9" in r.stderr
    assert not (tmp_path / "ptbxl").exists()


def test_train_logs_a_complete_run(synth_sweep, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    r = run_cli(
        "train", "--model", "convnext", "--preset", "tiny", "--max-epochs", "2", "--set", "lr=3e-3",
        "--set", "n_bootstrap=50", "--data-dir", str(synth_sweep), "--cache-dir", str(tmp_path / "c"),
        "--checkpoint", str(tmp_path / "best.pt"),
        env={"ECG_SWEEP_PROGRESS_INTERVAL": "0", "MLFLOW_TRACKING_URI": uri},  # the README's way
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "test macro AUROC" in r.stdout and (tmp_path / "best.pt").is_file()
    # progress inside the epochs, as plain lines (stderr is a pipe here)
    assert re.search(r"^epoch 1 train: \d+/\d+ samples \(\d+%\), .* samples/s, ETA", r.stderr, re.M)
    assert re.search(r"^epoch 0 validate: ", r.stderr, re.M)
    client = MlflowClient(uri, uri)
    exp = client.get_experiment_by_name("ecg-convnext")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["ecg_sweep.kind"] == "train"
    p = run.data.params
    assert (
        p["model"] == "convnext"
        and p["lr"] == "0.003"
        and p["width"] == "16"
        and p["max_epochs"] == "2"
    )
    assert p["signal_layout"] == "1d" and "image_height" not in p
    history = client.get_metric_history(run.info.run_id, "val_macro_auc")
    assert [m.step for m in history] == [0, 1]
    assert {"test_macro_auc", "test_macro_auc_ci_low", "test_auc_MI", "best_val_macro_auc"} <= set(
        run.data.metrics
    )


def test_train_rejects_unknown_set_key(synth_sweep):
    r = run_cli("train", "--model", "vit", "--set", "dpth=3", "--data-dir", str(synth_sweep))
    assert r.returncode == 2 and "--set dpth: not a parameter of model 'vit'" in r.stderr


@pytest.mark.parametrize("command", ["train", "optimize"])
def test_unknown_threshold_policy_is_one_line(command, synth_sweep, tmp_path):
    r = run_cli(
        command, "--model", "vit", "--threshold-policy", "youden", "--data-dir", str(synth_sweep),
        "--tracking-uri", f"sqlite:///{tmp_path}/m.db", cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "threshold_policy must be one of f1, exact_match, fixed" in r.stderr


def test_ui_serves_the_local_store(tmp_path):
    # a run in the default store of the working directory: the UI must serve this store
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db", f"sqlite:///{tmp_path}/mlflow.db")
    exp_id = client.create_experiment(f"ui-{tmp_path.name}")
    run = client.create_run(exp_id, run_name="served")
    client.log_metric(run.info.run_id, "val_macro_auc", 0.75)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ecg_sweep", "ui", "--port", str(port)],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    assert r.read().strip() == b"OK"
                break
            except OSError:
                assert proc.poll() is None, "ecg-sweep ui exited"
                time.sleep(0.5)
        else:
            pytest.fail("the UI did not answer in 120 s")
        body = json.dumps({"experiment_ids": [exp_id]}).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/2.0/mlflow/runs/search", data=body,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(req, timeout=30) as r:
            (found,) = json.load(r)["runs"]
        assert found["info"]["run_id"] == run.info.run_id
        assert found["data"]["metrics"][0]["value"] == 0.75
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


# --- ecg-sweep dashboard (optuna-dashboard) -----------------------------------------------------


def test_dashboard_errors_are_one_line_without_password(tmp_path):
    r = run_cli("dashboard", "--storage", f"sqlite:///{tmp_path}/none.db")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"no such file {tmp_path}/none.db" in r.stderr
    assert not (tmp_path / "none.db").exists()  # nothing created behind the user's back
    r = run_cli("dashboard", "--storage", "postgresql://ann:s3cret@127.0.0.1:9/optuna")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "postgresql://ann:***@127.0.0.1:9/optuna" in r.stderr and "s3cret" not in r.stderr


@pytest.mark.slow
@pytest.mark.postgres
def test_dashboard_on_postgres_prints_masked_urls(pg_database, tmp_path):
    import optuna

    url = f"postgresql://postgres:s3cret@127.0.0.1:5432/{pg_database('dash')}"  # trust auth
    study = optuna.create_study(study_name="pg-study", storage=url, direction="maximize")
    study.optimize(lambda t: t.suggest_float("lr", 1e-4, 1e-2, log=True), n_trials=3)
    proc, m = start_server_cli(
        ["dashboard", "--storage", url, "--port", "0"],
        tmp_path / "dash.log",
        r"pg-study: (http://127\.0\.0\.1:\d+)/dashboard/studies/(\d+)",
    )
    try:
        base, study_id = m.group(1), m.group(2)
        with urllib.request.urlopen(f"{base}/api/studies/{study_id}", timeout=30) as r:
            detail = json.loads(r.read())
        assert detail["name"] == "pg-study" and len(detail["trials"]) == 3
    finally:
        stop_server(proc)
    log = (tmp_path / "dash.log").read_text()
    assert "postgresql://postgres:***@127.0.0.1:5432/" in log and "s3cret" not in log


@pytest.mark.slow
@pytest.mark.chromium
@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium)")
def test_dashboard_shows_a_study_and_its_trials_in_chromium(sweep_data, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    from ecg_sweep.config import SweepConfig
    from ecg_sweep.sweep import optimize

    storage = f"sqlite:///{tmp_path}/optuna.db"
    cfg = SweepConfig(
        model="vit", n_trials=3, max_epochs=2, search_space=(*TINY_VIT_SPACE, ("lr", {"low": 1e-3, "high": 3e-3})),
        storage=storage, tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", study_name="dash",
        fixed=(("n_bootstrap", 20),), cost_probe=False,
    )  # fmt: skip
    optimize(cfg, sweep_data)
    proc, m = start_server_cli(
        ["dashboard", "--storage", storage, "--port", "0"],
        tmp_path / "dash.log",
        r"dash: (http://127\.0\.0\.1:\d+/dashboard/studies/\d+)",
    )
    shot = tmp_path / "dashboard.png"
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{m.group(1)}/trials")
            page.get_by_text("Trial 2", exact=True).first.wait_for(timeout=60_000)
            text = page.inner_text("body")
            page.screenshot(path=str(shot))
            page.goto(m.group(1))  # the study page: history, importances, intermediate values
            page.get_by_text("Intermediate values").first.wait_for(timeout=60_000)
            browser.close()
    finally:
        stop_server(proc)
    assert "dash (id=" in text and "3 Trials" in text
    assert all(f"Trial {n}" in text for n in range(3))
    # the selected trial's state, its searched parameter and its per-epoch intermediate values
    assert "Complete" in text and "Best Trial" in text
    assert re.search(r"\nlr 0\.00\d+", text) and re.search(r"Intermediate Values\s+0 0\.\d+", text)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


# --- progress on long work ----------------------------------------------------------------------


def test_progress_plain_lines_when_not_a_terminal(capsys, monkeypatch):
    """Piped (CI logs, nohup): periodic plain lines with rate and ETA, at most one per interval
    per job; no bar, no escape codes."""
    from ecg_sweep.cli._common import ProgressDisplay

    monkeypatch.delenv("ECG_SWEEP_FORCE_PROGRESS", raising=False)
    with ProgressDisplay(interval=3600) as d:
        assert not d.live
        for done in range(0, 1001, 100):
            d.update("t", "epoch 0 train", done, 1000)
    assert capsys.readouterr().err == ""  # nothing before the first interval has passed
    with ProgressDisplay(interval=0.0) as d:
        time.sleep(0.01)
        d.update("t", "trial 3 epoch 2 train", 250, 1000)
        d.update("t", "trial 3 epoch 2 train", 500, 1000)
        d.update("v", "trial 4 epoch 0 validate", 10, 40)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3 and "\x1b" not in "".join(lines)
    assert re.fullmatch(
        r"trial 3 epoch 2 train: 500/1000 samples \(50%\), [\d,.]+ samples/s, ETA \d+:\d\d",
        lines[1],
    ), lines
    assert lines[2].startswith("trial 4 epoch 0 validate: 10/40 samples (25%)")


def test_progress_bar_in_a_terminal(monkeypatch):
    """In a terminal: a rich bar with done/total, rate and ETA, gone when the job ends."""
    import io

    from rich.console import Console

    from ecg_sweep.cli import _common

    buf = io.StringIO()
    monkeypatch.setattr(
        _common, "console", Console(file=buf, force_terminal=True, width=120, stderr=True)
    )
    with _common.ProgressDisplay() as d:
        assert d.live
        d.update("t", "epoch 0 train", 300, 1000)
        d._bar.refresh()
        d.finish("t")
    text = buf.getvalue()
    assert "epoch 0 train" in text and "300/1000" in text and "samples/s" in text


# --- ecg-sweep optimize as the README shows it ----------------------------------------------------


@pytest.mark.slow
def test_optimize_with_its_defaults_env_stores_and_a_registry_teacher(synth_sweep, tmp_path):
    """The README's `optimize`: data and cache from the environment, the default stores in the
    working directory, compression and registration on; two parallel trials; then a DeiT
    distilled from the registered ViT (`--teacher models:/...`)."""
    import optuna

    data = tmp_path / "data"
    shutil.copytree(synth_sweep, data)
    bad = next(data.glob("records100/*/*_lr.dat"))
    bad.write_bytes(bad.read_bytes()[:100])  # a truncated record: --on-bad-record decides
    env = {"ECG_SWEEP_DATA": str(data), "ECG_SWEEP_CACHE": str(tmp_path / "cache"),
           "ECG_SWEEP_PROGRESS_INTERVAL": "0"}  # fmt: skip
    # a small space keeps the test fast; everything else is the defaults
    space = tmp_path / "space.yaml"
    space.write_text("input_repr: signal\nembed_dim: {choices: [24, 48]}\nnum_heads: 2\n"
                     "depth: 1\npatch_time: 25\nbatch_size: 64\nlr: 0.003\naugment: false\n")  # fmt: skip
    common = ("--preset", "tiny", "--max-epochs", "1", "--set", "n_bootstrap=20",
              "--sampling-rate", "100", "--task", "superdiagnostic")  # fmt: skip
    r = run_cli("optimize", "--model", "vit", *common, "--n-trials", "1", env=env, cwd=tmp_path)
    assert r.returncode == 2 and bad.stem in r.stderr and "--on-bad-record" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_cli("optimize", "--model", "vit", *common, "--n-trials", "2", "--n-jobs", "2",
                "--timeout", "900", "--on-bad-record", "skip", "--search-space", str(space),
                env=env, cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert any((tmp_path / "cache").iterdir())  # $ECG_SWEEP_CACHE holds the decoded signals
    study = optuna.load_study(study_name="vit-sweep", storage=f"sqlite:///{tmp_path}/optuna.db")
    # (a trial may end PRUNED: the median pruner and the cost guard are on by default)
    t0, t1 = [t for t in study.trials if t.datetime_complete is not None]
    states = {t0.state.name, t1.state.name}
    assert "COMPLETE" in states and states <= {"COMPLETE", "PRUNED"}, r.stderr[-3000:]
    # --n-jobs 2: the two trials ran at the same time
    assert t0.datetime_start < t1.datetime_complete and t1.datetime_start < t0.datetime_complete
    uri = f"sqlite:///{tmp_path}/mlflow.db"  # the default tracking store
    client = MlflowClient(uri, uri)
    challenger = client.get_model_version_by_alias("ecg-vit", "challenger")
    exp = client.get_experiment_by_name("ecg-vit")
    compressed = client.search_runs([exp.experiment_id], "tags.`ecg_sweep.kind` = 'compression'")
    assert compressed and {c.data.tags["mlflow.parentRunId"] for c in compressed} == {
        challenger.run_id
    }
    from ecg_sweep.data.ptbxl import load_metadata

    labelled = load_metadata(data).labelled  # records with a diagnostic label are the dataset
    n_records = len(labelled) - (int(bad.stem.split("_")[0]) in labelled.index)
    # rich wraps the data line to the console width: any whitespace between the words
    sizes = re.search(r"train\s+(\d+)\s+/\s+val\s+(\d+)\s+/\s+test\s+(\d+)", r.stdout + r.stderr)
    assert sum(map(int, sizes.groups())) == n_records  # the bad record was skipped

    r = run_cli("optimize", "--model", "deit", *common, "--n-trials", "1", "--no-compress",
                "--no-register", "--on-bad-record", "skip", "--teacher", "models:/ecg-vit@challenger",
                env=env, cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    exp = client.get_experiment_by_name("ecg-deit")
    (trial,) = client.search_runs([exp.experiment_id], "tags.`ecg_sweep.kind` = 'trial'")
    assert trial.data.params["teacher"] == "models:/ecg-vit@challenger"
    assert {"distill_alpha", "distill_temperature"} <= set(trial.data.params)


def test_debug_shows_the_traceback_that_users_do_not_see(tmp_path):
    args = ("optimize", "--model", "vit", "--data-dir", str(tmp_path / "missing"))
    plain = run_cli(*args, cwd=tmp_path)
    debug = run_cli("--debug", *args, cwd=tmp_path)
    assert plain.returncode == 2 and debug.returncode != 0
    assert "Traceback" not in plain.stderr and len(plain.stderr.strip().splitlines()) == 1
    assert "Traceback (most recent call last)" in debug.stderr
    message = plain.stderr.strip().removeprefix("error: ")
    assert "missing: dataset folder does not exist" in message and message in debug.stderr


# --- passwords never printed ----------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _main(capsys, *args: str) -> tuple[int, str, str]:
    """The console entry point in this process (no interpreter start): (exit code, out, err)."""
    from ecg_sweep.cli.app import main

    code = 0
    try:
        main(list(args))
    except SystemExit as e:
        code = int(e.code or 0)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_compress_unreachable_server_fails_fast_in_one_masked_line(capsys):
    uri = f"http://ann:s3cr@t@127.0.0.1:{_closed_port()}/"
    t0 = time.monotonic()
    code, out, err = _main(capsys, "compress", "--run-id", "0123abcd", "--tracking-uri", uri)
    assert code == 2, err
    assert time.monotonic() - t0 < 30  # MLflow's own retries took minutes
    assert err.count("\n") == 1 and "ann:***@127.0.0.1" in err
    assert "s3cr" not in err + out


def test_store_errors_mask_query_passwords_and_passwords_with_at(capsys):
    uri = "postgresql://ann:p@ss:w0rd@127.0.0.1:9/mlflow?password=qq"
    code, out, err = _main(capsys, "compare", "--tracking-uri", uri)
    assert code == 2 and err.count("\n") == 1, err
    assert "w0rd" not in err + out and "=qq" not in err + out
    assert "postgresql://ann:***@127.0.0.1:9/mlflow?password=***" in err


def test_ui_masks_the_uri_and_keeps_it_out_of_argv(monkeypatch, capsys):
    import typer

    from ecg_sweep.cli import ui_cmd

    calls = {}

    def fake_call(cmd, env):
        calls.update(cmd=cmd, env=env)
        return 0

    monkeypatch.setattr(ui_cmd.subprocess, "call", fake_call)
    uri = "postgresql://ann:s3cret@db:5432/mlflow"
    with pytest.raises(typer.Exit):
        ui_cmd.ui_cmd(uri, 5999)
    printed = "".join(capsys.readouterr())
    assert "ann:***@db:5432" in printed and "s3cret" not in printed
    assert not any("s3cret" in a for a in calls["cmd"])
    assert calls["env"]["MLFLOW_BACKEND_STORE_URI"] == uri


def test_optimize_checks_the_stores_before_the_data(tmp_path, capsys, monkeypatch):
    """An unreachable tracking server or storage is reported before any data is read (the data
    folder here does not even exist)."""
    monkeypatch.chdir(tmp_path)
    base = ("optimize", "--model", "vit", "--data-dir", str(tmp_path / "no-data"))
    code, _, err = _main(capsys, *base, "--tracking-uri", f"http://127.0.0.1:{_closed_port()}/")
    assert code == 2 and err.count("\n") == 1, err
    assert "cannot reach the server" in err
    code, _, err = _main(
        capsys, *base,
        "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
        "--storage", "postgresql://ann:s3cret@127.0.0.1:9/optuna",
    )  # fmt: skip
    assert code == 2 and err.count("\n") == 1, err
    assert "--storage postgresql://ann:***@127.0.0.1:9/optuna: cannot open" in err
