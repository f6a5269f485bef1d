# One-command set-up: every target that needs the environment depends on `install`,
# so `make demo` and `make test` each work as the first command on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
TORCH_VERSION ?= 2.13.0

# Pipeline defaults (override on the command line: make convert TARGET=rpi CHECKPOINT=...)
CONFIG ?= tiny_synth
GPUS ?= 1
CHECKPOINT ?= runs/$(CONFIG)/best.pt
TARGET ?= all
DATA ?= data/synth
SPLIT ?= val
CALIB ?= calibration/sets/$(CONFIG)
ARTIFACTS ?= artifacts/$(CONFIG)
REPORT ?= reports/$(CONFIG)
MODEL ?= $(ARTIFACTS)/model_onnx_fp32.onnx
SOURCE ?= synthetic://
BCCD ?= ../shared/datasets/bccd

.DEFAULT_GOAL := help
.PHONY: help install test test-fast lint demo train eval calibrate convert compare run bench bench-bccd clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "torch==$(TORCH_VERSION)"
	$(PIP) install -q -e ".[all,dev]"
	@touch $(STAMP)

install: $(STAMP)  ## create .venv once and install everything (no-op when current)

test: install  ## run the whole test suite
	$(PY) -m pytest -q

test-fast: install  ## the tests without the slow matrix
	$(PY) -m pytest -q -m "not slow"

lint: install  ## ruff
	$(VENV)/bin/ruff check ssd train calibration convert edge_app benchmarks tests

demo: install  ## end-to-end demo on synthetic data
	$(PY) -m ssd.demo

train: install  ## train: make train CONFIG=tiny_synth [GPUS=n] [ARGS="key=value ..."]
ifeq ($(GPUS),1)
	$(VENV)/bin/ssd-train --config $(CONFIG) $(ARGS)
else
	$(VENV)/bin/torchrun --standalone --nproc_per_node=$(GPUS) -m train.cli --config $(CONFIG) $(ARGS)
endif

eval: install  ## evaluate: make eval CHECKPOINT=... DATA=... SPLIT=val
	$(VENV)/bin/ssd-eval --checkpoint $(CHECKPOINT) --data $(DATA) --split $(SPLIT)

calibrate: install  ## calibration set: make calibrate DATA=... CHECKPOINT=...
	$(VENV)/bin/ssd-calibrate --data $(DATA) --split train --num 300 --seed 0 --checkpoint $(CHECKPOINT) --out $(CALIB)

convert: install  ## export + quantize: make convert CHECKPOINT=... TARGET=intel|rpi|jetson|all CALIB=...
	$(VENV)/bin/ssd-convert --checkpoint $(CHECKPOINT) --target $(TARGET) --calib $(CALIB) --out $(ARTIFACTS)

compare: install  ## accuracy of every artifact against FP32
	$(VENV)/bin/ssd-compare --checkpoint $(CHECKPOINT) --artifacts $(ARTIFACTS) --data $(DATA) --split $(SPLIT) --out $(REPORT)

run: install  ## edge app: make run MODEL=... SOURCE=...
	$(VENV)/bin/ssd-edge --model $(MODEL) --source $(SOURCE) $(ARGS)

bench: install  ## the benchmark scripts (write JSON under benchmarks/results)
	$(PY) benchmarks/nms.py

bench-bccd: install  ## real data: train SSDLite320 on BCCD, convert, compare
	$(PY) -m benchmarks.bccd --data $(BCCD)

clean:  ## remove run outputs (keeps .venv)
	rm -rf runs artifacts reports calibration/sets
