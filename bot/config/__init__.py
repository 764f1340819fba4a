"""Settings from the TOML file, one module per section; every name other code uses is re-exported here,
so `from bot.config import Settings` (and the rest) keeps working."""

from bot.config.accounts import (
    ACCOUNT_ID_PATTERN,
    GMSA_NAME_PATTERN,
    AccountConfig,
    AccountName,
    DomainController,
    LockoutGuardConfig,
    password_refusal,
)
from bot.config.audit import (
    AuditConfig,
)
from bot.config.base import (
    CONFIG_ENV,
    DEFAULT_CONFIG_NAME,
    ConfigError,
    SecretSource,
    UsageError,
    parse_listen,
    read_secret,
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
    read_config_text,
    resolve_config_path,
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
]
