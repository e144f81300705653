"""``medssl simulate``: a population cohort with known ground truth, written as real files.

Genotypes (PLINK) -> heritable traits (a few causal SNPs + a polygenic background + noise, at a
chosen heritability) -> images rendered from traits, age, sex and disease group -> manifests that
go through the same readers as real data, and the ground truth to score every later stage against.
Subjects are rendered one at a time from their own seeded generator, so memory stays bounded and
the output is the same whatever the chunking.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image as PILImage
from tqdm.auto import tqdm

from medssl.genetics import GENOME_WIDE
from medssl.genetics.settings import Clumping
from medssl.simulation.genotypes import BedWriter, GenotypeModel, GenotypeSource, PlinkGenotypes, SimulatedGenotypes
from medssl.simulation.phantoms import Subject, render_brain, render_chest, render_cine

# does a phenotype find the causal SNPs? Its genome-wide significant leads, a locus each (clumped by
# distance), not plink's suggestive p < 1e-4
GENOME_WIDE_LEADS = Clumping(p1=GENOME_WIDE, p2=GENOME_WIDE, r2=None)
TRAITS = ("heart_size", "lung_size", "ventricle_size", "brain_size")
CINE_TRAITS = ("lv_edv", "lv_ef", "lv_wall")  # end-diastolic size, ejection fraction, wall thickness
DISEASE_GROUPS = ("nodules", "fibrosis", "neuro", "cardiomegaly")
MODALITIES = ("xray", "mri", "cine")
HEAD_MM = 192.0  # field of view of the brain volumes
CINE_MM = (86.0, 8.0)  # in-plane field of view of the cardiac cine, and its slice thickness


@dataclass(frozen=True)
class CohortConfig:
    n_subjects: int = 2000
    seed: int = 0
    heritability: float = 0.5
    n_snps: int = 2000
    causal_snps_per_trait: int = 5
    causal_share: float = 0.6  # of the genetic variance; the rest is polygenic background
    n_disease_groups: int = 3
    disease_share: float = 0.45  # of subjects in a disease group, split evenly
    modalities: tuple[str, ...] = ("xray", "mri")  # "cine" adds the cardiac cine and its traits
    xray_size: int = 64
    mri_size: int = 32
    cine_size: int = 48
    cine_phases: int = 20
    xray_format: str = "png"  # or "dicom"
    genotypes: str | None = None  # a real PLINK .bed to use instead of simulated genotypes

    def validate(self) -> None:
        if self.n_subjects < 10 and self.genotypes is None:
            raise ValueError(f"n_subjects must be at least 10 (train/val/test need subjects), got {self.n_subjects}")
        if not 0 <= self.heritability <= 1:
            raise ValueError(f"heritability must be in [0, 1], got {self.heritability}")
        unknown = set(self.modalities) - set(MODALITIES)
        if unknown or not self.modalities:
            raise ValueError(f"unknown modality {sorted(unknown)}; choose from {MODALITIES}")
        if not 2 <= self.n_disease_groups <= len(DISEASE_GROUPS):
            raise ValueError(f"n_disease_groups must be 2 to {len(DISEASE_GROUPS)}, got {self.n_disease_groups}")
        if not 0 < self.disease_share < 1 or not 0 <= self.causal_share <= 1:
            raise ValueError("disease_share must be in (0, 1) and causal_share in [0, 1]")
        if self.xray_format not in ("png", "dicom"):
            raise ValueError(f"xray_format must be 'png' or 'dicom', got {self.xray_format!r}")
        if min(self.xray_size, self.mri_size, self.cine_size) < 16 or self.cine_phases < 8:
            raise ValueError("image sizes must be at least 16, and a cine needs at least 8 phases")


def simulate_cohort(out_dir: str | Path, config: CohortConfig) -> dict:
    """Writes the cohort under ``out_dir``; returns the paths of its manifests and ground truth."""
    config.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([config.seed, 0])
    source: GenotypeSource = (
        PlinkGenotypes(config.genotypes)
        if config.genotypes
        else SimulatedGenotypes(config.n_subjects, GenotypeModel(n_snps=config.n_snps), config.seed)
    )
    n = source.n_samples
    if n < 10:
        raise ValueError(f"{config.genotypes}: {n} samples; at least 10 are needed")
    sex = np.where(rng.random(n) < 0.5, "M", "F")
    age = rng.uniform(40, 80, n).round(1)
    groups = _assign_groups(rng, n, config)
    splits = np.array(["train", "train", "train", "train", "train", "train", "train", "val", "test", "test"])[
        np.arange(n) % 10
    ]
    writer = BedWriter(out / "genotypes", source, sex)
    traits, causal = _heritable_traits(source, config, rng, TRAITS, writer)
    names = TRAITS
    if "cine" in config.modalities:  # their own random stream: the other traits stay as without cine
        cine_traits, cine_causal = _heritable_traits(
            source, config, np.random.default_rng([config.seed, 5]), CINE_TRAITS
        )
        traits, causal, names = np.hstack([traits, cine_traits]), causal + cine_causal, TRAITS + CINE_TRAITS
    ids = source.sample_ids
    subjects = [Subject(dict(zip(names, traits[i])), (age[i] - 60) / 11.5, sex[i] == "M", groups[i]) for i in range(n)]
    truth = out / "ground_truth"
    truth.mkdir(exist_ok=True)
    _write_rows(
        truth / "subjects.csv",
        ["subject_id", "group", "age", "sex", "split", *names],
        [[ids[i], groups[i], age[i], sex[i], splits[i], *np.round(traits[i], 5)] for i in range(n)],
    )
    _write_rows(
        truth / "causal_snps.tsv",
        ["trait", "snp", "chrom", "pos", "a1", "a2", "effect_per_allele_sd"],
        causal,
        delimiter="\t",
    )
    outputs = {
        "genotypes": str(out / "genotypes.bed"),
        "subjects": str(truth / "subjects.csv"),
        "causal_snps": str(truth / "causal_snps.tsv"),
    }
    covariates = {"age": age, "sex": sex}
    if "xray" in config.modalities:
        outputs["xray_manifest"], outputs["lesion_boxes"] = _write_xrays(
            out, config, ids, subjects, groups, splits, covariates
        )
    if "mri" in config.modalities:
        outputs["mri_manifest"] = _write_mris(out, config, ids, subjects, groups, splits, covariates)
    if "cine" in config.modalities:
        outputs["cine_manifest"], outputs["cine_measures"] = _write_cines(
            out, config, ids, subjects, groups, splits, covariates
        )
    (out / "simulation.json").write_text(
        json.dumps({"config": asdict(config), "outputs": outputs, "traits": names}, indent=2)
    )
    return outputs


def _assign_groups(rng: np.random.Generator, n: int, config: CohortConfig) -> np.ndarray:
    names = ("healthy", *DISEASE_GROUPS[: config.n_disease_groups])
    share = config.disease_share / config.n_disease_groups
    return rng.choice(names, size=n, p=[1 - config.disease_share] + [share] * config.n_disease_groups)


def _heritable_traits(
    source: GenotypeSource, config: CohortConfig, rng, names: tuple[str, ...], writer: BedWriter | None = None
) -> tuple[np.ndarray, list]:
    """Streams genotypes (to PLINK, with a ``writer``) while accumulating each trait's causal and
    polygenic values."""
    n_traits = len(names)
    causal_index = [rng.choice(source.n_snps, config.causal_snps_per_trait, replace=False) for _ in names]
    causal_beta = np.zeros((source.n_snps, n_traits))
    for t, index in enumerate(causal_index):
        causal_beta[index, t] = rng.standard_normal(len(index))
    poly_beta = rng.standard_normal((source.n_snps, n_traits))
    causal_value, poly_value = np.zeros((source.n_samples, n_traits)), np.zeros((source.n_samples, n_traits))
    for start, dosage in tqdm(
        source.chunks(500), total=-(-source.n_snps // 500), desc="genotypes", unit="chunk", leave=False
    ):
        if writer is not None:
            writer.write(dosage)
        p = source.frequencies[start : start + dosage.shape[1]]
        standardised = np.nan_to_num((dosage - 2 * p) / np.sqrt(2 * p * (1 - p)))  # missing -> mean
        causal_value += standardised @ causal_beta[start : start + dosage.shape[1]]
        poly_value += standardised @ poly_beta[start : start + dosage.shape[1]]
    if writer is not None:
        writer.close()
    causal_sd, poly_sd = causal_value.std(0) + 1e-12, poly_value.std(0) + 1e-12
    h2, share = config.heritability, config.causal_share
    genetic = np.sqrt(share) * causal_value / causal_sd + np.sqrt(1 - share) * poly_value / poly_sd
    traits = np.sqrt(h2) * genetic + np.sqrt(1 - h2) * rng.standard_normal(genetic.shape)
    rows = []
    for t, index in enumerate(causal_index):
        for j in sorted(index):
            chrom, sid, bp, a1, a2 = source.snp_table[j]
            p = source.frequencies[j]
            effect = np.sqrt(h2 * share) * causal_beta[j, t] / causal_sd[t] / np.sqrt(2 * p * (1 - p))
            rows.append([names[t], sid, chrom, bp, a1, a2, round(float(effect), 6)])
    return traits, rows


def _write_xrays(out: Path, config: CohortConfig, ids, subjects, groups, splits, covariates) -> tuple[str, str]:
    rows, boxes = [], []
    for i, subject in enumerate(tqdm(subjects, desc="chest radiographs", unit="subject", leave=False)):
        image, mask, lesions = render_chest(np.random.default_rng([config.seed, 3, i]), config.xray_size, subject)
        suffix = ".dcm" if config.xray_format == "dicom" else ".png"
        path = out / "xray" / f"{ids[i]}{suffix}"
        mask_path = out / "xray_masks" / f"{ids[i]}.png"
        _save_2d(path, image, ids[i])
        _save_2d(mask_path, mask, ids[i])
        rows.append(_manifest_row(ids[i], path, mask_path, groups[i], splits[i], covariates, i, out))
        boxes += [[ids[i], *box] for box in lesions]
    manifest = _write_rows(out / "xray_manifest.csv", list(rows[0]), [list(r.values()) for r in rows])
    box_file = _write_rows(
        out / "ground_truth" / "lesion_boxes.csv", ["subject_id", "x0", "y0", "x1", "y1", "kind"], boxes
    )
    return str(manifest), str(box_file)


def _write_mris(out: Path, config: CohortConfig, ids, subjects, groups, splits, covariates) -> str:
    spacing = HEAD_MM / config.mri_size
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = -HEAD_MM / 2
    rows = []
    for i, subject in enumerate(tqdm(subjects, desc="brain MRIs", unit="subject", leave=False)):
        volume, mask = render_brain(np.random.default_rng([config.seed, 4, i]), config.mri_size, subject)
        path, mask_path = out / "mri" / f"{ids[i]}.nii.gz", out / "mri_masks" / f"{ids[i]}.nii.gz"
        path.parent.mkdir(exist_ok=True), mask_path.parent.mkdir(exist_ok=True)
        nib.save(nib.Nifti1Image(volume, affine), path)
        nib.save(nib.Nifti1Image(mask, affine), mask_path)
        rows.append(_manifest_row(ids[i], path, mask_path, groups[i], splits[i], covariates, i, out))
    return str(_write_rows(out / "mri_manifest.csv", list(rows[0]), [list(r.values()) for r in rows]))


def _write_cines(out: Path, config: CohortConfig, ids, subjects, groups, splits, covariates) -> tuple[str, str]:
    """2D+t NIfTI (x, y, 1, t) with the time unit ms, as cardiac pipelines convert short-axis
    cine; masks of every frame beside them; the true geometry of every beat."""
    pixel = CINE_MM[0] / config.cine_size
    rows, measures = [], []
    for i, subject in enumerate(tqdm(subjects, desc="cardiac cines", unit="subject", leave=False)):
        beat = render_cine(np.random.default_rng([config.seed, 6, i]), config.cine_size, config.cine_phases, subject)
        path, mask_path = out / "cine" / f"{ids[i]}.nii.gz", out / "cine_masks" / f"{ids[i]}.nii.gz"
        for target, frames in ((path, beat.frames), (mask_path, beat.masks)):
            target.parent.mkdir(exist_ok=True)
            image = nib.Nifti1Image(frames.transpose(1, 2, 0)[:, :, None], np.diag([pixel, pixel, CINE_MM[1], 1.0]))
            image.header.set_xyzt_units("mm", "msec")
            image.header["pixdim"][4] = beat.cycle_ms / config.cine_phases
            nib.save(image, target)
        blood = (beat.masks == 1).sum(axis=(1, 2)) * pixel**2
        measures.append(
            [
                ids[i],
                round(blood[0], 2),
                round(blood.min(), 2),
                round(100 * (1 - blood.min() / blood[0]), 3),
                round(beat.wall * CINE_MM[0] / 2, 3),
                round(beat.cycle_ms, 1),
            ]
        )
        rows.append(_manifest_row(ids[i], path, mask_path, groups[i], splits[i], covariates, i, out))
    header = ["subject_id", "lv_ed_area_mm2", "lv_es_area_mm2", "lv_ef_percent", "lv_wall_mm", "cycle_ms"]
    measure_file = _write_rows(out / "ground_truth" / "cine_measures.csv", header, measures)
    return str(_write_rows(out / "cine_manifest.csv", list(rows[0]), [list(r.values()) for r in rows])), str(
        measure_file
    )


def _manifest_row(subject_id, path: Path, mask_path: Path, group, split, covariates, i, out: Path) -> dict:
    return {
        "subject_id": subject_id,
        "path": path.relative_to(out).as_posix(),
        "label": group,
        "split": split,
        "age": covariates["age"][i],
        "sex": covariates["sex"][i],
        "mask": mask_path.relative_to(out).as_posix(),
    }


def _save_2d(path: Path, array: np.ndarray, subject_id: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".dcm":
        _save_dicom(path, array, subject_id)
    else:
        PILImage.fromarray(array).save(path)


def _save_dicom(path: Path, array: np.ndarray, subject_id: str) -> None:
    """A minimal valid CR DICOM (explicit VR little endian, 8-bit MONOCHROME2)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[subject_id, "sop"])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[subject_id, "series"])
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[subject_id, "study"])
    ds.PatientID, ds.Modality, ds.BodyPartExamined = subject_id, "CR", "CHEST"
    ds.Rows, ds.Columns = array.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelSpacing = [400 / array.shape[0]] * 2
    ds.PixelData = array.tobytes()
    ds.save_as(path, enforce_file_format=True)


def _write_rows(path: Path, header: list[str], rows: list, delimiter: str = ",") -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_causal_snps(causal_tsv: str | Path) -> dict[str, str]:
    """SNP -> the trait it causes, from the ground truth's causal_snps.tsv."""
    with open(causal_tsv, newline="") as handle:
        return {row["snp"]: row["trait"] for row in csv.DictReader(handle, delimiter="\t")}


def causal_leads(gwas_summary: dict, causal_tsv: str | Path) -> dict:
    """Per phenotype of a ``run_gwas`` summary: its lambda_GC, its number of leads, the leads that
    are the simulation's causal SNPs and the traits those cause."""
    causal = read_causal_snps(causal_tsv)
    found = {}
    for phenotype, result in gwas_summary["results"].items():
        hits = [lead["ID"] for lead in result["leads"] if lead["ID"] in causal]
        found[phenotype] = {
            "lambda_gc": result["lambda_gc"],
            "leads": len(result["leads"]),
            "causal_leads": hits,
            "traits_of_causal_leads": sorted({causal[h] for h in hits}),
        }
    return found
