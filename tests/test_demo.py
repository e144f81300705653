"""The main job as users run it: the default `medssl demo` (the command `make demo` runs) end to
end through the CLI, so that CI on any machine fails where the main job fails there; then resume,
and the report in a real browser."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from medssl.demo import DemoConfig, run_demo
from medssl.report.browser import chromium_path, render

SECTIONS = (
    "data",
    "training",
    "probes",
    "maps",
    "subgroups",
    "normative",
    "attribution",
    "traits",
    "genetics",
    "skips",
    "config",
)
MEDSSL = Path(sys.executable).with_name("medssl")  # the installed command, as `make demo` calls it


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    done = subprocess.run([str(MEDSSL), "demo", "--out", str(out)], capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, f"medssl demo failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    assert "report -> " in done.stdout
    return out, out / "report.html"


def test_every_stage_lands_in_one_folder(demo_run):
    out, report = demo_run
    payload = json.loads((out / "report.json").read_text())
    assert set(payload["durations_s"]) == {
        "simulate",
        "pretrain_xray",
        "pretrain_mri",
        "evaluate_xray",
        "evaluate_mri",
        "phenotypes",
        "genetics",
    }
    assert set(payload["phenotypes"]["trait_r2"]) == {
        "xray/pretrained",
        "xray/random_init",
        "mri/pretrained",
        "mri/random_init",
    }
    for modality in ("xray", "mri"):
        found = payload["phenotypes"][modality]
        assert found["atlas"]["subjects"] == DemoConfig().subjects and set(found["subgroups"]["methods"]) == {
            "kmeans",
            "gmm",
            "hdbscan",
        }
        assert (
            "any" in found["normative"]["auroc"] and (out / "phenotypes" / modality / "atlas" / "atlas.html").exists()
        )
        summary = json.loads((out / f"pretrain_{modality}" / "pretrain_summary.json").read_text())
        assert summary["nonfinite_steps_skipped"] == 0, (
            f"{modality}: bf16 training skipped non-finite steps on this CPU"
        )
    genetics = payload["genetics"]
    assert genetics["available"] and {"traits/heart_size", "xray/PC01", "mri/PC05"} <= set(genetics["results"])
    assert all(0 < r["lambda_gc"] < 5 for r in genetics["results"].values())
    html = report.read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in html
    assert html.count("data:image/png;base64,") >= 15
    # offline: nothing fetched from the web (a figure's base64 text holds 'http' by chance, 1 run in ~10)
    assert "http" not in re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html.split("<body>")[1])


def test_rerun_resumes_finished_stages(demo_run, capsys):
    out, _ = demo_run
    before = json.loads((out / "report.json").read_text())["durations_s"]
    run_demo(out, DemoConfig())
    printed = capsys.readouterr().out
    assert printed.count("done earlier") == len(before)
    assert json.loads((out / "report.json").read_text())["durations_s"] == before


def test_report_renders_in_headless_chromium(demo_run):
    if chromium_path() is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); make test installs it")
    pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
    out, report = demo_run
    result = render(report, out / "report.png", SECTIONS)
    assert not result["errors"], result["errors"]
    assert all(result["visible"].values()), result["visible"]
    assert result["images_ok"], "an embedded figure failed to decode"
    assert (out / "report.png").stat().st_size > 10_000


def test_a_run_folder_refuses_other_settings(demo_run):
    out, _ = demo_run
    with pytest.raises(ValueError, match="holds a run with other settings"):
        run_demo(out, DemoConfig(subjects=81))


@pytest.mark.slow
def test_demo_with_cine_segments_the_heart_from_its_motion(tmp_path):
    """`medssl demo --with-cine` (about 30 min more than the demo on 2 cores): its motion stage and report section."""
    out = tmp_path / "demo"
    done = subprocess.run(
        [str(MEDSSL), "demo", "--out", str(out), "--with-cine"], capture_output=True, text=True, timeout=3600
    )
    assert done.returncode == 0, f"medssl demo --with-cine failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    motion = json.loads((out / "report.json").read_text())["motion"]
    no_labels = next(row for row in motion["dice"] if row["fraction"] == 0)
    assert no_labels["mean_dice"] > 0.8 and motion["ejection_fraction"]["r2"] > 0.8
    assert motion["gwas"]["recovered"], "the GWAS of the motion-derived ejection fraction found none of its SNPs"
    html = (out / "report.html").read_text()
    assert 'id="motion"' in html and "cine_ef" not in html  # figures are embedded, not linked
