"""Loading the service's optional C helpers (``aigc_safety/native/*.c``, built by
``scripts/build-native.sh``). Each library reports an interface version; a missing, unloadable or
stale build is skipped with one warning and the caller falls back to its Python or numpy path,
which computes the same results more slowly."""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def load_native(
    path: Path, abi_symbol: str, abi: int, symbols: Sequence[str], who: str, fallback: str
) -> Any:
    """The functions ``symbols`` of the library at ``path`` (a tuple, in that order), or None when
    it is not built, cannot be loaded, lacks one of them or reports another interface version
    than ``abi``. ``who`` and ``fallback`` word the warning ("rule scanner", "scanning in Python")."""
    if not path.exists():
        return None
    try:
        library = ctypes.CDLL(str(path))
        version = getattr(library, abi_symbol)
        version.restype = ctypes.c_int64
        found = version()
        functions = tuple(getattr(library, name) for name in symbols)
    except (OSError, AttributeError) as exc:
        log.warning("%s: %s unusable (%s); %s", who, path.name, exc, fallback)
        return None
    if found != abi:
        log.warning(
            "%s: %s has interface %s, this code needs %s (run scripts/build-native.sh); %s",
            who,
            path.name,
            found,
            abi,
            fallback,
        )
        return None
    return functions
