"""Genetics of imaging phenotypes: PLINK genotypes, QC, GWAS by linear regression (as plink2 --glm)
and exports for plink2, REGENIE and BOLT-LMM."""
