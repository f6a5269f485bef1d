"""The command-line convention every console script follows (docs/cli.md).

- Exit status: :data:`EXIT_OK` (0) ok; :data:`EXIT_FAILED` (1) the run finished but failed its
  promise (a flagged INT8 artifact, a format that failed); :data:`EXIT_USAGE` (2) bad input or
  usage, with one line on stderr saying what is wrong and what to do.
- Help text: plain text (no reStructuredText markup); an option's default is written once, by
  its own help or by :class:`HelpFormatter`, never "(default: None)" and never on a flag that
  only switches something on or off.
- Flags become typed option objects by explicit keyword arguments in each ``cli.py`` (no
  matching of flag names to field names).
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

class HelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help only when it adds something: the help does
    not mention a default itself, the default is a value (not ``None``, a bool or empty) and the
    option takes a value (not a switch such as ``--no-xnnpack``)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        switch = action.nargs == 0  # store_true/false, store_const, count, help: no value to default
        if (not action.option_strings or switch or "default" in text.lower()
                or default is None or default is argparse.SUPPRESS or isinstance(default, bool)
                or default in ("", [], ())):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with :class:`HelpFormatter` and a one-line usage error (exit 2)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:
        first = message.strip().splitlines()[0] if message.strip() else "bad arguments"
        self.exit(EXIT_USAGE, f"{self.prog}: error: {first} (see {self.prog} --help)\n")


def fail(prog: str, message: object, status: int = EXIT_USAGE) -> int:
    """Print ``prog: error: <first line of message>`` on stderr and return ``status``."""
    text = str(message).strip()
    print(f"{prog}: error: {text.splitlines()[0] if text else type(message).__name__}", file=sys.stderr)
    return status
