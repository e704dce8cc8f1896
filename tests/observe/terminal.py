"""A tiny terminal for tests: replays what a program wrote to a terminal into the lines left on screen.

Understands what rich's live display uses: newlines, carriage returns, erase-line (``ESC[2K``) and
cursor-up (``ESC[1A``, ``ESC[nA``); other escape sequences (colours, cursor visibility) are dropped.
"""

from __future__ import annotations

import re

_TOKENS = re.compile(r"(\x1b\[[0-9;?]*[A-Za-z]|\n|\r)")


def screen(output: str) -> list[str]:
    """The non-blank lines a terminal shows after ``output``, right-stripped."""
    lines, row, col = [""], 0, 0
    for token in _TOKENS.split(output):
        if token == "\n":
            row, col = row + 1, 0
            lines += [""] * (row + 1 - len(lines))
        elif token == "\r":
            col = 0
        elif token == "\x1b[2K":
            lines[row] = ""
        elif token.startswith("\x1b[") and token.endswith("A"):
            row = max(0, row - int(token[2:-1] or 1))
        elif token and not token.startswith("\x1b"):
            line = lines[row].ljust(col)
            lines[row] = line[:col] + token + line[col + len(token) :]
            col += len(token)
    return [line.rstrip() for line in lines if line.strip()]
