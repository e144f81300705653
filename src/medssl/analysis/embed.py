"""``medssl embed``: one embedding per subject, streamed to Parquet, and its principal components.

Images are read, embedded and written one chunk at a time (a Parquet row group each), and the
PCA is fitted incrementally over the written file, so memory stays bounded whatever the cohort's
size. Every manifest column (age, sex, site, ...) travels with the embedding as metadata.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from sklearn.decomposition import IncrementalPCA
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from medssl.analysis.columns import FEATURE_PREFIX, PC_PREFIX, feature_columns, numbered_columns
from medssl.config import ViewConfig
from medssl.data.datasets import load_table
from medssl.data.manifest import Manifest, ManifestError, read_manifest, scan_folder
from medssl.data.preprocess import Preprocessing, prepared
from medssl.data.readers import UnreadableImageError
from medssl.data.skips import SkipReport
from medssl.data.tables import read_table
from medssl.evaluation.embeddings import embed, spatial_dims
from medssl.methods.views import BatchViews
from medssl.models.checkpoint import load_encoder
from medssl.models.encoders import Encoder, best_device

# test-time views: mild, label-preserving changes only
TTA_VIEWS = ViewConfig(
    crop_scale=(0.8, 1.0), aspect_jitter=0.05, brightness=0.1, contrast=0.1, noise_prob=0.0, blur_prob=0.0
)


class ManifestImages(Dataset):
    """Reads and preprocesses one manifest row per item, with what reading corrected (a regridded
    series); an unreadable file yields its reason instead of the image."""

    def __init__(self, manifest: Manifest, preprocessing: Preprocessing) -> None:
        self.rows, self.preprocessing = manifest.rows, preprocessing

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[int, np.ndarray | str, tuple[str, ...]]:
        try:
            return index, *prepared(self.rows[index], self.preprocessing)
        except UnreadableImageError as error:
            return index, error.reason, ()


def image_chunks(
    source: Path, preprocessing: Preprocessing, batch_size: int, workers: int, skips: SkipReport
) -> Iterator[tuple[list[dict], torch.Tensor]]:
    """(metadata rows, images) per chunk: an npz at once, a manifest or folder file by file in
    ``workers`` processes; unreadable files go to ``skips``."""
    if source.suffix == ".npz":
        table = load_table(source, preprocessing)
        names = np.array(table.class_names or [""])
        for start in range(0, len(table), batch_size):
            part = slice(start, start + batch_size)
            labels = names[table.labels[part]] if table.labels is not None else [""] * len(table.subject_ids[part])
            rows = [
                {"subject_id": s, "split": str(p), "label": str(lab)}
                for s, p, lab in zip(table.subject_ids[part], table.splits[part], labels)
            ]
            yield rows, table.images[part]
        return
    manifest = scan_folder(source) if source.is_dir() else read_manifest(source)
    skips.entries += manifest.skips.entries  # files the scan could not read
    loader = DataLoader(
        ManifestImages(manifest, preprocessing),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=list,
    )
    for items in loader:
        kept = [(i, x) for i, x, _ in items if not isinstance(x, str)]
        for i, x, corrections in items:
            if isinstance(x, str):
                skips.add(manifest.rows[i]["path"], x)
            elif corrections:
                skips.correct(manifest.rows[i]["path"], "; ".join(corrections))
        if kept:
            yield [_metadata(manifest.rows[i]) for i, _ in kept], torch.from_numpy(np.stack([x for _, x in kept]))


def _metadata(row: dict) -> dict:
    return {"subject_id": row["subject_id"], "split": "", "label": "", **{k: v or "" for k, v in row.items()}}


@torch.no_grad()
def embed_with_tta(encoder: Encoder, images: torch.Tensor, tta: int) -> np.ndarray:
    """The embedding of the image itself, averaged with that of ``tta`` mild random views (a time
    series: one view for all its frames)."""
    features = embed(encoder, images)
    if tta:
        dims = spatial_dims(encoder, images)
        views = BatchViews(TTA_VIEWS, dims)
        channels = images.flatten(1, -dims - 1)  # a series' frames become channels
        features = (features + sum(embed(encoder, views(channels).view_as(images).clamp(0, 1)) for _ in range(tta))) / (
            tta + 1
        )
    return features


def embed_subjects(
    encoder_path: str | Path,
    source: str | Path,
    out_dir: str | Path,
    *,
    tta: int = 0,
    n_components: int = 20,
    batch_size: int = 256,
    workers: int = 0,
    seed: int = 0,
) -> dict:
    """Writes embeddings.parquet, pcs.parquet, pca.npz, embedding.json and skipped.csv to ``out_dir``."""
    source, out_dir = Path(source), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    encoder, metadata = load_encoder(encoder_path)
    encoder.to(best_device())
    preprocessing = Preprocessing.from_settings(metadata["preprocessing"])
    if source.suffix != ".npz" and preprocessing.in_channels is None:
        preprocessing = replace(preprocessing, in_channels=1)
    skips = SkipReport()
    chunks = image_chunks(source, preprocessing, batch_size, workers, skips)
    writer, n = None, 0
    for rows, images in tqdm(chunks, desc="embedding", unit="chunk", leave=False):
        batch = _record_batch(rows, embed_with_tta(encoder, images, tta), FEATURE_PREFIX)
        writer = writer or pq.ParquetWriter(out_dir / "embeddings.parquet", batch.schema)
        writer.write_batch(batch)
        n += len(rows)
    skips.write(out_dir)
    if writer is None:
        raise ValueError(f"{source}: no readable images; {skips.summary()}")
    writer.close()
    pca = principal_components(out_dir / "embeddings.parquet", out_dir, n_components)
    summary = {
        "encoder_file": str(encoder_path),
        "method": metadata["method"],
        "source": str(source),
        "preprocessing": preprocessing.to_dict(),
        "subjects": n,
        "skipped": len(skips),
        "feature_dim": int(metadata["out_dim"]),
        "tta_views": tta,
        "explained_variance_ratio": pca.explained_variance_ratio_.round(6).tolist(),
    }
    (out_dir / "embedding.json").write_text(json.dumps(summary, indent=2))
    return summary


def _record_batch(rows: list[dict], values: np.ndarray, prefix: str) -> pa.RecordBatch:
    columns = {key: pa.array([str(row[key]) for row in rows]) for key in rows[0]}
    columns |= {name: pa.array(values[:, i]) for i, name in enumerate(numbered_columns(prefix, values.shape[1]))}
    return pa.RecordBatch.from_pydict(columns)


def principal_components(embeddings: Path, out_dir: Path, n_components: int, chunk: int = 8192) -> IncrementalPCA:
    """Fits PCA over the Parquet file a chunk at a time, then writes every subject's components."""
    file = pq.ParquetFile(embeddings)
    features = feature_columns(file.schema_arrow.names)
    n_components = min(n_components, len(features), file.metadata.num_rows)
    pca = IncrementalPCA(n_components=n_components)
    # partial_fit needs at least n_components rows per call: fit in chunks, the short tail with the last
    buffer, ready = [], None
    for batch in file.iter_batches(chunk, columns=features):
        buffer.append(_matrix(batch, features))
        if sum(len(b) for b in buffer) >= chunk:
            if ready is not None:
                pca.partial_fit(ready)
            ready, buffer = np.concatenate(buffer), []
    pca.partial_fit(np.concatenate(([] if ready is None else [ready]) + buffer))
    others = [name for name in file.schema_arrow.names if name not in features]
    writer = None
    for batch in file.iter_batches(chunk):
        components = _record_batch(batch.select(others).to_pylist(), pca.transform(_matrix(batch, features)), PC_PREFIX)
        writer = writer or pq.ParquetWriter(out_dir / "pcs.parquet", components.schema)
        writer.write_batch(components)
    writer.close()
    np.savez(
        out_dir / "pca.npz",
        mean=pca.mean_,
        components=pca.components_,
        explained_variance_ratio=pca.explained_variance_ratio_,
    )
    return pca


def _matrix(batch: pa.RecordBatch, columns: list[str]) -> np.ndarray:
    return np.column_stack([batch.column(c).to_numpy() for c in columns])


def read_embeddings(
    folder: str | Path, covariates: str | Path | None = None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(metadata columns by name, features (N, D)) from an ``embed`` folder; a covariates CSV is
    joined by subject_id, its values empty for subjects it lacks."""
    table = pq.read_table(Path(folder) / "embeddings.parquet")
    features = feature_columns(table.column_names)
    metadata = {
        name: np.array(table.column(name).to_pylist(), dtype=str) for name in table.column_names if name not in features
    }
    if covariates is not None:
        extra = read_table(covariates)
        if "subject_id" not in extra:
            raise ValueError(f"{covariates}: a covariates table needs a subject_id column; found {list(extra)}")
        row = {subject: i for i, subject in enumerate(extra["subject_id"])}
        found = np.array([row.get(s, -1) for s in metadata["subject_id"]])
        for column in [c for c in extra if c != "subject_id"]:
            metadata[column] = np.where(found >= 0, extra[column][found], "")
    return metadata, np.column_stack([table.column(c).to_numpy() for c in features])


def subject_images(
    folder: str | Path, subject_ids: Iterable[str], chunk: int = 256
) -> Iterator[tuple[str, torch.Tensor]]:
    """(subject ID, image as the encoder saw it) for the wanted subjects of an ``embed`` folder whose
    image can still be read, in the source's order; a manifest's files are read a chunk at a time,
    so that thousands of volumes never sit in memory at once."""
    summary = json.loads((Path(folder) / "embedding.json").read_text())
    source, preprocessing = Path(summary["source"]), Preprocessing.from_settings(summary["preprocessing"])
    wanted = set(subject_ids)
    if source.suffix == ".npz":
        table = load_table(source, preprocessing)
        yield from ((s, image) for s, image in zip(table.subject_ids, table.images) if s in wanted)
        return
    manifest = scan_folder(source) if source.is_dir() else read_manifest(source)
    rows = [row for row in manifest.rows if row["subject_id"] in wanted]
    with tempfile.TemporaryDirectory() as scratch:
        for start in range(0, len(rows), chunk):
            part = Manifest(rows[start : start + chunk], manifest.columns).write(Path(scratch) / "chosen.csv")
            try:
                table = load_table(part, preprocessing)
            except ManifestError:  # none of this chunk's files can be read any more
                continue
            yield from zip(table.subject_ids, table.images)
