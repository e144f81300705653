"""The shard cache on tiny real files: PNGs, single-slice and 3D NIfTI, a corrupt file and a missing one."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from test_manifest import write_csv
from torch.utils.data import DataLoader

from medssl.data.manifest import ManifestError
from medssl.data.preprocess import Preprocessing
from medssl.data.readers import read_image
from medssl.data.shards import ShardCacheError, ShardDataset, is_shard_cache, prepare_shards

PREPROCESSING = Preprocessing(image_size=(12, 12))
SHARD_SIZE = 5
SPLIT_CYCLE = ("train", "train", "val", "test")


def write_cohort(folder: Path, with_splits: bool = True) -> Path:
    """24 rows: 20 PNGs, 2 single-slice NIfTI, then a corrupt PNG and a missing file; relative paths."""
    rng = np.random.default_rng(0)
    (folder / "img").mkdir(parents=True)
    names = []
    for i in range(20):
        Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(folder / "img" / f"{i}.png")
        names.append(f"img/{i}.png")
    for i in range(2):
        nib.save(
            nib.Nifti1Image(rng.normal(100, 30, (16, 16, 1)).astype(np.float32), np.eye(4)),
            folder / "img" / f"v{i}.nii.gz",
        )
        names.append(f"img/v{i}.nii.gz")
    (folder / "img" / "corrupt.png").write_bytes(rng.bytes(300))
    names += ["img/corrupt.png", "img/missing.png"]
    rows = []
    for i, name in enumerate(names):
        row = {"subject_id": f"S.{i:02d}", "path": name, "label": "ab"[i % 2], "age": str(40 + i)}
        rows.append(row | {"split": SPLIT_CYCLE[i % 4]} if with_splits else row)
    return write_csv(folder / "manifest.csv", rows)


def read_shard(path: Path) -> dict[int, tuple[dict, np.ndarray]]:
    """Manifest row number -> (json row, image), read with plain tarfile as any WebDataset reader could."""
    members: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tar:
        for member in tar:
            key, _, extension = member.name.partition(".")
            members.setdefault(key, {})[extension] = tar.extractfile(member).read()
    return {int(key): (json.loads(m["json"]), np.load(io.BytesIO(m["npy"]))) for key, m in members.items()}


def collect(dataset, **loader_options) -> list[int]:
    if not loader_options:
        return [index for _, index in dataset]
    return [int(i) for _, indices in DataLoader(dataset, batch_size=4, **loader_options) for i in indices]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    return write_cohort(tmp_path_factory.mktemp("cohort"))


@pytest.fixture(scope="module")
def cache(cohort, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cache")
    prepare_shards(cohort, out, PREPROCESSING, shard_size=SHARD_SIZE, workers=0, progress=False)
    return out


def readable_rows(split: str | None = None) -> list[int]:
    return [i for i in range(22) if split is None or SPLIT_CYCLE[i % 4] == split]


# --- preparing --------------------------------------------------------------------------------


def test_round_trip_keeps_images_and_rows(cohort, cache):
    index = json.loads((cache / "index.json").read_text())
    assert (index["format"], index["rows"], index["samples"], index["skipped"]) == ("medssl-shards-1", 24, 22, 2)
    assert (index["spatial_dims"], index["in_channels"], index["image_size"]) == (2, 1, [12, 12])
    assert [s["file"] for s in index["shards"]] == [f"shard-{i:06d}.tar" for i in range(5)]
    assert is_shard_cache(cache) and not is_shard_cache(cohort.parent)
    samples = {}
    for shard in index["shards"]:
        samples |= read_shard(cache / shard["file"])
    assert sorted(samples) == readable_rows()
    for number, (row, image) in samples.items():
        assert image.dtype == np.float16 and image.shape == (1, 12, 12)
        expected = PREPROCESSING(read_image(cohort.parent / row["path"]))
        np.testing.assert_allclose(image.astype(np.float32), expected, atol=1e-3)
        assert row["subject_id"] == f"S.{number:02d}" and row["index"] == number
        assert (row["label"], row["split"], row["age"]) == ("ab"[number % 2], SPLIT_CYCLE[number % 4], str(40 + number))
        assert Path(row["path"]).is_absolute()


def test_unreadable_files_are_reported_and_nothing_else_is_lost(cache):
    with (cache / "skipped.csv").open() as handle:
        skipped = {Path(r["path"]).name: r["reason"] for r in csv.DictReader(handle)}
    assert skipped == {
        "corrupt.png": "not a readable image (corrupt file or unknown encoding)",
        "missing.png": "no such file or directory",
    }
    sidecars = [json.loads((cache / f"shard-{i:06d}.json").read_text()) for i in range(5)]
    assert [s["rows"] for s in sidecars] == [[0, 5], [5, 10], [10, 15], [15, 20], [20, 24]]
    assert sum(s["samples"] for s in sidecars) + sum(len(s["skipped"]) for s in sidecars) == 24
    assert len(sidecars[4]["skipped"]) == 2


def test_rerun_redoes_only_the_missing_shard(cohort, cache, tmp_path):
    out = shutil.copytree(cache, tmp_path / "cache")
    (out / "shard-000002.tar").unlink()
    (out / "shard-000002.json").unlink()
    others = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*") if "000002" not in p.name}
    index = prepare_shards(cohort, out, PREPROCESSING, shard_size=SHARD_SIZE, workers=0, progress=False, verify=True)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*") if "000002" not in p.name} == others
    assert (out / "shard-000002.tar").read_bytes() == (cache / "shard-000002.tar").read_bytes()
    for shard in index["shards"]:
        assert hashlib.sha256((out / shard["file"]).read_bytes()).hexdigest() == shard["sha256"]


def test_verify_redoes_a_shard_whose_bytes_changed(cohort, cache, tmp_path):
    out = shutil.copytree(cache, tmp_path / "cache")
    tar = out / "shard-000001.tar"
    damaged = bytearray(tar.read_bytes())
    damaged[1000] ^= 0xFF  # same size: only the checksum can tell
    tar.write_bytes(bytes(damaged))
    prepare_shards(cohort, out, PREPROCESSING, shard_size=SHARD_SIZE, workers=0, progress=False)
    assert tar.read_bytes() == bytes(damaged)
    prepare_shards(cohort, out, PREPROCESSING, shard_size=SHARD_SIZE, workers=0, progress=False, verify=True)
    assert tar.read_bytes() == (cache / "shard-000001.tar").read_bytes()


def test_other_preprocessing_in_the_same_folder_is_refused(cohort, cache):
    with pytest.raises(ValueError, match=r"preprocessing\.image_size: \[12, 12\] -> \[10, 10\]"):
        prepare_shards(
            cohort, cache, Preprocessing(image_size=(10, 10)), shard_size=SHARD_SIZE, workers=0, progress=False
        )
    with pytest.raises(ValueError, match="shard_size: 5 -> 4"):
        prepare_shards(cohort, cache, PREPROCESSING, shard_size=4, workers=0, progress=False)


def test_bad_manifests_are_refused_naming_the_file(tmp_path):
    missing_column = write_csv(tmp_path / "no_path.csv", [{"subject_id": "A", "file": "a.png"}])
    with pytest.raises(ManifestError, match=r"no_path\.csv: missing required column\(s\) \['path'\]"):
        prepare_shards(missing_column, tmp_path / "out", PREPROCESSING, workers=0, progress=False)
    rows = [{"subject_id": s, "path": f"{i}.png"} for i, s in enumerate(["A", "B", "A", "C", "B"])]
    with pytest.raises(ManifestError, match=r"dupes\.csv: 2 repeated subject_id\(s\), e\.g\. \['A', 'B'\]"):
        prepare_shards(
            write_csv(tmp_path / "dupes.csv", rows), tmp_path / "out", PREPROCESSING, workers=0, progress=False
        )
    rows[2] = {"subject_id": "D", "path": ""}
    with pytest.raises(ManifestError, match=r"empty\.csv, line 4: empty subject_id or path"):
        prepare_shards(
            write_csv(tmp_path / "empty.csv", rows), tmp_path / "out", PREPROCESSING, workers=0, progress=False
        )
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_worker_processes_write_identical_shards(cohort, cache, tmp_path):
    index = prepare_shards(
        cohort, tmp_path / "parallel", PREPROCESSING, shard_size=SHARD_SIZE, workers=2, progress=False
    )
    assert index == json.loads((cache / "index.json").read_text())
    for shard in index["shards"]:
        assert (tmp_path / "parallel" / shard["file"]).read_bytes() == (cache / shard["file"]).read_bytes()


def test_volumes_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(3):
        nib.save(
            nib.Nifti1Image(rng.normal(size=(10, 9, 8)).astype(np.float32), np.diag([2.0, 1.0, 1.0, 1.0])),
            tmp_path / f"{i}.nii",
        )
    manifest = write_csv(tmp_path / "m.csv", [{"subject_id": f"V{i}", "path": f"{i}.nii"} for i in range(3)])
    preprocessing = Preprocessing(image_size=(6, 6, 6), modality="CT", ct_window=(-2.0, 2.0))
    index = prepare_shards(manifest, tmp_path / "out", preprocessing, shard_size=2, workers=0, progress=False)
    assert (index["samples"], index["spatial_dims"], index["image_size"]) == (3, 3, [6, 6, 6])
    streamed = {index: image for image, index in ShardDataset(tmp_path / "out", split=None)}
    assert sorted(streamed) == [0, 1, 2] and tuple(streamed[0].shape) == (1, 6, 6, 6)
    for number, (_, image) in read_shard(tmp_path / "out" / "shard-000001.tar").items():
        np.testing.assert_allclose(
            image.astype(np.float32), preprocessing(read_image(tmp_path / f"{number}.nii")), atol=1e-3
        )


# --- reading ----------------------------------------------------------------------------------


def test_every_sample_once_per_epoch(cache):
    dataset = ShardDataset(cache, shuffle_buffer=8, split=None)
    assert len(dataset) == 22
    assert sorted(collect(dataset)) == readable_rows()
    assert sorted(collect(dataset, num_workers=2)) == readable_rows()


def test_ranks_yield_equal_counts_and_share_the_samples(cache):
    ranks = [ShardDataset(cache, shuffle_buffer=8, split=None, rank=r, world_size=2) for r in (0, 1)]
    yielded = [collect(ranks[0]), collect(ranks[1], num_workers=2)]
    assert len(ranks[0]) == len(ranks[1]) == len(yielded[0]) == len(yielded[1]) == 11
    covered = set(yielded[0]) | set(yielded[1])
    assert covered <= set(readable_rows())
    assert len(covered) >= 22 - SHARD_SIZE  # equal counts drop at most part of one shard


def test_order_depends_on_seed_and_epoch_only(cache):
    def order(seed: int, epoch: int) -> list[int]:
        dataset = ShardDataset(cache, shuffle_buffer=8, seed=seed, split=None)
        dataset.set_epoch(epoch)
        return collect(dataset)

    assert order(0, 3) == order(0, 3)
    assert order(0, 3) != order(0, 4)
    assert order(0, 3) != order(1, 3)
    assert order(0, 3) != sorted(order(0, 3))


def test_split_filtering(cache, tmp_path):
    assert sorted(collect(ShardDataset(cache))) == readable_rows("train")
    assert sorted(collect(ShardDataset(cache, split="val"))) == readable_rows("val")
    image, index = next(iter(ShardDataset(cache, split="test")))
    assert image.dtype.is_floating_point and image.dtype.itemsize == 4 and tuple(image.shape) == (1, 12, 12)
    assert SPLIT_CYCLE[index % 4] == "test"
    unsplit = write_cohort(tmp_path / "unsplit", with_splits=False)
    prepare_shards(unsplit, tmp_path / "out", PREPROCESSING, shard_size=SHARD_SIZE, workers=0, progress=False)
    assert sorted(collect(ShardDataset(tmp_path / "out", split="train"))) == readable_rows()


def test_missing_or_truncated_shard_names_it(cache, tmp_path):
    out = shutil.copytree(cache, tmp_path / "cache")
    (out / "shard-000003.tar").unlink()
    with pytest.raises(ShardCacheError, match=r"shard-000003\.tar is missing; rerun `medssl prepare`"):
        collect(ShardDataset(out, split=None))
    shutil.copy(cache / "shard-000003.tar", out / "shard-000003.tar")
    with (out / "shard-000001.tar").open("r+b") as handle:
        handle.truncate(3000)
    with pytest.raises(ShardCacheError, match=r"shard-000001\.tar has 3000 bytes.*truncated.*medssl prepare"):
        collect(ShardDataset(out, split=None))
    with pytest.raises(ShardCacheError, match="no medssl-shards-1 index.json"):
        ShardDataset(tmp_path)
