"""The sensor fleet: Graph's sensors merged with `[[sensors]]` by DNS name, each sensor's generation
(classic 2.x uses the directory service account, unified 3.x does not), the sensors an account's change
must check, and a verdict per sensor."""

from bot.fleet.inventory import (
    AccountSensors,
    FleetMember,
    Generation,
    GraphFleet,
    SensorRow,
    account_members,
    account_sensors,
    build_rows,
    discovered_sensor_config,
    fleet_exit_code,
    generation_of,
    graph_notes,
    in_domain,
    member_generation,
    merge_fleet,
    rows_for_results,
    unhealthy_first,
    uses_dsa,
)

__all__ = [
    "AccountSensors",
    "FleetMember",
    "Generation",
    "GraphFleet",
    "SensorRow",
    "account_members",
    "account_sensors",
    "build_rows",
    "discovered_sensor_config",
    "fleet_exit_code",
    "generation_of",
    "graph_notes",
    "in_domain",
    "member_generation",
    "merge_fleet",
    "rows_for_results",
    "unhealthy_first",
    "uses_dsa",
]
