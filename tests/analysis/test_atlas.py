from __future__ import annotations

import base64
import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import tiny_encoder_file, write_medmnist_npz
from PIL import Image

from medssl.analysis.atlas import build_atlas
from medssl.analysis.embed import embed_subjects
from medssl.report.browser import CHROMIUM_FLAGS, chromium_path


@pytest.fixture(scope="module")
def embedding_2d(tmp_path_factory) -> Path:
    """80 subjects of 16x16 images; label 1 has a bright top-left block."""
    folder = tmp_path_factory.mktemp("embed2d")
    npz = write_medmnist_npz(folder / "tiny2d.npz", (16, 16))
    embed_subjects(tiny_encoder_file(folder / "encoder.pt", (16, 16)), npz, folder / "embedding", n_components=3)
    return folder / "embedding"


def read_atlas(out: Path) -> list[dict]:
    with (out / "atlas.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def page_data(out: Path) -> dict:
    page = (out / "atlas.html").read_text()
    return json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S).group(1))


def decode(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


def assert_thumbnails_show_their_subjects(rows: list[dict], thumbnails: list[str]) -> None:
    """The bright corner block of label 1, seen in each subject's own 64 px thumbnail."""
    for row, uri in zip(rows, thumbnails):
        image = decode(uri)
        assert image.shape == (64, 64)
        assert (image[:16, :16].mean() > 150) == (row["label"] == "1"), row["subject_id"]


def test_every_subject_gets_a_point_a_figure_and_its_own_thumbnail_in_an_offline_page(tmp_path, embedding_2d):
    result = build_atlas(embedding_2d, tmp_path)  # the default method: UMAP
    rows = read_atlas(tmp_path)
    assert result["subjects"] == result["shown"] == len(rows) == 80 and not result["subsampled"]
    assert list(rows[0]) == ["subject_id", "x", "y", "label"] and len({r["subject_id"] for r in rows}) == 80
    assert np.isfinite([[float(r["x"]), float(r["y"])] for r in rows]).all()
    assert result["colour_columns"] == {"label": "categorical"} and (tmp_path / "atlas_label.png").stat().st_size > 0
    data = page_data(tmp_path)
    assert data["ids"] == [r["subject_id"] for r in rows] and result["without_thumbnail"] == 0
    assert_thumbnails_show_their_subjects(rows, data["thumbnails"])
    page = (tmp_path / "atlas.html").read_text()
    assert "http" not in page and page.count("<circle") == 80  # nothing to fetch: it opens offline


def test_a_3d_volume_shows_its_three_mid_slices(tmp_path, npz_3d):
    embed_subjects(
        tiny_encoder_file(tmp_path / "encoder.pt", (16, 16, 16)), npz_3d, tmp_path / "embedding", n_components=3
    )
    result = build_atlas(tmp_path / "embedding", tmp_path / "atlas", method="pca")
    height, width = decode(page_data(tmp_path / "atlas")["thumbnails"][0]).shape
    assert result["without_thumbnail"] == 0 and height == 64 and width > 2.5 * height


def test_an_unknown_colour_column_names_the_available_ones(tmp_path, embedding_2d):
    with pytest.raises(ValueError, match="no column \\['age'\\] to colour by; available: split, label"):
        build_atlas(embedding_2d, tmp_path, method="pca", color_by=("label", "age"))
    assert not (tmp_path / "atlas.html").exists()


def test_covariates_are_joined_and_a_number_column_colours_continuously(tmp_path, embedding_2d):
    ids = pq.read_table(embedding_2d / "embeddings.parquet", columns=["subject_id"]).column(0).to_pylist()
    listed = {
        s: {"age": str(30 + i % 40), "site": "AB"[i % 2]} for i, s in enumerate(ids[5:])
    }  # the first 5 are missing
    with (tmp_path / "covariates.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(
            [["subject_id", "age", "site"], *([s, c["age"], c["site"]] for s, c in listed.items())]
        )
    result = build_atlas(
        embedding_2d,
        tmp_path / "atlas",
        method="pca",
        color_by=("label", "age", "site"),
        covariates=tmp_path / "covariates.csv",
    )
    assert result["missing_covariates"] == 5
    assert result["colour_columns"] == {
        "label": "categorical",
        "age": "continuous",
        "site": "categorical",
    }  # labels 0/1 are codes
    for row in read_atlas(tmp_path / "atlas"):
        assert (row["age"], row["site"]) == tuple(listed.get(row["subject_id"], {"age": "", "site": ""}).values())
    assert all((tmp_path / "atlas" / f"atlas_{c}.png").exists() for c in ("label", "age", "site"))
    legends = {c: v["legend"] for c, v in page_data(tmp_path / "atlas")["columns"].items()}
    assert "missing (5)" in legends["age"] and "(missing) (5)" in legends["site"]
    assert "5 of all 80 subjects are not in covariates.csv" in (tmp_path / "atlas" / "atlas.html").read_text()


def test_past_max_points_a_seeded_sample_is_mapped_and_the_page_says_so(tmp_path, embedding_2d):
    result = build_atlas(embedding_2d, tmp_path / "a", method="pca", max_points=30, seed=3)
    rows = read_atlas(tmp_path / "a")
    assert result["subjects"] == 80 and result["shown"] == len(rows) == 30 and result["subsampled"]
    assert len({r["subject_id"] for r in rows}) == 30
    assert_thumbnails_show_their_subjects(rows, page_data(tmp_path / "a")["thumbnails"])
    assert "a random sample (seed 3) of all 80" in (tmp_path / "a" / "atlas.html").read_text()
    build_atlas(embedding_2d, tmp_path / "b", method="pca", max_points=30, seed=3)
    assert read_atlas(tmp_path / "b") == rows


def test_a_manifest_source_gets_thumbnails_and_survives_a_file_that_is_gone(tmp_path):
    rows = []
    for i in range(14):
        image = np.random.default_rng(i).integers(0, 100, (20, 20), dtype=np.uint8)
        path = tmp_path / f"img{i}.png"
        Image.fromarray(image).save(path)
        rows.append([f"sub-{i:02d}", str(path), str(40 + i)])
    with (tmp_path / "cohort.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["subject_id", "path", "age"], *rows])
    embed_subjects(
        tiny_encoder_file(tmp_path / "encoder.pt", (16, 16)),
        tmp_path / "cohort.csv",
        tmp_path / "embedding",
        n_components=2,
    )
    (tmp_path / "img3.png").unlink()
    result = build_atlas(tmp_path / "embedding", tmp_path / "atlas", method="pca", color_by=("age",))
    assert result["colour_columns"] == {"age": "continuous"} and result["without_thumbnail"] == 1
    data = page_data(tmp_path / "atlas")
    assert [s for s, t in zip(data["ids"], data["thumbnails"]) if not t] == ["sub-03"]
    assert data["columns"]["age"]["values"] == [str(40 + i) for i in range(14)]


def test_hovering_a_point_shows_its_subject_and_image_in_chromium(tmp_path, embedding_2d):
    if chromium_path() is None:
        pytest.skip("chromium not found; on Debian: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    build_atlas(embedding_2d, tmp_path, method="pca", color_by=("label", "split"))
    last = read_atlas(tmp_path)[-1]  # drawn last, so on top of any point it overlaps
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        page = browser.new_page()
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto((tmp_path / "atlas.html").as_uri())
        page.hover("#map circle:last-of-type")
        page.wait_for_function("document.querySelector('#tip img').naturalWidth > 0", timeout=5000)
        tooltip = page.inner_text("#tip")
        page.select_option("#column", "split")
        legend = page.inner_text("#legend")
        browser.close()
    assert last["subject_id"] in tooltip and f"label: {last['label']}" in tooltip
    assert "train (40)" in legend and not errors
