"""``ecg-sweep compare``: the leaderboard across studies, its report files, the int8 column."""

from __future__ import annotations

import json
import re
import shutil

import pytest

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
    assert "worst subgroup AUROC" in r.stdout and "worst_subgroup" in rows[0]


def test_worst_subgroup_names_the_group_of_the_minimum():
    from ecg_sweep.compare import LeaderboardRow, cells, worst_subgroup

    m = {
        "test_macro_auc_sex_male": 0.91, "test_macro_auc_sex_female": 0.88,
        "test_macro_auc_age_lt40": 0.70,  # too few records: not the minimum
        "test_macro_auc_age_60_79": 0.84, "test_subgroup_min_macro_auc": 0.84,
    }  # fmt: skip
    assert worst_subgroup(m) == ("age_60_79", 0.84)
    assert worst_subgroup({"test_subgroup_min_macro_auc": float("nan")})[0] == "-"
    assert worst_subgroup({})[0] == "-"
    nan = float("nan")
    text = {"experiment": "ecg-vit", "model": "vit", "study": "s", "int8_method": "-"}
    text |= {"study_run_id": "r", "worst_subgroup": "age_60_79"}
    floats = {f: nan for f in LeaderboardRow.__dataclass_fields__ if f not in text}
    row = LeaderboardRow(**{**floats, **text, "worst_subgroup_macro_auc": 0.84})
    assert "0.8400 (age_60_79)" in cells(row)


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


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.chromium
@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium)")
def test_html_report_is_self_contained_and_readable_in_chromium(sweep_data, tmp_path):
    """report.html opens offline as one file: escaped names, the plot embedded, nothing fetched."""
    playwright = pytest.importorskip("playwright.sync_api")
    from ecg_sweep.compression import compress_run
    from ecg_sweep.config import CompressConfig

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    out, _ = run_study(sweep_data, uri, tmp_path, "a&<b>", lr=3e-3, epochs=1)
    fast = CompressConfig(
        methods=("quant_dynamic_int8",), threads=1, latency_warmup=1, latency_rounds=2,
        latency_block=2, n_bootstrap=0,
    )  # fmt: skip
    compress_run(out.tracker, out.best_run_id, sweep_data, fast)  # a point on the plot
    run_study(sweep_data, uri, tmp_path, "b", lr=1e-9, epochs=1)
    report = tmp_path / "report.html"
    r = run_cli("compare", "--tracking-uri", uri, "--output", str(report))
    assert r.returncode == 0, r.stderr
    page_html = report.read_text()
    assert "<script" not in page_html and "<link" not in page_html
    assert not re.search(r"""(src|href)=['"]?https?:""", page_html)
    assert page_html.count("data:image/png;base64,") == 1
    assert "a&amp;&lt;b&gt;" in page_html and "a&<b>" not in page_html

    requests: list[str] = []
    shot = tmp_path / "report.png"
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.on("request", lambda req: requests.append(req.url))
        page.route(
            "**/*",
            lambda route: (
                route.continue_()
                if route.request.url.startswith(("file:", "data:"))
                else route.abort()
            ),
        )
        page.goto(report.as_uri())
        page.wait_for_load_state("load")
        width = page.evaluate("document.querySelector('figure img').naturalWidth")
        rows = page.locator("tbody tr").all_inner_texts()
        best = page.locator("tbody tr.best").inner_text()
        header = page.locator("thead").inner_text()
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert width > 500  # the embedded plot decoded
    assert len(rows) == 2 and "a&<b>" in best and "quant_dynamic_int8" in best
    assert "test AUROC [95% CI]" in header and "int8 method" in header
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 30_000


def test_html_report_escapes_names_tags_and_params(tmp_path):
    """A study named like markup (or a tag, a run id, a URL) is text in the report, never HTML."""
    from ecg_sweep.compare import LeaderboardRow, write_report

    evil = "<img src=x onerror=alert(1)>"
    row = LeaderboardRow(
        experiment=evil, model=evil, study=evil, trials=1, best_val_macro_auc=0.9,
        test_macro_auc=0.9, test_macro_auc_ci_low=0.8, test_macro_auc_ci_high=0.95,
        test_macro_f1=0.7, n_params=1e6, fp32_size_mb=4.0, fp32_latency_ms=2.0,
        int8_method=f"quant'\"{evil}", int8_size_mb=1.0, int8_latency_ms=1.0,
        int8_test_macro_auc=0.89, wall_minutes=1.0, study_run_id=evil,
    )  # fmt: skip
    (path,) = write_report([row], tmp_path / "report.html", f"http://u:pw@h/{evil}")
    page = path.read_text()
    assert "<img src=x" not in page and "onerror=alert(1)>" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert page.count("<img ") == 1  # the embedded plot, nothing else
