"""Durable file writes: fsync the data, rename atomically, fsync the directory (power-loss safe)."""

import os
from pathlib import Path


def write_synced(path: Path, text: str, *, exclusive: bool = False) -> None:
    """Write `text` to `path` (mode 0600; `exclusive`: never over an existing file) and fsync it. Its
    directory entry is durable only after `sync_directory` or `replace_durably`."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())


def replace_durably(source: Path, target: Path) -> None:
    """Rename `source` over `target` atomically, then fsync the directory: after a power loss the rename
    is there (without the directory's fsync, the file system may not have written it yet)."""
    os.replace(source, target)
    sync_directory(target.parent)


def sync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
