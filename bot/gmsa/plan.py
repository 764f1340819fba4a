"""`gmsa plan`: the PowerShell a domain admin runs to move a user DSA to a gMSA (printed, never run)."""

from __future__ import annotations

from collections.abc import Sequence

from bot.config import AccountConfig, SensorConfig

DEFAULT_GROUP = "MDI-gMSA-Sensors"


def _ps(value: str) -> str:
    """A single-quoted PowerShell string literal."""
    return "'" + value.replace("'", "''") + "'"


def _computer(sensor: SensorConfig) -> str:
    if "." in sensor.name:
        return f'(Get-ADComputer -Filter "DNSHostName -eq {_ps(sensor.name)}")'
    return f"(Get-ADComputer -Identity {_ps(sensor.name)})"


def _sensor_lines(sensors: Sequence[SensorConfig]) -> list[str]:
    if not sensors:
        return ["#   (no [[sensors]] are configured for this account: add their computer accounts by hand)"]
    return [
        f"#   {s.name}: generation unknown to atp-bot (a unified 3.x sensor runs as LocalSystem and uses no "
        "DSA; a classic 2.x sensor uses the gMSA)"
        if s.kind == "mdi"
        else f"#   {s.name}: ATA gateway: uses the gMSA"
        for s in sensors
    ]


def migration_plan(
    account: AccountConfig, sensors: Sequence[SensorConfig], gmsa: str, group: str = DEFAULT_GROUP
) -> list[str]:
    """The plan, line by line: comments for what to do by hand, PowerShell for the rest."""
    name = gmsa.removesuffix("$")
    members = [f"Add-ADGroupMember -Identity {_ps(group)} -Members {_computer(s)}" for s in sensors]
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
        *_sensor_lines(sensors),
    ]
