"""`gmsa plan`: the PowerShell a domain admin runs to move a user DSA to a gMSA (printed, never run)."""

from __future__ import annotations

from bot.config import AccountConfig
from bot.gmsa.core import GmsaSensor, SensorScope

DEFAULT_GROUP = "MDI-gMSA-Sensors"


def _ps(value: str) -> str:
    """A single-quoted PowerShell string literal."""
    return "'" + value.replace("'", "''") + "'"


def _computer(sensor: GmsaSensor) -> str:
    if "." in sensor.name:
        return f'(Get-ADComputer -Filter "DNSHostName -eq {_ps(sensor.name)}")'
    return f"(Get-ADComputer -Identity {_ps(sensor.name)})"


def _sensor_line(sensor: GmsaSensor, group: str) -> str:
    if sensor.gateway:
        return f"#   {sensor.name}: ATA gateway: uses the gMSA (in {group} above)"
    if sensor.generation == "2":
        return f"#   {sensor.name}: classic 2.x sensor: uses the gMSA (in {group} above)"
    if sensor.generation == "3":
        return (
            f"#   {sensor.name}: unified 3.x sensor: runs as LocalSystem and needs no DSA at all "
            f"(not added to {group})"
        )
    return (
        f"#   {sensor.name}: generation unknown (Graph lists no version for it): in {group} above, as "
        "a classic 2.x sensor uses the gMSA (a unified 3.x sensor would need no DSA)"
    )


def _sensor_lines(scope: SensorScope, group: str) -> list[str]:
    lines = [_sensor_line(s, group) for s in scope.sensors]
    if not scope.sensors:
        lines.append(
            "#   (no sensors are configured or discovered for this account: add their computers by hand)"
        )
    if scope.graph_error is not None:
        lines.append(
            f"#   Graph's sensor list could not be read ({scope.graph_error}): these are [[sensors]] only."
        )
    return lines


def already_gmsa(account: AccountConfig) -> str:
    """What `gmsa plan` says of an account that needs no migration."""
    return (
        f"account {account.id} ({account.username}) is already a gMSA: there is nothing to migrate. "
        f"Check it end to end with: atp-bot gmsa check --account {account.id}"
    )


def migration_plan(
    account: AccountConfig, scope: SensorScope, gmsa: str, group: str = DEFAULT_GROUP
) -> list[str]:
    """The plan, line by line: comments for what to do by hand, PowerShell for the rest. The group holds
    the computers of the sensors that use the DSA (unified 3.x sensors do not)."""
    name = gmsa.removesuffix("$")
    members = [f"Add-ADGroupMember -Identity {_ps(group)} -Members {_computer(s)}" for s in scope.retrieving]
    return [
        f"# Move account {account.id} ({account.username}) to the gMSA {name}$. atp-bot changes nothing:",
        "# a domain admin runs these lines in PowerShell with the ActiveDirectory module (RSAT).",
        "#",
        "# 1. A KDS root key in the forest (once per forest; domain controllers use it 10 hours later).",
        "if (-not (Get-KdsRootKey)) { Add-KdsRootKey -EffectiveImmediately }",
        "#",
        "# 2. A group with the sensors' computer accounts (Universal: it may span the forest's domains).",
        f"New-ADGroup -Name {_ps(group)} -GroupScope Universal -GroupCategory Security",
        *members,
        "#",
        "# 3. The gMSA, retrievable by that group only, with AES Kerberos keys.",
        f'New-ADServiceAccount -Name {_ps(name)} -DNSHostName "{name}.$((Get-ADDomain).DNSRoot)" '
        f"-PrincipalsAllowedToRetrieveManagedPassword {_ps(group)} -KerberosEncryptionType AES128,AES256",
        "#",
        "# 4. On each sensor (or wait 10 hours): drop the computer's old Kerberos tickets, then test.",
        f"#    klist purge -li 0x3e7; Test-ADServiceAccount -Identity {_ps(name)}",
        '# 5. If a GPO sets "Log on as a service" on the sensors, add the gMSA to it (and, with a GPO,',
        "#    NT SERVICE\\ALL SERVICES), or the sensor service will not start.",
        "# 6. Portal: Settings > Identities > Directory service accounts > Add credentials:",
        f'#    account name {name}$, domain <its DNS domain>, tick "Group managed service account".',
        f'# 7. atp-bot.toml: a new [[accounts]] with kind = "gmsa", username = "{name}$", domain and',
        "#    lookup_username; run `atp-bot gmsa check --account <its id>` until every check is ok, then",
        f"#    remove the old entry ({account.username}) in the portal.",
        "#",
        "# Sensors of this account:",
        *_sensor_lines(scope, group),
    ]
