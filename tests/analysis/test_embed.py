from __future__ import annotations

import csv

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import tiny_encoder_file
from PIL import Image
from sklearn.decomposition import PCA

from medssl.analysis.columns import feature_columns
from medssl.analysis.embed import embed_subjects, principal_components


def test_npz_subjects_get_embeddings_and_components_with_their_ids(tmp_path, npz_2d):
    encoder = tiny_encoder_file(tmp_path / "encoder.pt", (16, 16))
    summary = embed_subjects(encoder, npz_2d, tmp_path / "out", n_components=5, batch_size=16)
    table = pq.read_table(tmp_path / "out" / "embeddings.parquet")
    assert summary["subjects"] == table.num_rows == 80 and summary["skipped"] == 0
    assert table.column("subject_id").to_pylist()[:2] == ["train-00000", "train-00001"]
    assert set(table.column("label").to_pylist()) == {"0", "1"} and set(table.column("split").to_pylist()) == {
        "train",
        "val",
        "test",
    }
    features = np.column_stack([table.column(c).to_numpy() for c in feature_columns(table.column_names)])
    assert features.shape == (80, summary["feature_dim"])
    pcs = pq.read_table(tmp_path / "out" / "pcs.parquet")
    assert pcs.column_names == ["subject_id", "split", "label", "PC1", "PC2", "PC3", "PC4", "PC5"]
    ratios = summary["explained_variance_ratio"]
    assert ratios == sorted(ratios, reverse=True) and 0 < sum(ratios) <= 1
    exact = PCA(5).fit(features)
    np.testing.assert_allclose(ratios, exact.explained_variance_ratio_, atol=1e-4)
    assert abs(np.corrcoef(pcs.column("PC1").to_numpy(), exact.transform(features)[:, 0])[0, 1]) > 0.999


def test_pca_fitted_in_small_chunks_matches_the_exact_one(tmp_path, npz_2d):
    encoder = tiny_encoder_file(tmp_path / "encoder.pt", (16, 16))
    embed_subjects(encoder, npz_2d, tmp_path / "out", n_components=3, batch_size=16)
    features = pq.read_table(tmp_path / "out" / "embeddings.parquet")
    exact = PCA(3).fit(np.column_stack([features.column(c).to_numpy() for c in feature_columns(features.column_names)]))
    chunked = principal_components(tmp_path / "out" / "embeddings.parquet", tmp_path / "out", 3, chunk=7)
    np.testing.assert_allclose(chunked.explained_variance_ratio_, exact.explained_variance_ratio_, rtol=0.05)


def test_a_manifest_keeps_its_covariates_and_reports_unreadable_files(tmp_path):
    rows = []
    for i in range(12):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (20, 20), dtype=np.uint8)).save(path)
        rows.append({"subject_id": f"sub-{i:02d}", "path": str(path), "age": str(40 + i), "sex": "MF"[i % 2]})
    (tmp_path / "broken.png").write_bytes(b"not a png")
    rows.append({"subject_id": "sub-broken", "path": str(tmp_path / "broken.png"), "age": "50", "sex": "F"})
    with (tmp_path / "cohort.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["subject_id", "path", "age", "sex"])
        writer.writeheader()
        writer.writerows(rows)
    encoder = tiny_encoder_file(tmp_path / "encoder.pt", (16, 16))
    summary = embed_subjects(
        encoder, tmp_path / "cohort.csv", tmp_path / "out", n_components=2, batch_size=5, workers=1
    )
    table = pq.read_table(tmp_path / "out" / "pcs.parquet")
    assert summary["subjects"] == 12 and summary["skipped"] == 1
    assert table.column("age").to_pylist() == [str(40 + i) for i in range(12)]
    assert "sub-broken" not in table.column("subject_id").to_pylist()
    with (tmp_path / "out" / "skipped.csv").open() as handle:
        assert [row["path"] for row in csv.DictReader(handle)] == [str(tmp_path / "broken.png")]


def test_test_time_views_average_close_to_the_plain_embedding(tmp_path, npz_2d):
    encoder = tiny_encoder_file(tmp_path / "encoder.pt", (16, 16))
    read = lambda out: pq.read_table(out / "embeddings.parquet").column(3).to_numpy()  # noqa: E731  (the first feature)
    embed_subjects(encoder, npz_2d, tmp_path / "plain", n_components=2)
    summary = embed_subjects(encoder, npz_2d, tmp_path / "tta", n_components=2, tta=4)
    plain, averaged = read(tmp_path / "plain"), read(tmp_path / "tta")
    assert summary["tta_views"] == 4 and not np.allclose(plain, averaged)
    assert np.corrcoef(plain, averaged)[0, 1] > 0.4  # the same subjects, seen with crops and flips by random weights


def test_nothing_readable_is_a_clear_error(tmp_path):
    (tmp_path / "a.png").write_bytes(b"broken")
    with (tmp_path / "cohort.csv").open("w") as handle:
        handle.write(f"subject_id,path\ns1,{tmp_path / 'a.png'}\n")
    with pytest.raises(ValueError, match="no readable images"):
        embed_subjects(tiny_encoder_file(tmp_path / "encoder.pt", (16, 16)), tmp_path / "cohort.csv", tmp_path / "out")


def test_images_come_back_for_a_manifest_given_by_a_relative_path(tmp_path, monkeypatch):
    from medssl.analysis.embed import subject_images

    (tmp_path / "scans").mkdir()
    for i in range(3):
        Image.fromarray(np.full((20, 20), 40 * i, dtype=np.uint8)).save(tmp_path / "scans" / f"{i}.png")
    (tmp_path / "cohort.csv").write_text("subject_id,path\n" + "".join(f"s{i},scans/{i}.png\n" for i in range(3)))
    monkeypatch.chdir(tmp_path)  # the manifest and its paths are relative to the working folder
    embed_subjects(tiny_encoder_file(tmp_path / "encoder.pt", (16, 16)), "cohort.csv", "embed", n_components=2)
    assert [s for s, _ in subject_images("embed", ["s2", "s0"])] == ["s0", "s2"]
