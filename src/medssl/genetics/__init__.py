"""Genetics of imaging phenotypes: PLINK 1/2 and BGEN genotypes, QC, GWAS by linear and logistic
regression (as plink2 --glm) and exports for plink2, REGENIE and BOLT-LMM."""

GENOME_WIDE = 5e-8  # genome-wide significance: 0.05 over about a million independent common variants
