"""`[graph]`: Defender for Identity health issues from Microsoft Graph (optional)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from bot.config.base import SecretSource, StrictModel, read_private_file
from bot.config.core import ConfigError

DEFAULT_HEALTH_ISSUE_PATTERNS = ["directory services user credentials", "directory service account"]


class GraphConfig(StrictModel):
    """`[graph]`: optional Defender for Identity health issues from Microsoft Graph (app credentials)."""

    enabled: bool = False
    tenant_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9.-]{1,128}$")] | None = None
    client_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{1,128}$")] | None = None
    client_secret_env: str | None = None
    client_secret_file: Path | None = None
    # Or sign in with a certificate (MSAL's certificate credential): the PEM certificate registered for the
    # app, and its unencrypted PEM private key (mode 0600, like every key file).
    client_certificate_file: Path | None = None
    client_certificate_key_file: Path | None = None
    authority_url: str = "https://login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com/v1.0"
    ca_file: Path | None = None
    timeout: Annotated[float, Field(gt=0, le=300)] = 30.0
    # List the sensors from Graph (needs SecurityIdentitiesSensors.Read.All as well) and merge them with
    # [[sensors]] by DNS name; see docs/graph.md.
    discover_sensors: bool = False
    # After a saved change, watch the DSA health issues (needs enabled = true): post in the change's thread
    # when MDI closes them, or that one is still open after this many minutes; polled this often.
    issue_watch_minutes: Annotated[int, Field(ge=1, le=7 * 24 * 60)] = 60
    issue_watch_poll_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 5
    # A health issue is about the directory service account when its display name contains one of these
    # (case-insensitive).
    issue_patterns: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] = (
        DEFAULT_HEALTH_ISSUE_PATTERNS
    )

    @field_validator("authority_url", "graph_url")
    @classmethod
    def _https_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment or parts.username:
            raise ValueError(f"{value!r}: must be an https:// URL without query or credentials")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> GraphConfig:
        self.client_secret_source.check()
        self._one_credential()
        if self.enabled or self.discover_sensors:
            missing = [
                name
                for name, value in (
                    ("tenant_id", self.tenant_id),
                    ("client_id", self.client_id),
                    (
                        "client_secret_env or client_secret_file (or client_certificate_file and "
                        "client_certificate_key_file)",
                        self.client_secret_source.configured or self.uses_certificate,
                    ),
                )
                if not value
            ]
            if missing:
                switch = "enabled" if self.enabled else "discover_sensors"
                raise ValueError(f"{switch} = true needs {', '.join(missing)}")
        return self

    def _one_credential(self) -> None:
        """A client secret or a certificate, never both; a certificate always with its key."""
        if (self.client_certificate_file is None) != (self.client_certificate_key_file is None):
            raise ValueError(
                "client_certificate_file and client_certificate_key_file go together: the app's "
                "certificate and its private key"
            )
        if self.uses_certificate and self.client_secret_source.configured:
            raise ValueError(
                "sign in with a client secret (client_secret_env or client_secret_file) or a "
                "certificate (client_certificate_file and client_certificate_key_file), not both"
            )

    @property
    def uses_certificate(self) -> bool:
        return self.client_certificate_file is not None and self.client_certificate_key_file is not None

    @property
    def client_secret_source(self) -> SecretSource:
        return SecretSource(
            "graph.client_secret", "client_secret", self.client_secret_env, self.client_secret_file
        )

    def client_secret(self) -> SecretStr:
        return self.client_secret_source.read()

    def client_certificate(self) -> tuple[str, SecretStr]:
        """The certificate (PEM) and its private key (PEM, from a file only its owner may read)."""
        if self.client_certificate_file is None or self.client_certificate_key_file is None:
            raise ConfigError(["graph: no client_certificate_file and client_certificate_key_file"])
        try:
            certificate = self.client_certificate_file.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not a PEM file"
            raise ConfigError(
                [f"graph.client_certificate_file: cannot read {self.client_certificate_file}: {reason}"]
            ) from None
        return certificate, read_private_file(
            "graph.client_certificate_key_file", self.client_certificate_key_file
        )
