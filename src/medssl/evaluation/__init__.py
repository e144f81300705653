"""What pretraining buys: frozen-encoder probes and fine-tuning at few labels."""

# the segmentation/detection tasks of `medssl benchmark` (see dense_tasks.py); named here so that
# the command line can list them without importing torch
DENSE_TASKS = (
    "cohort-xray-segmentation",
    "cohort-mri-segmentation",
    "cohort-xray-detection",
    "cohort-mri-detection",
    "mni152-2d",
    "mni152-3d",
)
