"""Every setting has one home: code defaults, method YAMLs of differences only, overrides on top."""

import json
from importlib import resources

import pytest
import yaml

from medssl.cli import main
from medssl.config import (
    VIEW_PRESETS,
    TrainingConfig,
    expand_views,
    method_defaults,
    parse_assignments,
    resolve_config,
    section_defaults,
)
from medssl.methods import METHODS, get_method
from medssl.training import _check_same_run


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_method_yaml_holds_only_what_differs_from_the_code(method):
    shipped = yaml.safe_load(resources.files("medssl.configs").joinpath(f"{method}.yaml").read_text())
    assert shipped.pop("method") == method
    for section, values in shipped.items():
        if section == "views":
            base = {
                **section_defaults("views"),
                **expand_views(values if isinstance(values, str) else values.get("preset")),
            }
            values = {} if isinstance(values, str) else {k: v for k, v in values.items() if k != "preset"}
        else:
            base = method_defaults(get_method(method)) if section == "method_args" else section_defaults(section)
        repeated = {k: v for k, v in values.items() if base[k] == v}
        assert not repeated, f"{method}.yaml repeats the defaults of {section}: {repeated}"


def test_a_resolved_config_holds_every_setting():
    config = resolve_config("simclr")
    assert set(config["training"]) == set(TrainingConfig.__dataclass_fields__)
    assert config["method_args"] == {"temperature": 0.2, "hidden_dim": 512, "projection_dim": 128}
    assert config["optimizer"]["lr"] == 2e-3  # simclr.yaml's difference over the code's 1e-3
    assert config["views"]["crop_scale"] == [0.3, 1.0]


def test_views_name_a_preset_or_change_one():
    assert resolve_config("simclr", {"views": "geometric"})["views"]["brightness"] == 0.0
    changed = resolve_config("simclr", {"views": {"preset": "geometric", "crop_scale": [0.5, 1.0]}})["views"]
    assert (changed["brightness"], changed["crop_scale"], changed["flip_prob"]) == (0.0, [0.5, 1.0], 0.5)
    assert resolve_config("jigsaw")["views"]["flip_prob"] == VIEW_PRESETS["layout_kept"]["flip_prob"] == 0.0
    with pytest.raises(ValueError, match="unknown view preset 'gometric'; choose one of"):
        resolve_config("simclr", {"views": "gometric"})


def test_assignments_reach_any_setting_and_bad_ones_are_explained():
    assert parse_assignments(["training.batch_size=128", "views=geometric", "views.crop_scale=[0.5, 1]"]) == {
        "training": {"batch_size": 128},
        "views": {**VIEW_PRESETS["geometric"], "crop_scale": [0.5, 1]},
    }
    with pytest.raises(ValueError, match="write SECTION.KEY=VALUE"):
        parse_assignments(["training.batch_size"])
    with pytest.raises(ValueError, match="unknown config section 'trainig'"):
        resolve_config("simclr", parse_assignments(["trainig.batch_size=2"]))


def test_print_config_shows_the_overrides_in_order(capsys):
    argv = ["pretrain", "--method", "diffusion", "--set", "training.batch_size=64", "--epochs", "3", "--print-config"]
    assert main(argv) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert (config["training"]["batch_size"], config["training"]["max_epochs"]) == (64, 3)
    assert config["optimizer"]["lr"] == 5e-4  # diffusion.yaml's own
    assert main(["pretrain", "--set", "training.max_epochs=7", "--epochs", "3", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["training"]["max_epochs"] == 3  # a flag wins over --set


def test_pretrain_without_data_says_what_is_missing(capsys):
    with pytest.raises(SystemExit):
        main(["pretrain", "--method", "simclr"])
    assert "--data and --out are required (unless --print-config)" in capsys.readouterr().err


def test_help_shows_the_code_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    assert "images per step and process (default: 256)" in " ".join(capsys.readouterr().out.split())


def test_a_run_saved_before_a_setting_had_a_default_still_resumes(tmp_path):
    old = {"method": "simclr", "training": {"batch_size": 256, "max_epochs": 50}, "method_args": {"temperature": 0.2}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    _check_same_run(tmp_path / "config.yaml", resolve_config("simclr"))  # the missing keys were at their defaults
    quieter = {"training": {"progress": "none", "max_epochs": 80}}  # --quiet, and a later stop: how it runs
    _check_same_run(tmp_path / "config.yaml", resolve_config("simclr", quieter))
    with pytest.raises(ValueError, match="method_args.temperature: run has 0.2, now 0.5"):
        _check_same_run(tmp_path / "config.yaml", resolve_config("simclr", {"method_args": {"temperature": 0.5}}))


def test_report_reads_a_users_own_run_folders(tmp_path):
    from medssl.report.runs import run_report

    run, empty = tmp_path / "pretrain", tmp_path / "empty"
    run.mkdir(), empty.mkdir()
    (run / "pretrain_summary.json").write_text(json.dumps({"method": "simclr", "train_images_per_s": 612.5}))
    page = run_report([run], tmp_path / "report.html").read_text()
    assert "images/s" in page and "612.500" in page and "train_images_per_s" not in page
    with pytest.raises(ValueError, match="no summary a medssl command writes"):
        run_report([empty], tmp_path / "other.html")


def test_pretrain_takes_several_sources_as_one_pool():
    from pathlib import Path

    from medssl.cli import build_parser

    args = build_parser().parse_args(["pretrain", "--data", "a.npz", "cxr/", "--out", "run"])
    assert args.data == [Path("a.npz"), Path("cxr")]
