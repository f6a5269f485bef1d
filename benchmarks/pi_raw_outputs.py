"""Raw outputs of one .tflite artifact under one interpreter package (run on the device).

    python benchmarks/pi_raw_outputs.py --model model_tflite_int8.tflite --inputs inputs.npz \
        --runtime tflite_runtime --out raw.npz

``inputs.npz`` holds ``input_0 ... input_{N-1}``, each the already preprocessed model input
``(1, H, W, 3)`` in the model's input dtype (made on the host by ``pi_check.py``, so both
runtimes see the same integers). ``raw.npz`` gets ``<output name>__<i>`` arrays exactly as the
interpreter returns them (int8 for an INT8 artifact: no dequantization here), so two runtimes
can be compared in quantization steps. Runs in the README's venv on the device (the project
installed); the interpreter comes from :func:`edge_app.backends.tflite_backend.make_interpreter`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from edge_app.backends.tflite_backend import make_interpreter
from ssd.atomic import atomic_path

RUNTIMES = ("ai_edge_litert", "tflite_runtime")


def raw_outputs(model: Path, inputs: list[np.ndarray], runtime: str, threads: int = 1) -> dict[str, np.ndarray]:
    """``{"<name>__<i>": output of input i}`` from ``runtime``'s Interpreter (default delegates)."""
    interpreter, _ = make_interpreter(model, threads, package=runtime)
    interpreter.allocate_tensors()
    (inp,) = interpreter.get_input_details()
    out: dict[str, np.ndarray] = {}
    for i, x in enumerate(inputs):
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        for detail in interpreter.get_output_details():
            out[f"{detail['name']}__{i}"] = np.array(interpreter.get_tensor(detail["index"]))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--inputs", type=Path, required=True)
    p.add_argument("--runtime", choices=RUNTIMES, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    with np.load(args.inputs) as data:
        inputs = [data[f"input_{i}"] for i in range(len(data.files))]
    outputs = raw_outputs(args.model, inputs, args.runtime, args.threads)
    with atomic_path(args.out) as tmp:  # the temporary name keeps .npz, so savez adds nothing
        np.savez(tmp, **outputs)
    print(f"{args.runtime}: {len(inputs)} inputs -> {len(outputs)} outputs in {args.out}")


if __name__ == "__main__":
    main()
