"""Files that survive: atomic writes, caches that heal, saved files read with clear errors, folder locks.

Every file effkit writes goes through a temporary file in the same folder and an atomic
rename, so a reader (or a crash) never sees half a file. A cache that cannot be read is
named in a warning, discarded and rebuilt; a saved file a user points at that cannot be
read is a UserInputError naming it.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from effkit.errors import UserInputError

log = logging.getLogger("effkit")


def safe_name(text: str) -> str:
    """A file-safe short name: the last part of a spec ('a/b.py:net' -> 'net'), odd characters as '_'."""
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text.split(":")[-1].split("/")[-1])


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path` through a temporary file and a rename."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError) as e:
        raise UserInputError(f"cannot write {str(path)!r}: {e.strerror or e}") from e
    except OSError as e:
        if e.errno in (30, 28):  # read-only file system, no space left
            raise UserInputError(f"cannot write {str(path)!r}: {e.strerror}") from e
        raise
    return path


def atomic_write_json(path: str | Path, data, indent: int | None = 2) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=indent, default=str))


def ensure_folder(folder: str | Path) -> Path:
    """Create `folder` (and parents); an unwritable place or an existing file is a UserInputError."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserInputError(f"output folder {str(folder)!r} is an existing file; give a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserInputError(f"cannot create output folder {str(folder)!r}: {e.strerror or e}") from e
    if not os.access(folder, os.W_OK):
        raise UserInputError(f"output folder {str(folder)!r} is not writable")
    return folder


def read_json_file(path: str | Path, what: str = "file"):
    """JSON from a file a user gave or a run wrote; missing, truncated or malformed is a UserInputError naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserInputError(f"{what} {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserInputError(f"{what} {str(path)!r} cannot be read: {e}") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UserInputError(f"{what} {str(path)!r} is truncated or not valid JSON ({e.msg} at line {e.lineno})") from e


def read_json_cache(path: str | Path):
    """A cache file's JSON, or None if absent; a corrupt one is named, discarded and None returned."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        log.warning("cache file %s could not be read (%s: %s); discarded, measuring again", path, type(e).__name__, e)
        try:
            path.unlink()
        except OSError:
            pass
        return None


class FolderLock:
    """An exclusive lock on a run folder for the length of a run; a second run into it is refused."""

    NAME = ".effkit.lock"

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / self.NAME
        self._f = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            return self
        ensure_folder(self.folder)
        f = open(self.path, "a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise UserInputError(f"folder {str(self.folder)!r} is in use by another effkit run ({holder}); wait for it or choose another --out") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        self._f = f
        return self

    def __exit__(self, *exc):
        if self._f is not None:
            try:
                self.path.unlink()
            except OSError:
                pass
            self._f.close()  # closing releases the lock
            self._f = None
