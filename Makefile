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
.PHONY: help install reference-torchvision reference-timm reference-mediapipe reference-model-api mqtt-broker chromium test test-fast lint docs demo demo-steps train eval calibrate convert compare run bench bench-bccd pi-check clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "torch==$(TORCH_VERSION)"
	$(PIP) install -q -e ".[all,dev]"
	@touch $(STAMP)

install: $(STAMP)  ## create .venv once and install everything (no-op when current)

# The torchvision parity tests compare against Debian's python3-torchvision (its own CPU torch,
# under /usr/bin/python3, never in the venv). Installed when missing and we are root with apt;
# otherwise a note, and those tests skip.
reference-torchvision:
	@if /usr/bin/python3 -c "import torchvision" 2>/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing python3-torchvision (the parity tests' reference)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torchvision >/dev/null) \
			|| echo "note: apt-get install python3-torchvision failed; the torchvision parity tests will skip"; \
	else echo "note: run 'sudo apt-get install python3-torchvision' for the torchvision parity tests (they skip without it)"; fi

# The MQTT tests start Debian's mosquitto themselves (on 127.0.0.1, a free port); installed when
# missing and we are root with apt (the package's own service is not started here).
mqtt-broker:
	@if command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing mosquitto (the MQTT tests' broker)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null) \
			|| echo "note: apt-get install mosquitto failed; the MQTT tests will fail"; \
	else echo "note: run 'sudo apt-get install mosquitto' for the MQTT tests"; fi

# The report-page browser tests (tests/test_compare_report_page.py) drive Debian's headless Chromium;
# installed when missing and we are root with apt, as .ci/run does.
chromium:
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium (the report-page browser tests)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
			|| echo "note: apt-get install chromium failed; the report-page browser tests will skip"; \
	else echo "note: run 'sudo apt-get install chromium' for the report-page browser tests (they skip without it)"; fi

# The EfficientNet-Lite parity test's reference: timm, its wheel unpacked into $(TIMM_DIR) for
# Debian's /usr/bin/python3 (timm imports torchvision, whose pip wheel does not load against the
# venv's torch). Architecture only: the test loads the packaged ImageNet file into it.
TIMM_VERSION := 1.0.31
TIMM_DIR := .reference/timm-$(TIMM_VERSION)

reference-timm: $(STAMP) reference-torchvision  ## timm $(TIMM_VERSION) for /usr/bin/python3 (unpacked into .reference/)
	@test -f $(TIMM_DIR)/timm/__init__.py || { rm -rf $(TIMM_DIR) $(TIMM_DIR).whl && \
		$(PIP) download -q --no-deps --only-binary=:all: -d $(TIMM_DIR).whl "timm==$(TIMM_VERSION)" && \
		rm -rf $(TIMM_DIR).tmp && $(PY) -m zipfile -e $(TIMM_DIR).whl/timm-$(TIMM_VERSION)-py3-none-any.whl $(TIMM_DIR).tmp && \
		mv $(TIMM_DIR).tmp $(TIMM_DIR) && rm -rf $(TIMM_DIR).whl; }

# The end-to-end artifacts' real consumers, each in a virtual environment of its own (never the
# project's): MediaPipe's wheel pins flatbuffers and pulls opencv-contrib-python and matplotlib,
# the OpenVINO Model API pins opencv-python-headless 4.x; both would clobber the project's OpenCV.
# The consumer tests (tests/test_convert_endtoend_consumers.py) run them as subprocesses.
MEDIAPIPE_VERSION := 1.2.2
MEDIAPIPE_VENV := .reference/mediapipe-$(MEDIAPIPE_VERSION)
MODEL_API_VERSION := 0.4.7
MODEL_API_VENV := .reference/model-api-$(MODEL_API_VERSION)

reference-mediapipe: $(MEDIAPIPE_VENV)/.installed  ## MediaPipe $(MEDIAPIPE_VERSION) in its own venv (.reference/)
$(MEDIAPIPE_VENV)/.installed:
	rm -rf $(MEDIAPIPE_VENV) && $(PYTHON) -m venv $(MEDIAPIPE_VENV)
	$(MEDIAPIPE_VENV)/bin/pip install -q "mediapipe==$(MEDIAPIPE_VERSION)"
	@touch $@

reference-model-api: $(STAMP) $(MODEL_API_VENV)/.installed  ## OpenVINO Model API $(MODEL_API_VERSION) in its own venv (.reference/), on the project's OpenVINO version
$(MODEL_API_VENV)/.installed:
	rm -rf $(MODEL_API_VENV) && $(PYTHON) -m venv $(MODEL_API_VENV)
	$(MODEL_API_VENV)/bin/pip install -q "openvino-model-api==$(MODEL_API_VERSION)" \
		"openvino==$$($(PY) -c 'import importlib.metadata as m; print(m.version("openvino"))')"
	@touch $@

# One pytest process per stage: litert-torch starts JAX threads and OpenVINO's converter
# forks a telemetry process; in one process the two crash (segfault). Every file not in a
# named stage runs in the core stage, so no test file is ever left out.
TRAIN_TESTS := $(wildcard tests/test_train_*.py)
EDGE_TESTS := $(wildcard tests/test_edge_*.py)
CONVERT_TESTS := $(wildcard tests/test_calibration*.py tests/test_convert*.py tests/test_compare*.py)
DEMO_TESTS := $(wildcard tests/test_demo*.py)
CORE_TESTS := $(filter-out $(TRAIN_TESTS) $(EDGE_TESTS) $(CONVERT_TESTS) $(DEMO_TESTS),$(wildcard tests/test_*.py))
PYTEST_ARGS ?=

test: install reference-torchvision reference-timm reference-mediapipe reference-model-api mqtt-broker chromium docs  ## the docs site (--strict), then the whole test suite (one process per stage)
	$(PY) -m pytest -q $(PYTEST_ARGS) $(CORE_TESTS) $(TRAIN_TESTS)
	$(PY) -m pytest -q $(PYTEST_ARGS) $(EDGE_TESTS)
	$(PY) -m pytest -q $(PYTEST_ARGS) $(CONVERT_TESTS)
	$(if $(DEMO_TESTS),$(PY) -m pytest -q $(PYTEST_ARGS) $(DEMO_TESTS))

test-fast: install  ## the tests without the slow ones (the demo smoke test)
	$(MAKE) --no-print-directory test PYTEST_ARGS='-m "not slow"' DEMO_TESTS=

docs: install  ## build the documentation site into site/ (mkdocs --strict: a broken link or page fails)
	$(VENV)/bin/mkdocs build --strict --site-dir site  # not --quiet: it hides the warnings --strict counts

lint: install  ## ruff
	$(VENV)/bin/ruff check ssd train calibration convert edge_app compare benchmarks tests

# The demo's knobs; the smoke test shrinks them.
DEMO ?= runs/demo
DEMO_DATA ?= data/demo_synth
DEMO_TRAIN ?= 3000
DEMO_VAL ?= 300
DEMO_EPOCHS ?= 20
DEMO_CALIB ?= 300
DEMO_HOLDOUT ?= 100
DEMO_FRAMES ?= 300
DEMO_TARGET ?= all

demo: install  ## end to end on synthetic data: train, calibrate, convert every format, compare, run the edge app
	@$(MAKE) --no-print-directory demo-steps

demo-steps:
	@echo "==> [1/7] the shared SSD core: priors per map, decode + NMS on a sample head output"
	$(PY) -m ssd.demo
	@echo "==> [2/7] synthetic dataset ($(DEMO_TRAIN) train / $(DEMO_VAL) val images) in $(DEMO_DATA)"
	$(VENV)/bin/ssd-synth --out $(DEMO_DATA) --seed 0 --num-train $(DEMO_TRAIN) --num-val $(DEMO_VAL) --size 128
	@echo "==> [3/7] train the tiny SSD for $(DEMO_EPOCHS) epochs -> $(DEMO)/train"
	@# data.format=voc: train on the set step 2 wrote (format synth would regenerate the config's own size)
	$(VENV)/bin/ssd-train --config tiny_synth --overwrite output_dir=$(DEMO) name=train data.format=voc data.root=$(DEMO_DATA) optim.epochs=$(DEMO_EPOCHS) eval.every=$(DEMO_EPOCHS)
	@echo "==> [4/7] calibration set: $(DEMO_CALIB) class-stratified training images; $(DEMO_HOLDOUT) held out from val (not trained on)"
	$(VENV)/bin/ssd-calibrate --data $(DEMO_DATA) --split train --holdout-split val --num $(DEMO_CALIB) --holdout $(DEMO_HOLDOUT) --seed 0 --checkpoint $(DEMO)/train/best.pt --out $(DEMO)/calibration
	@echo "==> [5/7] convert to every format (TARGET=$(DEMO_TARGET)), each validated against PyTorch"
	$(VENV)/bin/ssd-convert --checkpoint $(DEMO)/train/best.pt --target $(DEMO_TARGET) --calib $(DEMO)/calibration --out $(DEMO)/artifacts
	@echo "==> [6/7] compare FP32 and INT8 on the validation split"
	$(VENV)/bin/ssd-compare --checkpoint $(DEMO)/train/best.pt --artifacts $(DEMO)/artifacts --data $(DEMO_DATA) --split val --out $(DEMO)/report --max-drop 2
	@echo "==> [7/7] edge app: ONNX Runtime INT8 on a synthetic video -> annotated MKV (crash-safe) + JSON lines"
	mkdir -p $(DEMO)/edge
	$(VENV)/bin/ssd-edge --model $(DEMO)/artifacts/model_onnx_int8.onnx --source "synthetic://?width=256&height=256&objects=4&frames=$(DEMO_FRAMES)" --output $(DEMO)/edge/annotated.mkv --output $(DEMO)/edge/detections.jsonl --every-frame --json $(DEMO)/edge/summary.json
	@echo
	@echo "Everything is in $(DEMO):"
	@echo "  checkpoint      $(DEMO)/train/best.pt  (curves: $(DEMO)/train/curves.png)"
	@echo "  calibration     $(DEMO)/calibration"
	@echo "  artifacts       $(DEMO)/artifacts  (each model with its .json sidecar)"
	@echo "  accuracy report $(DEMO)/report/report.md  (+ report.json, *.png)"
	@echo "  edge app        $(DEMO)/edge/annotated.mkv, $(DEMO)/edge/detections.jsonl"

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

bench: install  ## the benchmark scripts (each writes JSON under benchmarks/results and prints a line)
	$(PY) benchmarks/nms.py
	$(PY) benchmarks/runtimes.py
	$(PY) benchmarks/edge_pipeline.py
	$(PY) benchmarks/edge_tracking.py
	$(PY) benchmarks/train_tiny_synth.py

PI_CHECK_ARGS ?=

pi-check: install  ## emulated Raspberry Pi (Debian arm64 under qemu, as root): the README's Pi install, detections vs the host (~1 h the first time; PI_CHECK_ARGS="--suite trixie" or "--keep-rootfs")
	$(PY) benchmarks/pi_check.py $(PI_CHECK_ARGS)

BCCD_RUN ?= runs/bccd
# SSDLite320 on EfficientNet-Lite0 fine-tuned from the packaged ImageNet weights (50 epochs);
# BCCD_CONFIG=ssdlite320_bccd is the earlier from-scratch MobileNetV2 recipe (120 epochs)
BCCD_CONFIG ?= ssdlite320_effnet_bccd
BCCD_ARGS ?=
BCCD_MAX_DROP ?= 0.5
# train on BCCD's train split and hold out val (87 images the model never saw) for --max-drop; test is the report
BCCD_TRAIN_SPLIT ?= train
BCCD_HOLDOUT_SPLIT ?= val

bench-bccd: install  ## real data: SSDLite320 on EfficientNet-Lite0 from ImageNet, fine-tuned on BCCD train, every format (--max-drop on val), compared on test
	@echo "==> [1/4] train $(BCCD_CONFIG) on $(BCCD) $(BCCD_TRAIN_SPLIT) -> $(BCCD_RUN)/train (last.pt is reported, whatever the periodic eval says)"
	@# a killed run resumes where it stopped; a finished one has nothing left to do
	$(VENV)/bin/ssd-train --config $(BCCD_CONFIG) output_dir=$(BCCD_RUN) name=train data.root=$(BCCD) data.train_split=$(BCCD_TRAIN_SPLIT) $(BCCD_ARGS) \
		$(if $(wildcard $(BCCD_RUN)/train/last.pt),--resume)
	@echo "==> [2/4] calibration set: 150 $(BCCD_TRAIN_SPLIT) images; $(BCCD_HOLDOUT_SPLIT) (not trained on) held out for --max-drop"
	$(VENV)/bin/ssd-calibrate --data $(BCCD) --split $(BCCD_TRAIN_SPLIT) --holdout-split $(BCCD_HOLDOUT_SPLIT) --num 150 --holdout 100 --seed 0 --checkpoint $(BCCD_RUN)/train/last.pt --out $(BCCD_RUN)/calibration
	@echo "==> [3/4] convert to every format; every INT8 artifact loses at most $(BCCD_MAX_DROP) points on the held-out images"
	$(VENV)/bin/ssd-convert --checkpoint $(BCCD_RUN)/train/last.pt --target all --calib $(BCCD_RUN)/calibration --out $(BCCD_RUN)/artifacts --max-drop $(BCCD_MAX_DROP)
	@echo "==> [4/4] compare on test -> $(BCCD_RUN)/report (latency at one thread)"
	$(VENV)/bin/ssd-compare --checkpoint $(BCCD_RUN)/train/last.pt --artifacts $(BCCD_RUN)/artifacts --data $(BCCD) --split test --out $(BCCD_RUN)/report --max-drop $(BCCD_MAX_DROP) --threads 1

clean:  ## remove run outputs (keeps .venv)
	rm -rf runs artifacts reports calibration/sets
