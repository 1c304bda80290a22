"""Typed settings from the administrator's config.yaml, with GATE_* environment overrides.

Settings are a value object passed in explicitly; nothing reads a global configuration.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, field_validator

from gate.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_DIR = REPO_ROOT / "onnx_models"

# PS3.5 6.2: an AE title is at most 16 characters of the default repertoire, no backslash or
# control characters, and not all spaces.
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")


def _check_ae_title(value: str) -> str:
    if not _AE_TITLE.match(value) or not value.strip():
        raise ValueError(f"invalid AE title {value!r}: 1-16 printable ASCII characters, no backslash")
    return value.strip()


class TlsClient(BaseModel):
    """TLS towards a destination: the CA that signed its certificate and, for mutual TLS, ours."""

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None


class TlsServer(BaseModel):
    """TLS on the Storage SCP; with ``ca_file`` set, senders must present a certificate it signed."""

    cert_file: Path
    key_file: Path
    ca_file: Path | None = None


class Destination(BaseModel):
    """A DICOM peer the gate sends to (C-STORE SCP)."""

    ae_title: str
    host: str
    port: int = Field(ge=1, le=65535)
    tls: TlsClient | None = None

    _ae = field_validator("ae_title")(_check_ae_title)


class AllowedPeer(BaseModel):
    """A sender allowed to associate: its calling AE title and, optionally, the host it must come from."""

    ae_title: str
    host: str | None = None

    _ae = field_validator("ae_title")(_check_ae_title)


class Destinations(BaseModel):
    pacs: Destination | None = None
    reports: Destination | None = None


class RetryPolicy(BaseModel):
    """Exponential backoff for sends that failed for a transient reason."""

    initial_seconds: float = Field(5.0, gt=0)
    factor: float = Field(2.0, ge=1.0)
    max_seconds: float = Field(900.0, gt=0)
    max_attempts: int = Field(20, ge=1)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after the ``attempt``-th failure (1-based)."""
        return min(self.max_seconds, self.initial_seconds * self.factor ** max(0, attempt - 1))


class Settings(BaseModel):
    ae_title: str = "QGATE"
    port: int = Field(11112, ge=0, le=65535)
    bind_address: str = "0.0.0.0"
    storage_dir: Path = Path("./var")
    database_url: str | None = None  # default: sqlite in storage_dir
    destinations: Destinations = Field(default_factory=Destinations)
    model_dir: Path = DEFAULT_MODEL_DIR
    thresholds: dict[str, float] = Field(default_factory=dict, description="per segment label")
    # A SEG whose sources are still missing this long after it arrived is recorded `incomplete`.
    assembly_wait_seconds: float = Field(300.0, ge=0)
    worker_poll_seconds: float = Field(1.0, gt=0)
    retry: RetryPolicy = RetryPolicy()
    max_pdu_size: int = Field(0, ge=0)
    network_timeout_seconds: float = Field(60.0, gt=0)
    # Access control: empty list = any calling AE may store (the embedded default); the called AE
    # title must always be ours.
    allowed_callers: list[AllowedPeer] = Field(default_factory=list)
    tls: TlsServer | None = None
    # Resource limits, answered with 0xA700 (Refused: Out of Resources) so senders retry later.
    max_associations: int = Field(16, ge=1)
    max_object_bytes: int = Field(2 * 1024**3, ge=1)
    min_free_bytes: int = Field(256 * 1024**2, ge=0, description="free-disk watermark of the spool")

    _ae = field_validator("ae_title")(_check_ae_title)

    @property
    def spool_dir(self) -> Path:
        return self.storage_dir / "spool"

    @property
    def reports_dir(self) -> Path:
        return self.storage_dir / "reports"

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.storage_dir / 'gate.db').as_posix()}"


# Environment overrides: GATE_PORT=11113, GATE_DATABASE_URL=..., nested keys with "__":
# GATE_DESTINATIONS__PACS__PORT=4243.
_ENV_PREFIX = "GATE_"


def _apply_env(data: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    for key, value in environ.items():
        if not key.startswith(_ENV_PREFIX):
            continue
        path = key[len(_ENV_PREFIX) :].lower().split("__")
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {key} overrides a non-mapping setting")
        node[path[-1]] = yaml.safe_load(value) if value else value
    return data


def load_settings(path: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read settings from ``path`` (if given and present), then apply GATE_* overrides.

    Relative paths in the file are taken relative to the file's directory, so a gate started from
    another working directory still finds its spool.
    """
    data: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        data = loaded
        base = path.resolve().parent
    data = _apply_env(data, dict(os.environ if environ is None else environ))
    try:
        settings = Settings.model_validate(data)
    except ValueError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from exc
    updates: dict[str, Any] = {}
    for field in ("storage_dir", "model_dir"):
        value = getattr(settings, field)
        if not value.is_absolute():
            updates[field] = (base / value).resolve()
    if settings.database_url and settings.database_url.startswith("sqlite:///./"):
        rel = settings.database_url[len("sqlite:///") :]
        updates["database_url"] = f"sqlite:///{(base / rel).resolve().as_posix()}"
    return settings.model_copy(update=updates)
