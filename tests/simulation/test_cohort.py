from __future__ import annotations

import csv
import hashlib

import numpy as np
import pytest
from bed_reader import open_bed

from medssl.data.datasets import load_table
from medssl.data.preprocess import Preprocessing
from medssl.simulation.cohort import TRAITS, CohortConfig, simulate_cohort
from medssl.simulation.genotypes import GenotypeModel, SimulatedGenotypes


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("cohort")
    return out, simulate_cohort(out, CohortConfig(n_subjects=60, n_snps=200, xray_size=32, mri_size=16, seed=3))


def read_csv(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t" if str(path).endswith(".tsv") else ","))


def test_genotypes_round_trip_through_bed_reader(tmp_path):
    """What the streaming writer puts in .bed is what PLINK readers see, missing calls included."""
    from medssl.simulation.genotypes import BedWriter

    source = SimulatedGenotypes(37, GenotypeModel(n_snps=45, block_size=5, missing_rate=0.05), seed=1)
    writer = BedWriter(tmp_path / "g", source, np.array(["M", "F"] * 18 + ["M"]))
    chunks = []
    for _, dosage in source.chunks(10):
        writer.write(dosage)
        chunks.append(dosage)
    writer.close()
    expected = np.concatenate(chunks, axis=1)
    read = open_bed(tmp_path / "g.bed").read(dtype="float32")
    np.testing.assert_array_equal(np.isnan(read), np.isnan(expected))
    np.testing.assert_array_equal(np.nan_to_num(read, nan=-1), np.nan_to_num(expected, nan=-1))


def test_allele_frequencies_and_ld_blocks():
    source = SimulatedGenotypes(3000, GenotypeModel(n_snps=200, block_size=20, ld_rho=0.9), seed=0)
    ((_, dosage),) = source.chunks(200)
    assert np.abs(dosage.mean(0) / 2 - source.frequencies).max() < 0.04
    neighbours = np.array([np.corrcoef(dosage[:, j], dosage[:, j + 1])[0, 1] for j in range(199)])
    border = np.arange(199) % 20 == 19  # pairs that straddle two blocks
    assert neighbours[~border].mean() > 0.3 and np.abs(neighbours[border]).mean() < 0.05


def test_cohort_files_and_ground_truth(cohort):
    out, outputs = cohort
    subjects = read_csv(outputs["subjects"])
    assert len(subjects) == 60 and set(subjects[0]) >= {"subject_id", "group", "age", "sex", *TRAITS}
    assert {s["group"] for s in subjects} <= {"healthy", "nodules", "fibrosis", "neuro"}
    bed = open_bed(outputs["genotypes"])
    assert bed.shape == (60, 200) and list(bed.iid) == [s["subject_id"] for s in subjects]
    causal = read_csv(outputs["causal_snps"])
    assert len(causal) == 5 * len(TRAITS) and set(bed.sid) >= {c["snp"] for c in causal}
    boxes = read_csv(outputs["lesion_boxes"])
    nodule_subjects = {s["subject_id"] for s in subjects if s["group"] == "nodules"}
    assert {b["subject_id"] for b in boxes} == nodule_subjects
    xray = load_table(outputs["xray_manifest"], Preprocessing(image_size=(32, 32)))
    mri = load_table(outputs["mri_manifest"], Preprocessing(image_size=(16, 16, 16)))
    assert len(xray) == len(mri) == 60 and not len(xray.skips) and not len(mri.skips)
    assert xray.subject_ids == [s["subject_id"] for s in subjects]


def test_traits_are_heritable_at_the_chosen_level(tmp_path):
    outputs = simulate_cohort(
        tmp_path,
        CohortConfig(
            n_subjects=1500, n_snps=300, heritability=0.8, causal_share=1.0, modalities=("xray",), xray_size=16
        ),
    )
    subjects = read_csv(outputs["subjects"])
    genotypes = open_bed(outputs["genotypes"]).read(dtype="float32")
    for trait in TRAITS:
        snps = [
            int(c["snp"].removeprefix("sim_rs")) - 1 for c in read_csv(outputs["causal_snps"]) if c["trait"] == trait
        ]
        x = np.column_stack([genotypes[:, snps], np.ones(len(subjects))])
        y = np.array([float(s[trait]) for s in subjects])
        fitted = x @ np.linalg.lstsq(x, y, rcond=None)[0]
        assert 0.7 < 1 - ((y - fitted) ** 2).sum() / ((y - y.mean()) ** 2).sum() < 0.9  # R² of the causal SNPs ≈ h²


def test_same_seed_same_cohort(tmp_path, cohort):
    out, outputs = cohort
    again = simulate_cohort(tmp_path, CohortConfig(n_subjects=60, n_snps=200, xray_size=32, mri_size=16, seed=3))
    for key in ("genotypes", "subjects", "causal_snps", "lesion_boxes"):
        assert (
            hashlib.sha256(open(outputs[key], "rb").read()).digest()
            == hashlib.sha256(open(again[key], "rb").read()).digest()
        ), key


def test_dicom_radiographs_read_back(tmp_path):
    outputs = simulate_cohort(
        tmp_path, CohortConfig(n_subjects=10, n_snps=40, modalities=("xray",), xray_size=32, xray_format="dicom")
    )
    table = load_table(outputs["xray_manifest"], Preprocessing(image_size=(32, 32)))
    assert len(table) == 10 and not len(table.skips)


def test_real_plink_genotypes_can_drive_the_cohort(tmp_path, shared_data):
    bed = shared_data / "genotypes" / "snprelate_hapmap60" / "plinkhapmap.bed"
    outputs = simulate_cohort(tmp_path, CohortConfig(genotypes=str(bed), modalities=("xray",), xray_size=16))
    assert open_bed(outputs["genotypes"]).shape == open_bed(bed).shape == (60, 5000)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"n_subjects": 5}, "at least 10"),
        ({"heritability": 1.5}, r"heritability must be in \[0, 1\]"),
        ({"modalities": ("ct",)}, "unknown modality"),
        ({"n_disease_groups": 1}, "n_disease_groups must be 2 to 4"),
    ],
)
def test_nonsense_parameters_are_clear_errors(tmp_path, bad, message):
    with pytest.raises(ValueError, match=message):
        simulate_cohort(tmp_path, CohortConfig(**bad))


@pytest.fixture(scope="module")
def cine_cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("cine")
    config = CohortConfig(
        n_subjects=60, n_snps=200, modalities=("cine",), cine_size=32, cine_phases=12, n_disease_groups=4, seed=3
    )
    return out, simulate_cohort(out, config)


def test_cine_is_a_beating_heart_read_as_a_time_series(cine_cohort):
    from medssl.data.sequences import read_sequence

    out, outputs = cine_cohort
    row = read_csv(outputs["cine_manifest"])[0]
    measures = {m["subject_id"]: m for m in read_csv(outputs["cine_measures"])}
    series, masks = read_sequence(out / row["path"]), read_sequence(out / row["mask"])
    assert series.frames.shape == masks.frames.shape == (12, 1, 32, 32, 1)  # one short-axis slice over time
    step = float(measures[row["subject_id"]]["cycle_ms"]) / 12
    assert series.times == pytest.approx([k * step for k in range(12)], abs=0.01)
    blood = (masks.frames == 1).sum(axis=(1, 2, 3, 4))
    assert blood.argmax() == 0 and 3 <= blood.argmin() <= 5  # end-diastole first, end-systole ~35% in
    assert 100 * (1 - blood.min() / blood[0]) == pytest.approx(
        float(measures[row["subject_id"]]["lv_ef_percent"]), abs=1e-3
    )
    inside = series.frames[masks.frames == 1].mean()
    assert inside > series.frames[masks.frames == 2].mean() + 50  # bright blood, dark myocardium


def test_cine_traits_drive_the_measured_beat_and_leave_other_traits_alone(cine_cohort, tmp_path):
    out, outputs = cine_cohort
    subjects = read_csv(outputs["subjects"])
    measures = {m["subject_id"]: m for m in read_csv(outputs["cine_measures"])}
    healthy = [s for s in subjects if s["group"] != "cardiomegaly"]
    ef = np.array([float(measures[s["subject_id"]]["lv_ef_percent"]) for s in healthy])
    assert np.corrcoef([float(s["lv_ef"]) for s in healthy], ef)[0, 1] > 0.8
    edv = np.array([float(measures[s["subject_id"]]["lv_ed_area_mm2"]) for s in healthy])
    assert np.corrcoef([float(s["lv_edv"]) for s in healthy], edv)[0, 1] > 0.6
    dilated = [float(measures[s["subject_id"]]["lv_ef_percent"]) for s in subjects if s["group"] == "cardiomegaly"]
    assert dilated and max(dilated) < ef.mean() - 15  # reduced ejection fraction
    assert {t["trait"] for t in read_csv(outputs["causal_snps"])} == {*TRAITS, "lv_edv", "lv_ef", "lv_wall"}
    without = simulate_cohort(
        tmp_path, CohortConfig(n_subjects=60, n_snps=200, modalities=("mri",), mri_size=16, n_disease_groups=4, seed=3)
    )
    for name in ("subjects", "causal_snps"):
        kept = [
            {k: v for k, v in row.items() if k not in ("lv_edv", "lv_ef", "lv_wall")} for row in read_csv(outputs[name])
        ]
        assert [r for r in kept if r.get("trait") in (None, *TRAITS)] == read_csv(without[name])


def test_cine_cohort_loads_as_a_table_of_series(cine_cohort):
    out, outputs = cine_cohort
    table = load_table(outputs["cine_manifest"], Preprocessing(image_size=(32, 32), time_axis=True))
    assert table.images.shape == (60, 12, 1, 32, 32) and table.time_axis and not table.skips.entries
