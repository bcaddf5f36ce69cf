"""Label moves and their durable log.

A label move (``production`` from v1 to v2, by whom, when) is appended to a JSON-lines file before it
takes effect, and the file is replayed at start-up and tailed by the hot-reload loop: moves survive
restarts, and replicas that share the file (a volume on Kubernetes) converge on the same labels.
Appends are single ``write`` calls of one short line on a file opened for appending, which POSIX
keeps whole even with several writers.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LabelMove:
    """One label move, kept for the audit trail; ``from_version`` 0 means the label was new."""

    template_id: str
    label: str
    from_version: int
    to_version: int
    actor: str
    at: float


class LabelLog:
    """Append-only JSON-lines log of label moves; ``path`` None keeps moves in memory only."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._offset = 0
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(exist_ok=True)

    @property
    def path(self) -> Path | None:
        return self._path

    def append(self, move: LabelMove) -> None:
        if self._path is None:
            return
        line = (json.dumps(asdict(move), ensure_ascii=False, sort_keys=True) + "\n").encode()
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def read_new(self) -> list[LabelMove]:
        """Moves appended since the last call (by this process or another), oldest first."""
        if self._path is None:
            return []
        with self._path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        # A writer may be mid-line: only whole lines are consumed, the rest waits for the next read.
        end = data.rfind(b"\n") + 1
        self._offset += end
        moves = []
        for number, line in enumerate(data[:end].splitlines(), start=1):
            if not line.strip():
                continue
            try:
                moves.append(LabelMove(**json.loads(line)))
            except (ValueError, TypeError) as exc:
                # A damaged line must not take the labels down; it is reported and skipped.
                log.error(
                    "unreadable label move skipped",
                    extra={"fields": {"path": str(self._path), "line": number, "error": str(exc)}},
                )
        return moves
