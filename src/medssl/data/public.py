"""Public datasets by name: MedMNIST npz files and MedNIST, found locally or fetched once.

A name resolves to a file the loaders read (an ``.npz`` or a class-folder tree). Local copies come
first, under ``$MEDSSL_DATA`` (default: the download cache, ``~/.cache/medssl``); a MedMNIST file
that is not there is downloaded with the official ``medmnist`` package's URL and checksum when it
is installed and the network allows. Anything else that ``load_table`` reads (an npz, a manifest,
a folder) passes through unchanged, so user data and public data take the same path.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.request
from pathlib import Path

from medssl.data.skips import ManifestError

# name -> (MedMNIST flag, size suffix of the file: "" for 28 px)
MEDMNIST = {
    "pneumoniamnist": ("pneumoniamnist", ""),
    "breastmnist": ("breastmnist", ""),
    "retinamnist": ("retinamnist", ""),
    "adrenalmnist3d": ("adrenalmnist3d", ""),
    "pneumoniamnist_64": ("pneumoniamnist", "_64"),
    "breastmnist_64": ("breastmnist", "_64"),
    "retinamnist_64": ("retinamnist", "_64"),
    "adrenalmnist3d_64": ("adrenalmnist3d", "_64"),
}
MEDNIST = "mednist"
PUBLIC = sorted(MEDMNIST) + [MEDNIST]


CACHE = Path.home() / ".cache" / "medssl"  # where downloads go


def data_root() -> Path:
    """Where local copies of public datasets are looked for: ``$MEDSSL_DATA``, else the cache."""
    return Path(os.environ.get("MEDSSL_DATA") or CACHE)


def resolve_dataset(name_or_path: str | Path, cache: str | Path = CACHE) -> Path:
    """The file or folder to load for a public dataset name; a path is returned as it is."""
    name = str(name_or_path)
    if name == MEDNIST:
        return _mednist(Path(cache))
    if name in MEDMNIST:
        return _medmnist(name, Path(cache))
    path = Path(name_or_path)
    if not path.exists():
        raise ManifestError(f"{name}: neither an existing file or folder nor a public dataset ({', '.join(PUBLIC)})")
    return path


def _medmnist(name: str, cache: Path) -> Path:
    flag, suffix = MEDMNIST[name]
    filename = f"{flag}{suffix}.npz"
    for folder in (data_root() / "medmnist", cache / "medmnist"):
        if (folder / filename).is_file():
            return folder / filename
    return _download_medmnist(flag, suffix, cache / "medmnist" / filename)


def _download_medmnist(flag: str, suffix: str, target: Path) -> Path:
    try:
        from medmnist.info import INFO  # only the table of URLs and checksums; it needs no torchvision
    except ImportError:
        INFO = None
    if INFO is None or flag not in INFO:
        raise ManifestError(
            f"{target.name} is not under {data_root() / 'medmnist'} (set MEDSSL_DATA to the folder that holds medmnist/) "
            "and cannot be downloaded: `pip install medmnist --no-deps` provides its official URL"
        )
    info = INFO[flag]
    url, md5 = info["url"] if not suffix else info[f"url{suffix}"], info["MD5"] if not suffix else info[f"MD5{suffix}"]
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    try:
        urllib.request.urlretrieve(url, partial)
    except OSError as error:
        raise ManifestError(
            f"downloading {url} failed ({error}); put {target.name} under {data_root() / 'medmnist'} instead"
        ) from error
    if hashlib.md5(partial.read_bytes()).hexdigest() != md5:
        partial.unlink()
        raise ManifestError(f"{url}: the download does not match its published MD5 {md5}; try again")
    partial.rename(target)
    return target


def _mednist(cache: Path) -> Path:
    """MedNIST's class folders (``MedNIST/<class>/<id>.jpeg``), unpacked once into the cache."""
    folder = cache / "MedNIST"
    if (folder / ".complete").exists():
        return folder
    archive = data_root() / "mednist" / "MedNIST.tar.gz"
    if not archive.is_file():
        raise ManifestError(
            f"MedNIST not found at {archive}; set MEDSSL_DATA to the folder that holds mednist/MedNIST.tar.gz"
        )
    cache.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(cache, filter="data")
    (folder / ".complete").touch()  # a half-unpacked tree is unpacked again, not read
    return folder
