#!/usr/bin/env bash
# Issue #13's GPU measurements in one device call (about 8 minutes on one H200):
#   1. benchmarks/train_throughput.py: SSD300-VGG16 and SSDLite320, batch 32 and 64, bf16,
#      channels_last, compile off then on (model-alone and loader-fed steps), torchvision's own
#      ssd300_vgg16 / ssdlite320_mobilenet_v3_large step beside each (in process), ratio ours / torchvision;
#   2. benchmarks/gpu_check.py: 2 epochs of ssd-train on BCCD, bf16 + channels_last, SIGKILL after
#      the first, --resume, finite loss, the checkpoint loaded and run on the CPU;
#   3. benchmarks/train_budget.py: SSDLite320 (ssdlite320_bccd config) from scratch on BCCD for as
#      many epochs as fit in the time left (at most BCCD_BUDGET s), its test mAP@0.5.
# Prepare here first: bash benchmarks/gpu_prepare.sh; then
#   run(command="bash benchmarks/gpu_session.sh", carry=["data/bccd", ".whl"], timeout_s=600)
# Results (JSON, the log, the budgeted run's last.pt) go to $OUT (the device tool's folder) or
# benchmarks/results/gpu_session/. Knobs: SESSION_S (570: the whole script's deadline),
# THROUGHPUT_BUDGET (150), BCCD_BUDGET (240), WORKERS (8), PY (python3); and, for the CPU smoke
# test (tests/test_train_benchmarks.py): DEVICE (cuda), ARCHS, BATCHES, COMPILE, DATA, CONFIG
# (a config name or YAML path for steps 2-3), THROUGHPUT_ARGS / BUDGET_ARGS (extra flags), BCCD_MIN (30).
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS=${OUT:-benchmarks/results/gpu_session}
mkdir -p "$RESULTS"
PY=${PY:-python3}
SESSION_S=${SESSION_S:-570}
THROUGHPUT_BUDGET=${THROUGHPUT_BUDGET:-150}
BCCD_BUDGET=${BCCD_BUDGET:-240}
WORKERS=${WORKERS:-8}
RUNS=${RUNS:-/tmp/ssd_runs}
DEVICE=${DEVICE:-cuda}
ARCHS=${ARCHS:-ssd300_vgg16 ssdlite320_mobilenetv2}
BATCHES=${BATCHES:-32 64}
COMPILE=${COMPILE:-off on}
DATA=${DATA:-data/bccd}
CONFIG=${CONFIG:-ssdlite320_bccd}
THROUGHPUT_ARGS=${THROUGHPUT_ARGS:-}
BUDGET_ARGS=${BUDGET_ARGS:-}
BCCD_MIN=${BCCD_MIN:-30}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
deadline=$((SECONDS + SESSION_S))
left() { echo $((deadline - SECONDS)); }
cap() { local a=$1 b; b=$(left); b=$((a < b ? a : b)); echo $((b < 1 ? 1 : b)); }  # timeout 0 would mean none
log() { echo "== $(date +%T) [$(left) s left] $*"; }

session() {
    local failed=()
    log "inventory"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
    if ! "$PY" -c 'import pycocotools' 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
            && export PYTHONPATH="$PYTHONPATH:/tmp/site"
    fi
    DEVICE=$DEVICE "$PY" - <<'PYEOF' || return 2
import importlib, os, platform, sys
missing = []
print("python", platform.python_version(), sys.executable)
for name in ("torch", "numpy", "cv2", "yaml", "tqdm", "pycocotools", "torchvision", "matplotlib"):
    try:
        module = importlib.import_module(name)
        print(f"  {name} {getattr(module, '__version__', '?')}")
    except Exception as exc:  # torchvision (the ratio) and matplotlib (curves) are optional
        if name not in ("torchvision", "matplotlib"):
            missing.append(name)
        print(f"  {name} MISSING ({type(exc).__name__})")
import torch
print("  cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else "")
if missing or (os.environ["DEVICE"].startswith("cuda") and not torch.cuda.is_available()):
    sys.exit(f"gpu_session: error: missing {missing} or no CUDA device; carry wheels in .whl (benchmarks/gpu_prepare.sh)")
PYEOF
    if [ ! -d "$DATA/Annotations" ]; then
        echo "gpu_session: error: no $DATA; run benchmarks/gpu_prepare.sh on the CPU machine and carry data/bccd" >&2
        return 2
    fi

    log "1/3 throughput (budget ${THROUGHPUT_BUDGET} s)"
    # shellcheck disable=SC2086  # the lists split into words on purpose
    timeout "$(cap $((THROUGHPUT_BUDGET + 120)))" "$PY" benchmarks/train_throughput.py \
        --archs $ARCHS --batch-sizes $BATCHES --amp bf16 --channels-last on --compile $COMPILE \
        --data "$DATA" --workers "$WORKERS" --device "$DEVICE" \
        --time-budget-s "$THROUGHPUT_BUDGET" --out "$RESULTS/train_throughput.json" $THROUGHPUT_ARGS \
        || failed+=(throughput)

    log "2/3 correctness: bf16 + channels_last, kill, --resume, CPU load"
    rm -rf "$RUNS/gpu_check"
    timeout "$(cap 150)" "$PY" benchmarks/gpu_check.py --config "$CONFIG" --data "$DATA" --output-dir "$RUNS" \
        --out "$RESULTS/gpu_check.json" "data.workers=$WORKERS" "runtime.device=$DEVICE" || failed+=(gpu_check)

    local budget=$(( $(left) - 75 ))
    budget=$(( budget < BCCD_BUDGET ? budget : BCCD_BUDGET ))
    log "3/3 SSDLite320 on BCCD from scratch, ${budget} s"
    if [ "$budget" -ge "$BCCD_MIN" ]; then
        rm -rf "$RUNS/train_budget" "$RUNS/train_budget_probe"
        # shellcheck disable=SC2086
        timeout "$(cap $((budget + 70)))" "$PY" benchmarks/train_budget.py --budget-s "$budget" --config "$CONFIG" \
            --data "$DATA" --output-dir "$RUNS" --out "$RESULTS/train_budget.json" $BUDGET_ARGS \
            "data.workers=$WORKERS" "runtime.device=$DEVICE" || failed+=(train_budget)
        cp "$RUNS/train_budget/last.pt" "$RESULTS/bccd_gpu_last.pt" 2>/dev/null || true
        cp "$RUNS/train_budget/train.log" "$RESULTS/bccd_gpu_train.log" 2>/dev/null || true
    else
        echo "gpu_session: skipped the BCCD run: ${budget} s left"
        failed+=(train_budget)
    fi
    log "done"
    if [ ${#failed[@]} -gt 0 ]; then
        echo "gpu_session: failed: ${failed[*]}"
        return 1
    fi
    echo "gpu_session: all steps ran"
}

session 2>&1 | tee "$RESULTS/session.log"
status=${PIPESTATUS[0]}
echo "---- summary"
grep -h -E "^(train_throughput|gpu_check|train_budget|gpu_session):" "$RESULTS/session.log"
exit "$status"
