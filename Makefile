# `make demo` runs the main job, `make test` the tests; each first builds .venv if needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
# glibc would map fresh pages for every large tensor; reusing them makes CPU training ~2x faster
export MALLOC_MMAP_MAX_ := 0
export MALLOC_TRIM_THRESHOLD_ := 100000000000

.PHONY: demo test tools clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet torch==2.13.0  # the CPU build; a bare `torch` would pull GBs of CUDA
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/medssl demo --out runs/demo

test: $(VENV)/.installed tools
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check --quiet .
	$(VENV)/bin/python -m pytest -q

# Debian's chromium (the report test opens the demo's HTML) and plink2 (the GWAS is checked against
# it); without them those tests skip and say why
tools:
	@(command -v chromium >/dev/null && command -v plink2 >/dev/null && command -v bolt >/dev/null) || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium plink2 bolt-lmm >/dev/null) \
		|| echo "chromium, plink2 or bolt-lmm not installed: the tests that need them will skip"

clean:
	rm -rf $(VENV) runs
