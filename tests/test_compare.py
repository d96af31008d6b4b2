"""``ecg-sweep compare``: the leaderboard across studies, its report files, the int8 column."""

from __future__ import annotations

import json

from ecg_sweep.tracking.client import Tracker
from tests.conftest import run_cli, run_study


def test_compare_report(sweep_data, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    run_study(sweep_data, uri, tmp_path, "a", lr=3e-3, epochs=1)
    run_study(sweep_data, uri, tmp_path, "b", lr=1e-9, epochs=1)
    r = run_cli(
        "compare", "--tracking-uri", uri, "--output", str(tmp_path / "report.html"), "--json"
    )
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["study"] for row in rows] == ["a", "b"]  # sorted by test macro AUROC
    assert rows[0]["test_macro_auc"] > rows[1]["test_macro_auc"]
    assert rows[0]["trials"] == 1 and rows[0]["n_params"] > 0
    html = (tmp_path / "report.html").read_text()
    assert "<table>" in html and "data:image/png;base64," in html
    r = run_cli("compare", "--tracking-uri", uri, "--output", str(tmp_path / "report.md"))
    assert r.returncode == 0 and (tmp_path / "report.png").stat().st_size > 1000
    # Piped, rich lays out 80 columns: too narrow for 14, so one column per study, nothing cut.
    assert "test AUROC [95% CI]" in r.stdout and f"{rows[0]['test_macro_auc']:.4f} [" in r.stdout
    assert "…" not in r.stdout


def test_compare_shows_the_recommended_int8_variant(tmp_path):
    """The leaderboard's int8 column is the variant compression recommended (and registered),
    not merely the fastest; without a recommendation, the fastest."""
    from ecg_sweep.compare import compression_metrics
    from ecg_sweep.tracking.contract import KIND_TAG, PARENT_TAG

    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "ecg-vit")
    trial = tracker.client.create_run(tracker.experiment_id).info.run_id
    for method, speedup in (("fp32", 1.0), ("onnx_int8", 2.0), ("prune_structured+onnx_int8", 3.0)):
        run = tracker.client.create_run(
            tracker.experiment_id,
            tags={PARENT_TAG: trial, KIND_TAG: "compression", "ecg_sweep.method": method},
        ).info.run_id
        tracker.client.log_metric(run, "speedup_bs1", speedup)
    assert compression_metrics(tracker, trial, "onnx_int8")[1:] == (
        {"speedup_bs1": 2.0},
        "onnx_int8",
    )
    fastest = ({"speedup_bs1": 3.0}, "prune_structured+onnx_int8")
    assert compression_metrics(tracker, trial, None)[1:] == fastest
    assert compression_metrics(tracker, trial, "none")[1:] == fastest
