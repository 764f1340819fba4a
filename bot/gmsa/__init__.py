"""gMSA directory service accounts: what AD says of the account, who may retrieve its password, the
forest's KDS root key, the sensor hosts' own view (over WinRM), and the migration plan."""

from bot.gmsa.check import check_gmsa, gmsa_accounts, gmsa_alert_verdicts, report_exit_code
from bot.gmsa.core import GmsaSensor, SensorScope, Status
from bot.gmsa.plan import DEFAULT_GROUP, already_gmsa, migration_plan
from bot.gmsa.scope import sensor_scope
from bot.gmsa.verdicts import describe

__all__ = [
    "DEFAULT_GROUP",
    "GmsaSensor",
    "SensorScope",
    "Status",
    "already_gmsa",
    "check_gmsa",
    "describe",
    "gmsa_accounts",
    "gmsa_alert_verdicts",
    "migration_plan",
    "report_exit_code",
    "sensor_scope",
]
