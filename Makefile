# Two commands that work on a fresh machine:  make demo   and   make test
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip install -q --disable-pip-version-check
# Pinned: a bare "torch" pulls a multi-GB CUDA build. The runtime never needs it.
TORCH   = torch==2.13.0

.PHONY: demo test bench student clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: pyproject.toml | $(VENV)/bin/python
	$(PIP) -e .
	touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.runtime
	$(PIP) $(TORCH)
	$(PIP) -e '.[dev,build,train,rtx]'
	touch $@

## demo: runtime-only install (no torch), assess the built-in example photo → demo_out/
demo: $(VENV)/.runtime
	$(VENV)/bin/efiqa assess sdk/data/retina.jpg --out demo_out
	$(VENV)/bin/efiqa assess sdk/data/retina.jpg --json > demo_out/retina.jsonl
	@echo "wrote demo_out/retina_overlay.png, demo_out/retina.json, demo_out/retina.jsonl"

## test: install test needs (torch pinned) and run the suite
test: $(VENV)/.dev
	$(PY) -m pytest -q

# the peers' networks come from torchvision, which does not import beside torch 2.13: own venv
BENCHVENV ?= .venv-bench
$(BENCHVENV)/.ok:
	$(PYTHON) -m venv $(BENCHVENV)
	$(BENCHVENV)/bin/python -m pip install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1 \
		onnx onnxruntime onnxscript numpy
	touch $@

## bench: every benchmark of this repo on this machine, then benchmarks/REPORT.md
bench: $(VENV)/.dev $(BENCHVENV)/.ok
	$(PY) benchmarks/latency.py
	$(PY) benchmarks/stream_fps.py
	$(PY) benchmarks/speed_matrix.py
	$(PY) benchmarks/precision_fidelity.py
	$(PY) benchmarks/fov_robustness.py
	$(PY) benchmarks/accuracy.py
	$(BENCHVENV)/bin/python benchmarks/peers.py
	$(PY) benchmarks/report.py

## student: distil the shipped student from models/teacher → models/default
student: $(VENV)/.dev
	$(VENV)/bin/efiqa train student --out models/student
	$(VENV)/bin/efiqa export --adapter models/student --out models/default

clean:
	rm -rf $(VENV) demo_out .pytest_cache .hypothesis
