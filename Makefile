# The two commands of the README:
#   make serve   — run the gate on its embedded defaults (SQLite, ./var spool, the shipped model)
#   make test    — install everything the tests need and run the whole suite (lint included)
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed-$(EXTRAS)

.PHONY: serve test system-deps lint demo bench fuzz clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed-%: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e ".[$*]"
	touch $@

serve: EXTRAS = postgres
serve: $(VENV)/.installed-postgres
	$(VENV)/bin/gate serve --config config.yaml

demo: EXTRAS = postgres
demo: $(VENV)/.installed-postgres
	$(VENV)/bin/gate demo --config config.yaml

# Debian packages the tests need: DCMTK's storescu and Orthanc (the PACS in end-to-end tests), and the ITK
# example data (held-out real anatomy for the REC-Net tests).
DEBIAN_PACKAGES = dcmtk orthanc insighttoolkit5-examples
ITK_EXAMPLES = /usr/share/doc/insighttoolkit5-examples/examples/Data
system-deps:
	@if ! [ -x /usr/bin/storescu ] || ! [ -x /usr/sbin/Orthanc ] || ! [ -d $(ITK_EXAMPLES) ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEBIAN_PACKAGES) >/dev/null; \
	fi
	@# Debian starts its own Orthanc service on install; the tests start theirs on free ports.

test: EXTRAS = test,train,postgres
test: system-deps $(VENV)/.installed-test,train,postgres
	$(VENV)/bin/ruff check gate tests
	$(VENV)/bin/ruff format --check gate tests
	OMP_NUM_THREADS=1 $(VENV)/bin/pytest -q
	$(MAKE) fuzz

# Bounded coverage-guided fuzzing of the parse → assemble path, seeded from the hostile corpus.
# CI runs a fixed seed and number of inputs so a red run is reproducible; explore further with
# e.g. `make fuzz FUZZ_SEED=0 FUZZ_RUNS=-1 FUZZ_SECONDS=3600` (seed 0 = random).
FUZZ_SECONDS ?= 180
FUZZ_SEED ?= 1
FUZZ_RUNS ?= 3000
fuzz: EXTRAS = test,train,postgres
fuzz: $(VENV)/.installed-test,train,postgres
	rm -rf var/hostile var/fuzz-found && mkdir -p var/fuzz-found
	$(PY) -m gate.synth.hostile var/hostile >/dev/null
	OMP_NUM_THREADS=1 $(PY) fuzz/fuzz_parse_assemble.py -seed=$(FUZZ_SEED) -runs=$(FUZZ_RUNS) \
	  -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=3072 \
	  -timeout=30 -artifact_prefix=var/fuzz-found/crash- var/fuzz-found var/hostile/cases

clean:
	rm -rf $(VENV) var

# Network and latency benchmarks; results are written to bench/results/ with the machine they ran on.
bench: EXTRAS = test,train,postgres
bench: system-deps $(VENV)/.installed-test,train,postgres
	OMP_NUM_THREADS=1 $(PY) -m bench
