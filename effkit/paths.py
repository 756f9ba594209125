"""Where effkit keeps what it caches: $EFFKIT_CACHE_DIR, else $XDG_CACHE_HOME/effkit, else ~/.cache/effkit."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    base = os.environ.get("EFFKIT_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "effkit")
    return Path(base)
