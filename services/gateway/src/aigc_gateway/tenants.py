"""Tenants and their API keys, from a YAML file (a Kubernetes Secret mounted as a file).

A key looks like ``aigc_<key id>_<secret>``. The file stores only the key id and the SHA-256 of
the whole key: a stolen file yields no usable key. Keys are random 32-byte secrets, so a plain
SHA-256 is the right hash (a slow password hash protects guessable secrets, which these are not).
The presented key's hash is compared with the stored one in constant time. Rotation: give a
tenant a second key id, move callers over, delete the first.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aigc_common.config_files import read_yaml_model
from aigc_common.errors import PermissionDenied, Unauthenticated

KEY_PREFIX = "aigc_"
API_KEY_HEADER = "x-api-key"
_KEY = re.compile(r"^aigc_([a-z0-9]{4,32})_([A-Za-z0-9_-]{16,128})$")


class ApiKeySpec(BaseModel):
    """One key of a tenant: its public id and the SHA-256 (hex) of the whole key."""

    model_config = ConfigDict(extra="forbid")

    key_id: str = Field(pattern=r"^[a-z0-9]{4,32}$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    disabled: bool = False


class RateLimitSpec(BaseModel):
    """Per-minute limits; 0 means unlimited."""

    model_config = ConfigDict(extra="forbid")

    requests_per_minute: int = Field(0, ge=0)
    tokens_per_minute: int = Field(0, ge=0)


class BudgetSpec(BaseModel):
    """Spend allowed per period, in a currency (model prices must be in the same currency)."""

    model_config = ConfigDict(extra="forbid")

    amount: float = Field(gt=0)
    currency: str = Field("CNY", min_length=3, max_length=3)
    period: Literal["day", "month", "total"] = "month"

    @property
    def amount_nanos(self) -> int:
        return round(self.amount * 1e9)


class TenantCacheSpec(BaseModel):
    """The tenant's use of the answer cache."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    semantic: bool = True
    ttl_seconds: int = Field(0, ge=0, description="0 means the cache service default.")


class TenantSpec(BaseModel):
    """One tenant as configured."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    name: str = ""
    api_keys: list[ApiKeySpec] = Field(default_factory=list)
    allowed_templates: list[str] = Field(default_factory=lambda: ["*"])
    allowed_models: list[str] = Field(default_factory=lambda: ["*"])
    safety_policy: str = ""
    rate_limits: RateLimitSpec = Field(default_factory=RateLimitSpec)
    budget: BudgetSpec | None = None
    cache: TenantCacheSpec = Field(default_factory=TenantCacheSpec)

    @field_validator("api_keys")
    @classmethod
    def _unique_ids(cls, value: list[ApiKeySpec]) -> list[ApiKeySpec]:
        ids = [k.key_id for k in value]
        if len(ids) != len(set(ids)):
            raise ValueError("key ids must be unique")
        return value


class TenantsFile(BaseModel):
    """The schema of the tenants file."""

    model_config = ConfigDict(extra="forbid")

    tenants: list[TenantSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> TenantsFile:
        seen: set[str] = set()
        keys: set[str] = set()
        for tenant in self.tenants:
            if tenant.id in seen:
                raise ValueError(f"tenant id {tenant.id!r} appears twice")
            seen.add(tenant.id)
            for key in tenant.api_keys:
                if key.key_id in keys:
                    raise ValueError(f"key id {key.key_id!r} is used by two keys")
                keys.add(key.key_id)
        return self


@dataclass(frozen=True)
class Tenant:
    """An authenticated caller's tenant."""

    spec: TenantSpec

    @property
    def id(self) -> str:
        return self.spec.id

    def check_template(self, template_id: str) -> None:
        if not _allowed(self.spec.allowed_templates, template_id):
            raise PermissionDenied(
                f"tenant {self.id!r} may not use template {template_id!r}", field="template_id"
            )

    def check_model(self, model: str) -> None:
        if not _allowed(self.spec.allowed_models, model):
            raise PermissionDenied(f"tenant {self.id!r} may not use model {model!r}", field="model")


def _allowed(patterns: list[str], name: str) -> bool:
    return any(p == "*" or p == name or (p.endswith("*") and name.startswith(p[:-1])) for p in patterns)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(key_id: str | None = None) -> tuple[str, ApiKeySpec]:
    """A fresh key and the entry to put in the tenants file (only the entry is stored)."""
    key_id = key_id or secrets.token_hex(4)
    key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    return key, ApiKeySpec(key_id=key_id, sha256=hash_key(key))


class TenantDirectory:
    """Resolves API keys to tenants."""

    def __init__(self, tenants: list[TenantSpec]) -> None:
        self._tenants = {t.id: Tenant(t) for t in tenants}
        self._keys: dict[str, tuple[ApiKeySpec, Tenant]] = {
            key.key_id: (key, self._tenants[t.id]) for t in tenants for key in t.api_keys
        }

    @classmethod
    def from_file(cls, path: Path) -> TenantDirectory:
        """Loads and validates the tenants file; problems name the file, line or field."""
        parsed = read_yaml_model(path, TenantsFile, "tenants file")
        return cls(parsed.tenants)

    @property
    def tenants(self) -> dict[str, Tenant]:
        return self._tenants

    def authenticate(self, api_key: str) -> Tenant:
        """The key's tenant; UNAUTHENTICATED for a missing, malformed, unknown or disabled key. The
        message never says which, so it cannot be used to probe key ids."""
        match = _KEY.match(api_key or "")
        entry = self._keys.get(match.group(1)) if match else None
        # Hash and compare even when the id is unknown, so timing does not tell ids apart.
        expected = entry[0].sha256 if entry else "0" * 64
        ok = hmac.compare_digest(hash_key(api_key or ""), expected)
        if entry is None or not ok or entry[0].disabled:
            if not api_key:
                raise Unauthenticated("send an API key in the x-api-key metadata", field="x-api-key")
            raise Unauthenticated("the API key is not valid", field="x-api-key")
        return entry[1]


class OpenDirectory:
    """No tenants file: every caller is one tenant (a single machine's embedded default)."""

    def __init__(self, tenant_id: str) -> None:
        self._tenant = Tenant(TenantSpec(id=tenant_id, name=tenant_id))
        self.tenants = {tenant_id: self._tenant}

    def authenticate(self, api_key: str) -> Tenant:
        return self._tenant


Directory = TenantDirectory | OpenDirectory
