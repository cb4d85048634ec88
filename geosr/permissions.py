"""The permissions a new file gets: files written under a temporary name (mkstemp's, or safetensors', are 0600) are
given them before they take their place, so that an output is as readable as any file the user makes."""

from __future__ import annotations

import os


def new_file_mode() -> int:
    """``0o666`` less the process's file-creation mask (read by setting it, then set back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask
