"""YAML configuration files (tenants, policies) read into pydantic models, with errors that name
the file and the line or field at fault, so an operator knows what to fix."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from aigc_common.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def read_yaml_model(path: Path, model: type[M], what: str) -> M:
    """``path`` parsed and validated as ``model``; ``what`` names the kind of file in errors."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read the file ({exc.strerror or exc})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{what} {path}{where}: invalid YAML") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "file"
        raise ConfigError(f"{what} {path}: field {loc}: {err['msg']}") from None
