"""Crash-safe files: write under a temporary name and rename, and tell leftovers of dead processes.

Example:
    >>> from jina_onnx.atomic import process_alive
    >>> process_alive(os.getpid())
    True
"""

from __future__ import annotations

import os
from pathlib import Path


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` so a reader sees the old file or the whole new one, never half."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists: a temporary file named after a dead one is a leftover."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True
