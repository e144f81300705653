"""Pretraining: data in, a Lightning run with checkpoints and logs, an encoder file out."""

from __future__ import annotations

import itertools
import json
import logging
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch.utils.data import DataLoader, Dataset

from medssl.config import TrainingConfig, changeable_on_resume, default_config, merge
from medssl.data.datasets import ImageDataset, ImageTable, load_table, pooled
from medssl.data.preprocess import Preprocessing
from medssl.data.shards import ShardDataset, is_shard_cache
from medssl.data.skips import SkippedInputError
from medssl.evaluation.monitor import MonitorData, ValidationMonitor
from medssl.methods import get_method
from medssl.methods.base import SSLMethod
from medssl.models.checkpoint import save_encoder
from medssl.models.encoders import EncoderConfig
from medssl.models.numerics import native_bf16_isas
from medssl.report.figures import image_rows

# Lightning's advertisement and notes about its own internals tell a user nothing about their run
NOISE = ("💡 Tip:", "Loading `train_dataloader` to estimate")
logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
    lambda record: not record.getMessage().startswith(NOISE)
)
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
warnings.filterwarnings("ignore", message=r"The number of training batches \(\d+\) is smaller than the logging")


@dataclass(frozen=True)
class PretrainResult:
    encoder_path: Path
    summary: dict


def pretrain(
    data: str | Path | list,
    out_dir: str | Path,
    config: dict,
    *,
    seed: int = 0,
    resume: bool = False,
    strict: bool = False,
) -> PretrainResult:
    """Trains ``config['method']`` on the unlabelled training images of ``data``: one source, or a
    list of them pooled into one set (each source's training split, resized alike).

    ``config`` is a resolved method config (see ``resolve_config``); ``config['data']`` may give
    image_size, in_channels, modality, spacing and volume_index. Under DDP every process runs
    this function; only global rank 0 writes files.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    last = out_dir / "checkpoints" / "last.ckpt"
    if resume and not last.exists():
        raise FileNotFoundError(f"--resume: no checkpoint to resume at {last}")
    if not resume and last.exists():
        raise FileExistsError(f"{out_dir} already holds a run; pass --resume to continue it or choose another --out")
    if resume:
        _check_same_run(out_dir / "config.yaml", config)
    L.seed_everything(seed, workers=True, verbose=False)
    method_cls = get_method(config["method"])
    train = TrainingConfig(**config["training"])
    throughput, nonfinite = Throughput(), NonFiniteSteps()
    monitor = (
        ValidationMonitor(train.monitor_every, train.monitor_patience, train.monitor_score)
        if train.monitor_every
        else None
    )
    precision = resolve_precision(train.precision, train.accelerator)
    progress = ("bar" if sys.stderr.isatty() else "lines") if train.progress == "auto" else train.progress
    trainer = L.Trainer(
        default_root_dir=out_dir,
        max_epochs=train.max_epochs,
        max_steps=train.max_steps or -1,
        max_time={"minutes": train.max_minutes} if train.max_minutes else None,
        precision=precision.value,
        gradient_clip_val=train.gradient_clip,
        accelerator=train.accelerator,
        devices=train.devices,
        num_nodes=train.num_nodes,
        strategy=train.strategy,
        sync_batchnorm=train.sync_batchnorm,  # BatchNorm over the global batch, not each GPU's share
        accumulate_grad_batches=train.accumulate_grad_batches,
        callbacks=[
            ModelCheckpoint(
                dirpath=out_dir / "checkpoints",
                every_n_train_steps=train.checkpoint_every,
                save_last=True,
                save_top_k=1,
            ),
            throughput,
            nonfinite,
            EpochSeeding(),
            *([EpochLines()] if progress == "lines" else []),
            *([monitor] if monitor else []),
        ],
        # every logged step reaches the disk: a killed run keeps its log up to the kill
        logger=[
            CSVLogger(out_dir, name="logs", version="", flush_logs_every_n_steps=train.log_every),
            TensorBoardLogger(out_dir, name="logs", version=""),
        ],
        log_every_n_steps=train.log_every,
        enable_model_summary=False,
        enable_progress_bar=progress == "bar",
    )
    sources = [str(source) for source in (data if isinstance(data, list | tuple) else [data])]
    training_data = _training_data(sources, out_dir, config, method_cls, strict, trainer, seed, train)
    if monitor:
        monitor.attach(training_data.monitor, data)
    image_size = training_data.image_size
    encoder = {**config["encoder"], "spatial_dims": len(image_size), "in_channels": training_data.in_channels}
    if EncoderConfig(**config["encoder"]).is_vit:  # its positional embedding is fixed to the data's size
        encoder["image_size"] = image_size
    encoder_config = EncoderConfig(**encoder)
    encoder_config.validate()  # errors about the input size come before any training
    method_cls.check_input(image_size, encoder_config, **config.get("method_args", {}))
    if method_cls.temporal:
        method_cls.check_frames(training_data.frames, **config.get("method_args", {}))
    loader = _loader(training_data, train, method_cls, trainer.world_size)
    model = method_cls(
        encoder=encoder,
        optimizer=config["optimizer"],
        views=config["views"],
        **config.get("method_args", {}),
        **training_data.method_args,
    )
    if train.compile:  # in place, so that checkpoints and encoder.pt keep their parameter names
        model.encoder.compile()
    if trainer.is_global_zero:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(
            yaml.safe_dump(
                {**config, "seed": seed, "data_source": sources if len(sources) > 1 else sources[0]}, sort_keys=False
            )
        )
    if trainer.is_global_zero:
        print(f"precision: {precision.value} ({precision.reason})", flush=True)
    trainer.fit(model, loader, ckpt_path=str(last) if resume else None)
    trainer.save_checkpoint(last, weights_only=False)  # the end of training is always a resumable point
    encoder_path = out_dir / "encoder.pt"
    summary = {
        "method": config["method"],
        "subjects": training_data.subjects,
        "skipped": training_data.skipped,
        "global_step": trainer.global_step,
        "epochs": trainer.current_epoch,
        "world_size": trainer.world_size,
        "precision": precision.value,
        "nonfinite_steps_skipped": nonfinite.skipped,
        **throughput.summary(),
        **(monitor.summary() if monitor else {}),
        "wall_s": round(time.perf_counter() - started, 1),  # this invocation's (a resumed run: since it resumed)
    }
    if trainer.is_global_zero:
        save_encoder(encoder_path, model.encoder, method=config["method"], preprocessing=training_data.preprocessing)
        _save_figures(model, training_data.examples, out_dir)
        if monitor and monitor.best_state:  # the encoder at the monitor's best check, beside the last
            model.encoder.load_state_dict(monitor.best_state)
            save_encoder(
                out_dir / "encoder_best.pt",
                model.encoder,
                method=config["method"],
                preprocessing=training_data.preprocessing,
            )
        if monitor:
            monitor.write(out_dir)
        (out_dir / "pretrain_summary.json").write_text(json.dumps(summary, indent=2))
        print(f"{training_data.skip_summary} (report: {training_data.skip_report})")
    return PretrainResult(encoder_path, summary)


@torch.no_grad()
def _save_figures(model: SSLMethod, images: torch.Tensor, out_dir: Path) -> None:
    model.eval()
    for stem, rows in model.figures(images.to(model.device)).items():
        image_rows({name: x.float().cpu().numpy() for name, x in rows.items()}, out_dir / f"{stem}.png")


def _check_same_run(saved_config: Path, config: dict) -> None:
    """Resuming with another model, data or schedule would fail deep in Lightning or silently
    change the run; only the settings ``TrainingConfig`` marks ``on_resume`` may change."""
    saved = yaml.safe_load(saved_config.read_text()) if saved_config.exists() else {}
    if saved.get("method"):  # a run saved before a setting had its own default trained at that default
        saved = merge(default_config(saved["method"]), saved)
    free = changeable_on_resume()
    differ = [
        f"{section}.{key}: run has {saved.get(section, {}).get(key)!r}, now {value!r}"
        for section in ("encoder", "views", "optimizer", "method_args", "data", "training")
        for key, value in (config.get(section) or {}).items()
        if not (section == "training" and key in free) and saved.get(section, {}).get(key) != value
    ]
    if saved.get("method") != config["method"]:
        differ.insert(0, f"method: run has {saved.get('method')!r}, now {config['method']!r}")
    if differ:
        raise ValueError(f"--resume: settings differ from the run in {saved_config.parent}: " + "; ".join(differ))


def preprocessing_from(data_config: dict) -> Preprocessing | None:
    """The preprocessing the settings ask for; None (native .npz images) when no image_size is given."""
    given = sorted(k for k in Preprocessing.settings() if data_config.get(k) is not None)
    if "image_size" not in given:
        if given:
            raise ValueError(f"{given} need an image size (--image-size) as well")
        return None
    return Preprocessing.from_settings(data_config)


@dataclass(frozen=True)
class TrainingData:
    """What pretraining needs of its data, whether held in memory or streamed from a shard cache."""

    dataset: Dataset
    image_size: tuple[int, ...]
    in_channels: int
    preprocessing: dict
    subjects: int
    skipped: int
    skip_summary: str
    skip_report: Path
    examples: torch.Tensor  # a few images for the figures saved after training
    method_args: dict = field(default_factory=dict)  # set from the data by the method's ``pair``
    monitor: MonitorData | None = None  # the labelled validation split, when the data has one
    frames: int | None = None  # frames per time series, for a temporal method


def _training_data(
    sources: list[str],
    out_dir: Path,
    config: dict,
    method_cls: type[SSLMethod],
    strict: bool,
    trainer: L.Trainer,
    seed: int,
    train: TrainingConfig,
) -> TrainingData:
    if any(is_shard_cache(source) for source in sources):
        if len(sources) > 1:
            raise ValueError(
                "a prepared shard cache streams on its own; prepare one cache from a manifest of every source"
            )
        return _streamed_data(Path(sources[0]), config["data"], method_cls, strict, trainer, seed, train)
    table, validation = _load_training_images(sources, out_dir, config["data"], write=trainer.is_global_zero)
    _check_time_axis(method_cls, table.time_axis, sources[0])
    frames = table.images.shape[1] if table.time_axis else None
    if not method_cls.temporal:
        table = table.frames()
    paired, data_args = None, {}
    if method_cls.paired_input:
        table, paired, data_args = method_cls.pair(table, config["method_args"])
    if trainer.is_global_zero:
        table.skips.write(out_dir)
    table.skips.check(strict)
    return TrainingData(
        dataset=ImageDataset(table.images, train.samples_per_subject, paired),
        image_size=tuple(table.images.shape[2 + table.time_axis :]),
        in_channels=table.in_channels,
        preprocessing=table.preprocessing,
        subjects=len(table),
        skipped=len(table.skips),
        skip_summary=table.skips.summary(),
        skip_report=out_dir / "skipped.csv",
        examples=table.frames().images[:8],
        method_args=data_args,
        monitor=validation,
        frames=frames,
    )


def _check_time_axis(method_cls: type[SSLMethod], time_axis: bool, source: str, streamed: bool = False) -> None:
    """A temporal method needs time series; a shard cache of them streams whole series only."""
    if method_cls.temporal and not time_axis:
        raise ValueError(
            f"{method_cls.name} learns from motion over time: give it time series (--time-axis on a cine or 4D source); {source} holds still images"
        )
    if streamed and time_axis and not method_cls.temporal:
        raise ValueError(
            f"{source} holds time series, which a shard cache streams whole: use a temporal method, or pretrain {method_cls.name} on the frames from a manifest"
        )


def _streamed_data(
    cache: Path,
    data_config: dict,
    method_cls: type[SSLMethod],
    strict: bool,
    trainer: L.Trainer,
    seed: int,
    train: TrainingConfig,
) -> TrainingData:
    """A shard cache from ``medssl prepare``, streamed: each process reads its share of the shards."""
    if given := sorted(k for k in Preprocessing.settings() if data_config.get(k) is not None):
        raise ValueError(
            f"{cache} is a prepared shard cache: its preprocessing is fixed in index.json; drop {given} (or prepare the cache again)"
        )
    if method_cls.paired_input:
        raise ValueError(
            f"{method_cls.name} pairs every scan with its {method_cls.paired_input} in memory; give it the manifest, not a shard cache"
        )
    if train.samples_per_subject != 1:
        raise ValueError(
            "samples_per_subject is for a few subjects held in memory; a shard cache streams every sample once per epoch"
        )
    dataset = ShardDataset(
        cache,
        shuffle_buffer=train.shuffle_buffer,
        seed=seed,
        rank=trainer.global_rank,
        world_size=trainer.world_size,
    )
    if strict and dataset.index["skipped"]:
        raise SkippedInputError(
            f"--strict: {dataset.index['skipped']} input(s) were skipped when {cache} was prepared (see {cache / 'skipped.csv'})"
        )
    examples = [image for image, _ in itertools.islice(ShardDataset(cache, shuffle_buffer=0, rank=0, world_size=1), 8)]
    index = dataset.index
    time_axis = bool(index["preprocessing"].get("time_axis"))
    _check_time_axis(method_cls, time_axis, str(cache), streamed=True)
    return TrainingData(
        dataset=dataset,
        image_size=tuple(index["image_size"]),
        in_channels=index["in_channels"],
        preprocessing=index["preprocessing"],
        subjects=len(dataset) * trainer.world_size,
        skipped=index["skipped"],
        skip_summary=f"{index['skipped']} input(s) skipped when the cache was prepared",
        skip_report=cache / "skipped.csv",
        examples=torch.cat(examples) if time_axis else torch.stack(examples),
        frames=len(examples[0]) if time_axis else None,
    )


def _load_training_images(
    sources: list, out_dir: Path, data_config: dict, write: bool
) -> tuple[ImageTable, MonitorData | None]:
    """The training split of every source, pooled, and the first source's labelled validation
    split (for a monitor) when it has one: the first source is the one the encoder is for."""
    preprocessing = preprocessing_from(data_config)
    work_dir = out_dir if write and len(sources) == 1 else None  # a scanned folder's manifest, for the record
    tables = [load_table(source, preprocessing, work_dir=work_dir) for source in sources]
    validation, first = None, tables[0]
    if first.labels is not None and (first.splits == "val").any():
        val = first.split("val")
        val = val.select(val.labels >= 0)
        validation = MonitorData(val.images, val.labels) if len(val) else None
    # never pretrain on a validation or test image
    train = [table.split("train") if (table.splits == "train").any() else table for table in tables]
    return (train[0] if len(train) == 1 else pooled(train, [Path(s).stem for s in sources])), validation


def _loader(data: TrainingData, train: TrainingConfig, method_cls: type[SSLMethod], world_size: int) -> DataLoader:
    repeats = train.samples_per_subject
    if train.batch_size < 1 or repeats < 1:
        raise ValueError(f"batch_size and samples_per_subject must be positive, got {train.batch_size} and {repeats}")
    streamed = isinstance(data.dataset, ShardDataset)
    per_process = len(data.dataset) if streamed else len(data.dataset) // world_size  # DDP gives each process its share
    batch_size = min(train.batch_size, per_process)
    if batch_size < method_cls.min_batch_size:
        raise ValueError(
            f"{method_cls.name} needs batches of at least {method_cls.min_batch_size} images per process; "
            f"there are {data.subjects} subject(s) for {world_size} process(es): raise samples_per_subject (--samples-per-subject 8)"
        )
    # drop_last keeps batch statistics (BatchNorm, in-batch negatives) stable; a stream shuffles itself
    return DataLoader(
        data.dataset,
        batch_size=batch_size,
        shuffle=not streamed,
        drop_last=True,
        num_workers=train.num_workers,
    )


class EpochLines(Callback):
    """One plain line per epoch, for logs that are files (SLURM), where a progress bar is noise."""

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            loss = trainer.callback_metrics.get("train/loss_epoch")
            text = "" if loss is None else f", loss {float(loss):.4f}"
            print(
                f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: step {trainer.global_step}{text}", flush=True
            )


class EpochSeeding(Callback):
    """A streamed dataset's shard order and shuffle buffer follow the epoch (Lightning reseeds
    samplers only), so that each epoch differs and a resumed run sees the same order again."""

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        dataset = trainer.train_dataloader.dataset
        if isinstance(dataset, ShardDataset):
            dataset.set_epoch(trainer.current_epoch)


@dataclass(frozen=True)
class PrecisionChoice:
    value: str  # as Lightning's Trainer takes it
    reason: str  # for the run's log


def resolve_precision(requested: str, accelerator: str = "auto") -> PrecisionChoice:
    """``auto``: bf16 autocast where the hardware computes bf16 (a CUDA GPU that supports it, a CPU
    with avx512_bf16 or AMX), float32 elsewhere, where bf16 would only be emulated. Any other value
    is used as given."""
    if requested != "auto":
        return PrecisionChoice(requested, "as requested")
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        if torch.cuda.is_bf16_supported():
            return PrecisionChoice("bf16-mixed", f"auto: {torch.cuda.get_device_name()} computes bf16")
        return PrecisionChoice("32", f"auto: {torch.cuda.get_device_name()} has no bf16")
    if native := native_bf16_isas():
        return PrecisionChoice(
            "bf16-mixed",
            f"auto: this CPU computes bf16 ({', '.join(native)}); convolutions over maps with a side below 3 run in float32, see medssl.models.numerics",
        )
    return PrecisionChoice("32", "auto: this CPU has neither AMX nor avx512_bf16, so bf16 would only be emulated")


class NonFiniteSteps(Callback):
    """A step whose loss or gradients are not finite changes nothing: its update is skipped and the
    buffers its forward pass touched (BatchNorm statistics, feature queues) are restored, as
    mixed-precision trainers skip a step whose gradients overflow. The count is checkpointed and
    reported; ``patience`` such steps in a row stop the run, for then the cause is not a rare batch
    but the model, its learning rate or its precision."""

    def __init__(self, patience: int = 20) -> None:
        self.patience = patience
        self.skipped = 0
        self.in_a_row = 0
        self._buffers: dict[str, torch.Tensor] = {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if batch_idx % trainer.accumulate_grad_batches == 0:  # the state before this optimiser step's first micro-batch
            self._buffers = {name: b.detach().clone() for name, b in module.named_buffers()}

    def on_before_optimizer_step(self, trainer, module, optimizer) -> None:
        # gradients are already averaged over the processes, so every one takes the same decision
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        if not grads or torch.stack([torch.isfinite(g).all() for g in grads]).all():
            self.in_a_row = 0
            return
        broken = [
            name for name, p in module.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()
        ]
        optimizer.zero_grad(set_to_none=True)  # the optimiser skips parameters without a gradient
        with torch.no_grad():
            for name, buffer in module.named_buffers():
                buffer.copy_(self._buffers[name])
        module.discard_step()
        self.skipped += 1
        self.in_a_row += 1
        if trainer.is_global_zero:
            print(
                f"step {trainer.global_step}: non-finite gradients in {len(broken)} tensor(s) ({', '.join(broken[:3])}{', ...' if len(broken) > 3 else ''}); "
                f"update skipped ({self.skipped} so far, {self.in_a_row} in a row)",
                flush=True,
            )
        module.log(
            "train/nonfinite_steps_skipped",
            float(self.skipped),
            on_step=True,
            on_epoch=False,
            sync_dist=False,
            rank_zero_only=True,
        )
        if self.in_a_row >= self.patience:
            raise FloatingPointError(
                f"{module.name}: {self.in_a_row} steps in a row had non-finite gradients (up to step {trainer.global_step}); lower the learning rate "
                "(--lr), clip gradients (--gradient-clip 1.0), use --precision 32, or resume from an earlier checkpoint"
            )

    def state_dict(self) -> dict:
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict) -> None:
        self.skipped = state_dict["skipped"]


class Throughput(Callback):
    """Training images per second from one batch start to the next, so data loading and the
    framework's own work count; the first steps of a fit (one-off costs) are left out."""

    def __init__(self) -> None:
        self.images, self.seconds, self.steps = 0, 0.0, 0
        self._last: tuple[float, int] | None = None

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        now = time.perf_counter()
        self.steps += 1  # counted from this fit's start, so a resumed run also skips its warm-up
        if self._last is not None and self.steps > 3:
            self.seconds += now - self._last[0]
            self.images += self._last[1]
        self._last = (now, len(batch[0]) * trainer.world_size)

    def on_train_epoch_end(self, trainer, module) -> None:
        self._last = None  # the gap to the next epoch's first batch is not a training step

    def summary(self) -> dict:
        rate = self.images / self.seconds if self.seconds else None
        return {"train_images_per_s": rate, "timed_images": self.images, "timed_seconds": round(self.seconds, 2)}
