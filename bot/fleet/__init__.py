"""The sensor fleet: Graph's sensors merged with `[[sensors]]` by DNS name, each sensor's generation
(classic 2.x uses the directory service account, unified 3.x does not), the sensors an account's change
must check, and a verdict per sensor."""

from bot.fleet.inventory import (
    AccountSensors,
    Generation,
    GraphFleet,
    SensorRow,
    account_members,
    account_sensors,
    build_rows,
    check_hosts,
    checked_fleet,
    fleet_exit_code,
    generation_of,
    graph_notes,
    graph_problems,
    host_view,
    in_domain,
    member_generation,
    rows_for_results,
    unhealthy_first,
    uses_dsa,
    winrm_sensors,
)
from bot.fleet.merge import FleetMember, merge_fleet

__all__ = [
    "AccountSensors",
    "FleetMember",
    "Generation",
    "GraphFleet",
    "SensorRow",
    "account_members",
    "account_sensors",
    "build_rows",
    "check_hosts",
    "checked_fleet",
    "fleet_exit_code",
    "generation_of",
    "graph_notes",
    "graph_problems",
    "host_view",
    "in_domain",
    "member_generation",
    "merge_fleet",
    "rows_for_results",
    "unhealthy_first",
    "uses_dsa",
    "winrm_sensors",
]
