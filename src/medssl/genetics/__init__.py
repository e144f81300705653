"""Genetics of imaging phenotypes: PLINK genotypes, QC, GWAS by linear regression (as plink2 --glm)
and exports for plink2, REGENIE and BOLT-LMM."""

GENOME_WIDE = 5e-8  # genome-wide significance: 0.05 over about a million independent common variants
