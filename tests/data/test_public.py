from __future__ import annotations

import pytest

from medssl.data.manifest import ManifestError
from medssl.data.public import PUBLIC, resolve_dataset


def test_a_path_passes_through_and_an_unknown_name_lists_the_public_ones(tmp_path):
    assert resolve_dataset(tmp_path) == tmp_path
    with pytest.raises(ManifestError, match="pneumoniamnist") as error:
        resolve_dataset("chestmnist_typo")
    assert all(name in str(error.value) for name in PUBLIC)


def test_a_missing_medmnist_file_names_the_folder_to_fill(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSSL_DATA", str(tmp_path / "empty"))
    monkeypatch.setitem(__import__("sys").modules, "medmnist", None)  # as where the package is not installed
    with pytest.raises(ManifestError, match=r"breastmnist\.npz is not under .*empty/medmnist"):
        resolve_dataset("breastmnist", cache=tmp_path / "cache")
    with pytest.raises(ManifestError, match="MedNIST not found"):
        resolve_dataset("mednist", cache=tmp_path / "cache")


def test_local_medmnist_files_are_found(shared_data, monkeypatch):
    monkeypatch.setenv("MEDSSL_DATA", str(shared_data))
    assert resolve_dataset("breastmnist") == shared_data / "medmnist" / "breastmnist.npz"
    assert resolve_dataset("adrenalmnist3d_64").name == "adrenalmnist3d_64.npz"
