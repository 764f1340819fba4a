"""Settings from the TOML file, one module per section; every name other code uses is re-exported here,
so `from bot.config import Settings` (and the rest) keeps working.

The re-exports are loaded on first use (PEP 562), not at `import bot.config`: importing any submodule
runs this file first, and the command line's start (`atp-bot --help`, `atp-bot health`) must not build
every section's model. It imports the pydantic-free bot.config.core directly.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.config.accounts import (
        ACCOUNT_ID_PATTERN,
        GMSA_NAME_PATTERN,
        AccountConfig,
        AccountName,
        DomainController,
        LockoutGuardConfig,
        password_refusal,
    )
    from bot.config.approvals import ApprovalsConfig
    from bot.config.audit import (
        AuditConfig,
    )
    from bot.config.base import (
        SecretSource,
        read_secret,
    )
    from bot.config.core import (
        CONFIG_ENV,
        DEFAULT_CONFIG_NAME,
        ConfigError,
        UsageError,
        parse_listen,
        read_config_text,
        resolve_config_path,
    )
    from bot.config.graph import (
        DEFAULT_HEALTH_ISSUE_PATTERNS,
        GraphConfig,
    )
    from bot.config.scheduler import (
        SchedulerConfig,
    )
    from bot.config.sensors import (
        GMSA_LOG_SIGNATURES,
        SensorChecksConfig,
        SensorConfig,
        SensorKind,
        WinRMConfig,
        WinRMTransport,
        parse_winrm_endpoint,
    )
    from bot.config.service import (
        LoggingConfig,
        ObservabilityConfig,
    )
    from bot.config.settings import (
        ConfigSource,
        Settings,
        format_validation_error,
        insecure_settings,
        load_settings,
        parse_settings,
        sensor_transport_warnings,
    )
    from bot.config.slack import (
        SLACK_APP_TOKEN_ENV,
        SLACK_BOT_TOKEN_ENV,
        SLACK_CHANNEL_PATTERN,
        SLACK_SECRET_ENVS,
        SLACK_SIGNING_SECRET_ENV,
        SLACK_USER_PATTERN,
        SLACK_USERGROUP_PATTERN,
        SlackConfig,
    )
    from bot.config.store import (
        AtaCenterConfig,
        CommandStoreConfig,
        StoreBackend,
        StoreConfig,
    )

__all__ = [
    "ACCOUNT_ID_PATTERN",
    "CONFIG_ENV",
    "DEFAULT_CONFIG_NAME",
    "DEFAULT_HEALTH_ISSUE_PATTERNS",
    "GMSA_LOG_SIGNATURES",
    "GMSA_NAME_PATTERN",
    "SLACK_APP_TOKEN_ENV",
    "SLACK_BOT_TOKEN_ENV",
    "SLACK_CHANNEL_PATTERN",
    "SLACK_SECRET_ENVS",
    "SLACK_SIGNING_SECRET_ENV",
    "SLACK_USERGROUP_PATTERN",
    "SLACK_USER_PATTERN",
    "AccountConfig",
    "AccountName",
    "ApprovalsConfig",
    "AtaCenterConfig",
    "AuditConfig",
    "CommandStoreConfig",
    "ConfigError",
    "ConfigSource",
    "DomainController",
    "GraphConfig",
    "LockoutGuardConfig",
    "LoggingConfig",
    "ObservabilityConfig",
    "SchedulerConfig",
    "SecretSource",
    "SensorChecksConfig",
    "SensorConfig",
    "SensorKind",
    "Settings",
    "SlackConfig",
    "StoreBackend",
    "StoreConfig",
    "UsageError",
    "WinRMConfig",
    "WinRMTransport",
    "format_validation_error",
    "insecure_settings",
    "load_settings",
    "parse_listen",
    "parse_settings",
    "parse_winrm_endpoint",
    "password_refusal",
    "read_config_text",
    "read_secret",
    "resolve_config_path",
    "sensor_transport_warnings",
]


def __getattr__(name: str) -> object:
    """The first re-exported name asked for loads every section (as the eager imports did before)."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    for submodule in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{submodule.name}")
        globals().update({export: getattr(module, export) for export in __all__ if hasattr(module, export)})
    return globals()[name]
