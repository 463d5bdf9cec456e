"""Local copies of a table's object-store data files, so DuckDB (no httpfs extension here) can read them.

Iceberg data files are immutable, so a copy named after its location is valid for ever; the cache is pruned
to `MAX_BYTES`, oldest first, never dropping a file the current plan needs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

MAX_BYTES = 2 << 30
_CHUNK = 8 << 20


def cached_name(location: str) -> str:
    """The cache file name of an object-store location (stable, flat, keeps the extension)."""
    digest = hashlib.sha256(location.encode()).hexdigest()[:32]
    return f"{digest}{Path(location).suffix}"


def _download(io: Any, location: str, target: Path) -> None:
    if target.is_file():
        with contextlib.suppress(OSError):
            os.utime(target)  # recently used: pruned last
        return
    tmp = target.with_name(f"{target.name}.{os.getpid()}.part")
    with io.new_input(location).open() as src, open(tmp, "wb") as dst:
        while chunk := src.read(_CHUNK):
            dst.write(chunk)
    tmp.replace(target)


def local_copies(io: Any, locations: Sequence[str], cache_dir: Path) -> list[str]:
    """Local paths of the files at `locations`, downloaded through the table's FileIO when not cached."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    targets = [cache_dir / cached_name(loc) for loc in locations]
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(locations)))) as pool:
        list(pool.map(lambda pair: _download(io, *pair), zip(locations, targets, strict=True)))
    prune(cache_dir, keep={t.name for t in targets})
    return [str(t) for t in targets]


def prune(cache_dir: Path, keep: set[str], max_bytes: int = MAX_BYTES) -> int:
    """Delete the least recently used copies beyond `max_bytes` (never those in `keep`); returns how many."""
    entries = []
    for path in cache_dir.iterdir():
        with contextlib.suppress(OSError):
            st = path.stat()
            entries.append((st.st_mtime, st.st_size, path))
    total = sum(size for _, size, _ in entries)
    removed = 0
    for _, size, path in sorted(entries):
        if total <= max_bytes:
            break
        if path.name in keep:
            continue
        with contextlib.suppress(OSError):
            path.unlink()
            total -= size
            removed += 1
    return removed
