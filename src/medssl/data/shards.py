"""A sharded cache of preprocessed images for cohorts too large to hold in memory, and its streaming reader.

``prepare_shards`` reads and preprocesses every image of a manifest once; ``ShardDataset`` then streams
the cache during training, one shard after another, so that memory holds a shuffle buffer, not a cohort.

On-disk format (``out_dir``):

- ``prepare.json``: the settings the cache is made with (format, preprocessing with ``volume_index``,
  the manifest's path, ``shard_size``). Written first; a rerun with other settings is refused, so that
  shards of two preprocessings are never mixed.
- ``shard-000000.tar``, ...: WebDataset-compatible POSIX (pax) tar files. Shard ``i`` holds manifest rows
  ``[i * shard_size, (i + 1) * shard_size)`` except the unreadable ones. Each sample is two members named
  by its key, the zero-padded manifest row number (WebDataset groups members by the text before the
  first dot, so subject IDs, which may contain dots, are not used as keys):
  ``<key>.json``, the manifest row (every column, ``path`` made absolute) plus ``index``, the row number;
  then ``<key>.npy``, the preprocessed image (``np.save`` format), a float16 ``(C, *spatial)`` array in
  [0, 1] (a time series: ``(T, C, *spatial)``): half the size of float32, and its 11-bit significand rounds by under 0.0005, far finer than
  the 1/255 steps of an 8-bit image. The json comes first, so that a reader can skip an image of another split unread.
  Member headers carry fixed owner and time fields, so the same inputs give byte-identical shards.
- ``shard-000000.json``: the shard's sidecar, written once its tar is complete: ``shard``, ``rows``
  ``[first, last + 1]``, ``samples``, ``splits`` (samples per split value, "" for none), ``sha256``,
  ``bytes``, ``skipped`` (``[[path, reason], ...]``) and ``corrected``. A shard with a sidecar and a tar of the recorded
  size is done; a rerun after a crash redoes only the others.
- ``index.json``: written last; ``format`` (``medssl-shards-1``), ``preprocessing``, ``shard_size``,
  ``shards`` (``file``, ``samples``, ``splits``, ``sha256``, ``bytes``), ``rows``, ``samples``,
  ``skipped``, ``spatial_dims``, ``in_channels``, ``image_size``.
- ``skipped.csv``: ``path, reason`` of every unreadable image; ``corrected.csv``: ``path,
  correction`` of every series regridded under ``geometry: resample``.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import multiprocessing
import os
import tarfile
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import IterableDataset, get_worker_info
from tqdm.auto import tqdm

from medssl.data.manifest import count_rows, key_name, manifest_rows, row_key
from medssl.data.preprocess import Preprocessing, prepared
from medssl.data.readers import UnreadableImageError
from medssl.data.skips import SkipReport

FORMAT = "medssl-shards-1"
KEY_DIGITS = 9  # row numbers up to a billion
_RERUN_HINT = "rerun `medssl prepare` with the same settings: it redoes only missing or broken shards"


class ShardCacheError(RuntimeError):
    """A cache that cannot be read as its index describes (a shard missing, truncated or changed)."""


# --- preparing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ShardJob:
    """Everything a worker process needs to write one shard."""

    number: int
    first_row: int
    rows: list[dict[str, str]]
    out_dir: Path
    preprocessing: Preprocessing


def prepare_shards(
    manifest_csv: str | Path,
    out_dir: str | Path,
    preprocessing: Preprocessing,
    *,
    shard_size: int = 1000,
    workers: int | None = None,
    progress: bool = True,
    verify: bool = False,
) -> dict:
    """Preprocesses every image of a manifest into tar shards under ``out_dir`` and returns the index.

    ``workers`` processes convert shards in parallel (default: one per CPU; 0 converts in this
    process). Rerunning after an interruption redoes only unfinished shards; ``verify`` also
    recomputes every finished shard's sha256 and redoes those that differ from their sidecar.
    """
    if shard_size < 1 or (workers is not None and workers < 0):
        raise ValueError(f"shard_size must be at least 1 and workers at least 0, got {shard_size} and {workers}")
    manifest_csv, out_dir = Path(manifest_csv).absolute(), Path(out_dir)
    if preprocessing.in_channels is None:  # as load_table does: files become single-channel
        preprocessing = replace(preprocessing, in_channels=1)
    first = next(manifest_rows(manifest_csv), {})
    n_rows = count_rows(
        manifest_csv, (row_key(row) for row in manifest_rows(manifest_csv)), key_name(first)
    )  # checks it all before any image
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "format": FORMAT,
        "preprocessing": preprocessing.to_dict(),
        "manifest": str(manifest_csv),
        "shard_size": shard_size,
    }
    settings = json.loads(json.dumps(settings))  # tuples become lists, as they read back from disk
    _claim_out_dir(out_dir, settings)
    groups = _batched(manifest_rows(manifest_csv), shard_size)
    jobs = (_ShardJob(number, number * shard_size, rows, out_dir, preprocessing) for number, rows in enumerate(groups))
    n_shards = -(-n_rows // shard_size)
    with tqdm(total=n_shards, desc="preparing shards", unit="shard", disable=not progress) as bar:
        sidecars = _run_jobs(jobs, workers, verify, bar)
    return _write_index(out_dir, settings, n_rows, [sidecars[n] for n in range(n_shards)])


def _claim_out_dir(out_dir: Path, settings: dict) -> None:
    """Writes ``prepare.json``, or checks that an earlier run's settings are the same."""
    path = out_dir / "prepare.json"
    if path.is_file():
        earlier = json.loads(path.read_text())
        differing = _differences(earlier, settings)
        if differing:
            raise ValueError(
                f"{out_dir} holds shards prepared with other settings ({'; '.join(differing)}); "
                "use another output folder, or delete this one to start over"
            )
        return
    _write_json_atomically(path, settings)


def _differences(earlier: dict, now: dict, prefix: str = "") -> list[str]:
    """'key: earlier -> now' for every setting that differs, nested dicts flattened."""
    differing = []
    for key in sorted(set(earlier) | set(now)):
        old, new = earlier.get(key), now.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            differing += _differences(old, new, f"{prefix}{key}.")
        elif old != new:
            differing.append(f"{prefix}{key}: {old!r} -> {new!r}")
    return differing


def _run_jobs(jobs: Iterable[_ShardJob], workers: int | None, verify: bool, bar: tqdm) -> dict[int, dict]:
    """Shard number -> sidecar, converting the shards not already done."""
    workers = (os.cpu_count() or 1) if workers is None else workers
    # spawn: forking a parent whose torch/OpenMP threads have run can deadlock the children;
    # one thread each: the processes already use every core
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, context, initializer=torch.set_num_threads, initargs=(1,)) if workers else None
    sidecars: dict[int, dict] = {}
    in_flight: set[Future] = set()
    with pool or nullcontext():
        for job in jobs:  # the manifest is read lazily: only the rows of shards in flight are in memory
            sidecar = _finished_sidecar(job, verify)
            if sidecar is None and pool is None:
                sidecar = _convert_shard(job)
            if sidecar is not None:
                sidecars[job.number] = sidecar
                bar.update()
                continue
            if len(in_flight) >= 2 * workers:
                in_flight = _collect(in_flight, sidecars, bar)
            in_flight.add(pool.submit(_convert_shard, job))
        while in_flight:
            in_flight = _collect(in_flight, sidecars, bar)
    return sidecars


def _collect(in_flight: set[Future], sidecars: dict[int, dict], bar: tqdm) -> set[Future]:
    """Waits for at least one shard to finish; returns those still running."""
    done, running = wait(in_flight, return_when=FIRST_COMPLETED)
    for future in done:
        sidecar = future.result()
        sidecars[sidecar["shard"]] = sidecar
        bar.update()
    return running


def _finished_sidecar(job: _ShardJob, verify: bool) -> dict | None:
    """The sidecar of a shard an earlier run finished, or None if it must be (re)done."""
    tar_path, sidecar_path = _shard_paths(job.out_dir, job.number)
    try:
        sidecar = json.loads(sidecar_path.read_text())
    except (OSError, ValueError):
        return None
    if not tar_path.is_file() or tar_path.stat().st_size != sidecar["bytes"]:
        return None
    if verify and sha256_file(tar_path) != sidecar["sha256"]:
        return None
    return sidecar


def _convert_shard(job: _ShardJob) -> dict:
    """Reads, preprocesses and writes one shard, then its sidecar; runs in a worker process."""
    tar_path, sidecar_path = _shard_paths(job.out_dir, job.number)
    partial = tar_path.with_name(tar_path.name + ".tmp")
    skipped, corrected, splits = [], [], Counter()
    with partial.open("wb") as handle:
        with tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for index, row in enumerate(job.rows, start=job.first_row):
                try:
                    image, corrections = prepared(row, job.preprocessing)
                except UnreadableImageError as error:
                    skipped.append([row["path"], error.reason])
                    continue
                if corrections:
                    corrected.append([row["path"], "; ".join(corrections)])
                key = f"{index:0{KEY_DIGITS}d}"
                _add_member(tar, f"{key}.json", json.dumps(row | {"index": index}, sort_keys=True).encode())
                _add_member(tar, f"{key}.npy", _npy_bytes(image.astype(np.float16)))
                splits[row.get("split") or ""] += 1
        handle.flush()
        os.fsync(handle.fileno())  # the rename below must never expose a tar still in the page cache
    os.replace(partial, tar_path)
    sidecar = {
        "shard": job.number,
        "rows": [job.first_row, job.first_row + len(job.rows)],
        "samples": sum(splits.values()),
        "splits": dict(sorted(splits.items())),
        "sha256": sha256_file(tar_path),
        "bytes": tar_path.stat().st_size,
        "skipped": skipped,
        "corrected": corrected,
    }
    _write_json_atomically(sidecar_path, sidecar)
    return sidecar


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)  # mtime 0, owner root: identical bytes whoever writes it, and when
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _write_index(out_dir: Path, settings: dict, n_rows: int, sidecars: list[dict]) -> dict:
    skips = SkipReport()
    for sidecar in sidecars:
        for path, reason in sidecar["skipped"]:
            skips.add(path, reason)
        for path, what in sidecar.get("corrected", []):  # caches prepared before corrections were recorded have none
            skips.correct(path, what)
    skips.write(out_dir)
    image_size = settings["preprocessing"]["image_size"]
    index = {
        "format": FORMAT,
        "preprocessing": settings["preprocessing"],
        "shard_size": settings["shard_size"],
        "shards": [
            {"file": _shard_paths(out_dir, s["shard"])[0].name}
            | {k: s[k] for k in ("samples", "splits", "sha256", "bytes")}
            for s in sidecars
        ],
        "rows": n_rows,
        "samples": sum(s["samples"] for s in sidecars),
        "skipped": len(skips),
        "spatial_dims": len(image_size),
        "in_channels": settings["preprocessing"]["in_channels"],
        "image_size": list(image_size),
    }
    _write_json_atomically(out_dir / "index.json", index)
    return index


def _batched(rows: Iterator[dict[str, str]], size: int) -> Iterator[list[dict[str, str]]]:
    while group := list(itertools.islice(rows, size)):
        yield group


# --- reading ----------------------------------------------------------------------------------


def is_shard_cache(path: str | Path) -> bool:
    """Whether ``path`` is a folder prepared by ``prepare_shards``."""
    try:
        return json.loads((Path(path) / "index.json").read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


class ShardDataset(IterableDataset):
    """Streams a shard cache as ``(image, index)``: a float32 ``(C, *spatial)`` tensor and the sample's
    manifest row number, as ``ImageDataset`` yields them, so that the training loop is unchanged.

    ``split`` keeps the samples of that split (all of them when the cache has no split values, as an
    unlabelled cohort; None keeps all). Shards go to DDP ranks (``rank``/``world_size``, by default
    from torch.distributed when it is initialised) and, within a rank, to DataLoader workers, so that
    each sample is read by one (rank, worker). DDP hangs unless every rank takes the same number of
    steps, so every rank yields exactly ``len(self)`` = samples in the split // world_size per epoch:
    a rank whose shards hold more stops early, one whose shards hold fewer starts its shards again.

    Call ``set_epoch`` before each epoch (Lightning calls it on samplers only, not on datasets): it
    reseeds the shard order and the shuffle buffer, so the same seed and epoch give the same order.
    Workers must start from this object each epoch (DataLoader's default, not ``persistent_workers``)
    and inherit torch.distributed by fork (the default on Linux), else pass ``rank`` and ``world_size``.
    Memory holds ``shuffle_buffer`` images per worker.
    """

    def __init__(
        self,
        cache_dir: str | Path,
        *,
        shuffle_buffer: int = 1000,
        seed: int = 0,
        split: str | None = "train",
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        if not is_shard_cache(self.cache_dir):
            raise ShardCacheError(f"{self.cache_dir}: no {FORMAT} index.json; prepare the cache with `medssl prepare`")
        if shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer must be 0 (no shuffling) or more, got {shuffle_buffer}")
        self.index = json.loads((self.cache_dir / "index.json").read_text())
        has_splits = any(split_name for shard in self.index["shards"] for split_name in shard["splits"])
        self.split = split if has_splits else None
        self.shuffle_buffer, self.seed, self.epoch = shuffle_buffer, seed, 0
        self._rank, self._world_size = rank, world_size
        # only shards holding samples of the split are dealt out, so that no rank gets none by chance
        self.shards = [(shard, n) for shard in self.index["shards"] if (n := self._count(shard)) > 0]

    def _count(self, shard: dict) -> int:
        return shard["samples"] if self.split is None else shard["splits"].get(self.split, 0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(n for _, n in self.shards) // self._placement()[1]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        rank, world_size = self._placement()
        worker = get_worker_info()
        worker_id, n_workers = (0, 1) if worker is None else (worker.id, worker.num_workers)
        segments = self._rank_segments(rank, world_size)[worker_id::n_workers]
        samples = (sample for shard, take in segments for sample in self._read(shard, take))
        rng = np.random.default_rng([self.seed, self.epoch, rank, worker_id])
        for image, index in _shuffled(samples, self.shuffle_buffer, rng):
            yield torch.from_numpy(image.astype(np.float32)), index

    def _placement(self) -> tuple[int, int]:
        """(rank, world_size): as given, else torch.distributed's, else a single process."""
        initialised = dist.is_available() and dist.is_initialized()
        rank = self._rank if self._rank is not None else dist.get_rank() if initialised else 0
        world_size = self._world_size if self._world_size is not None else dist.get_world_size() if initialised else 1
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        return rank, world_size

    def _rank_segments(self, rank: int, world_size: int) -> list[tuple[dict, int]]:
        """(shard, samples to take from it) in this rank's reading order for the epoch: its shards
        of the epoch's permutation, repeated if need be, until exactly len(self) samples."""
        quota = len(self)
        if quota and len(self.shards) < world_size:
            raise ShardCacheError(
                f"{self.cache_dir}: {len(self.shards)} shard(s) hold {self.split or 'any'} samples, fewer than the "
                f"{world_size} ranks; prepare the cache again with a smaller shard_size"
            )
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.shards))
        mine = [self.shards[i] for i in order[rank::world_size]]
        segments = []
        for shard, available in itertools.cycle(mine):
            if not quota:
                return segments
            take = min(available, quota)
            segments.append((shard, take))
            quota -= take
        return segments

    def _read(self, shard: dict, take: int) -> Iterator[tuple[np.ndarray, int]]:
        """The first ``take`` samples of the split in ``shard``, streamed member by member."""
        path = self.cache_dir / shard["file"]
        if not path.is_file():
            raise ShardCacheError(f"shard {path} is missing; {_RERUN_HINT}")
        if path.stat().st_size != shard["bytes"]:
            raise ShardCacheError(
                f"shard {path} has {path.stat().st_size} bytes, not the {shard['bytes']} indexed (truncated?); {_RERUN_HINT}"
            )
        found = 0
        try:
            with tarfile.open(path, "r|") as tar:  # stream mode: one member in memory at a time
                for meta, image in _samples(tar, self.split):
                    yield image, meta["index"]
                    found += 1
                    if found == take:
                        return
        except (tarfile.TarError, EOFError, ValueError) as error:
            raise ShardCacheError(f"shard {path} is unreadable ({error}); {_RERUN_HINT}") from error
        samples = f"'{self.split}' samples" if self.split else "samples"
        raise ShardCacheError(f"shard {path} holds {found} {samples}, not the {take} indexed; {_RERUN_HINT}")


def _samples(tar: tarfile.TarFile, split: str | None) -> Iterator[tuple[dict, np.ndarray]]:
    """(row, image) of each sample of ``split`` (None: all); other splits' images are passed over unread."""
    meta = None
    for member in tar:
        name, _, extension = member.name.partition(".")
        if extension == "json":
            meta = json.load(tar.extractfile(member))
            if split is not None and (meta.get("split") or "") != split:
                meta = None
        elif extension == "npy" and meta is not None and name == f"{meta['index']:0{KEY_DIGITS}d}":
            yield meta, np.load(io.BytesIO(tar.extractfile(member).read()), allow_pickle=False)
            meta = None


def _shuffled(samples: Iterable, size: int, rng: np.random.Generator) -> Iterator:
    """A shuffle buffer: each arriving sample joins the buffer and a random one of it leaves."""
    buffer = []
    for sample in samples:
        buffer.append(sample)
        if len(buffer) > size:
            chosen = rng.integers(len(buffer))
            buffer[chosen], buffer[-1] = buffer[-1], buffer[chosen]
            yield buffer.pop()
    for chosen in rng.permutation(len(buffer)):
        yield buffer[chosen]


# --- files ------------------------------------------------------------------------------------


def _shard_paths(out_dir: Path, number: int) -> tuple[Path, Path]:
    """The shard's tar and its sidecar."""
    return out_dir / f"shard-{number:06d}.tar", out_dir / f"shard-{number:06d}.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _write_json_atomically(path: Path, content: dict) -> None:
    """A reader (or a rerun after a crash) sees the old file or the new one, never half of one."""
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(content, indent=1))
    os.replace(partial, path)
