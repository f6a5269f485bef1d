"""The command-line convention (docs/cli.md), checked over every console script in pyproject.toml.

For each script: ``--help`` parses and exits 0, its text has no reStructuredText markup, no
``(default: None)``, no ``(default: True/False)`` on a switch and no option whose default is
written twice; an unknown flag and a bad input (a missing file, an impossible value) each exit
2 with exactly one line on stderr, ``<prog>: error: ...``.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from ssd.cli import EXIT_USAGE

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]

# One bad input per script: a path that does not exist or a value out of range (run in an empty folder).
BAD_INPUT: dict[str, list[str]] = {
    "ssd-train": ["--config", "no_such_config"],
    "ssd-eval": ["--checkpoint", "missing.pt", "--data", "missing"],
    "ssd-import": ["torchvision", "ssd300_vgg16", "--weights", "missing.pth", "--out", "x.pt"],
    "ssd-split": ["--data", "missing"],
    "ssd-qat": ["--checkpoint", "missing.pt", "--data", "missing", "--out", "x.pt"],
    "ssd-synth": ["--out", "x", "--size", "8"],
    "ssd-calibrate": ["--data", "missing", "--checkpoint", "missing.pt", "--out", "calib"],
    "ssd-convert": ["--checkpoint", "missing.pt", "--target", "all", "--out", "artifacts"],
    "ssd-compare": ["--checkpoint", "missing.pt", "--artifacts", "missing", "--data", "missing", "--out", "report"],
    "ssd-edge": ["--model", "missing.onnx", "--source", "synthetic://"],
}
MARKUP = re.compile(r"`|:(mod|func|class|data|meth|attr):|\*\*")


def _main(script: str):
    module, func = SCRIPTS[script].split(":")
    return getattr(importlib.import_module(module), func)


def _help(script: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        _main(script)(["--help"])
    assert exc.value.code in (0, None)
    return capsys.readouterr().out


def _option_blocks(text: str) -> list[str]:
    """Each option's help, joined onto one line (an option starts a line with two spaces and '-')."""
    blocks: list[str] = []
    for line in text.splitlines():
        if re.match(r"^  -", line):
            blocks.append(line.strip())
        elif blocks and line.startswith("   "):
            blocks[-1] += " " + line.strip()
        elif line.strip() == "" or not line.startswith(" "):
            blocks.append("")  # a section ends the block
    return [b for b in blocks if b]


def test_every_console_script_is_covered() -> None:
    assert set(SCRIPTS) == set(BAD_INPUT), "add a bad input for the new console script to BAD_INPUT"
    assert len(SCRIPTS) == 10


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_help_is_plain_and_states_each_default_once(script: str, capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(script, capsys)
    assert text.startswith(f"usage: {script}"), text[:200]
    assert not MARKUP.search(text), f"markup in {script} --help: {MARKUP.search(text).group(0)!r}"
    assert "(default: None)" not in text
    blocks = _option_blocks(text)
    assert len(blocks) >= 3, blocks
    for block in blocks:
        assert "(default: True)" not in block and "(default: False)" not in block, block
        assert block.lower().count("(default:") <= 1, block
        if "(default:" in block:  # added by the formatter: the help must not have said it already
            assert block.lower().count("default") == 1, block


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_an_unknown_flag_is_one_line_and_exit_2(script: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _main(script)(["--no-such-flag"])
    assert exc.value.code == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{script}: error: ") and "--help" in err[0], err


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_a_bad_input_is_one_line_and_exit_2(script: str, tmp_path: Path) -> None:
    module, func = SCRIPTS[script].split(":")
    code = f"import sys; from {module} import {func}; sys.exit({func}(sys.argv[1:]))"
    res = subprocess.run([sys.executable, "-c", code, *BAD_INPUT[script]], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == EXIT_USAGE, (res.returncode, res.stderr[-2000:])
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{script}: error: "), err
    assert list(tmp_path.iterdir()) == [], "a bad input must not leave files behind"


# Flags that main() reads itself or that need a file to be valid (their own tests cover them).
EDGE_NOT_IN_OPTIONS = {"help", "json_summary", "log_level", "zones", "tracker_config", "events", "mqtt", "mqtt_prefix",
                       "mqtt_qos", "mqtt_buffer"}


def _edge_value(action) -> list[str]:
    """A value for ``action`` that differs from its default (no value for a switch)."""
    if action.nargs == 0:
        return []
    if action.choices:
        return [next(str(c) for c in action.choices if c != action.default)]
    if action.type is int:
        return ["3"]
    if action.type is float:
        return ["0.3"]
    return ["X"]


def test_every_ssd_edge_flag_reaches_the_run_options() -> None:
    """Each flag is passed to its option type by keyword: a flag whose field was renamed (or that
    was never passed on) would leave the options unchanged, and this fails."""
    from edge_app.cli import build_parser, options_from_args

    parser = build_parser()
    base = ["--model", "m.onnx", "--output", "-"]
    checked = 0
    for action in parser._actions:
        if action.dest in EDGE_NOT_IN_OPTIONS or action.dest in ("model", "source"):
            continue
        flag = action.option_strings[0]
        sources = ["--source", "a=synthetic://", "--source", "b=synthetic://"]
        track = ["--track"] if action.dest in ("high_thresh", "low_thresh", "new_track_thresh", "match_thresh",
                                               "min_hits", "track_buffer") else []
        if action.dest == "realtime" and flag == "--realtime":
            reference = options_from_args(parser.parse_args(base + sources + ["--every-frame"]))
        else:
            reference = options_from_args(parser.parse_args(base + sources + track))
        given = options_from_args(parser.parse_args(base + sources + track + [flag, *_edge_value(action)]))
        assert given != reference, f"ssd-edge {flag} does not reach RunOptions"
        checked += 1
    assert checked >= 25
