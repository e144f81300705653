"""A simulated population cohort with known ground truth: genotypes, heritable traits, images."""
