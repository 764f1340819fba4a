"""The sensor fleet: Graph's sensors merged with `[[sensors]]` by DNS name, each sensor's generation
(classic 2.x uses the directory service account, unified 3.x does not), the sensors an account's change
must check, a verdict per sensor, whether each directory service account can be retired, and the servers
Graph says run none (sensor candidates)."""

from bot.fleet.candidates import CandidateRows, candidate_rows, candidates_unread, listed_candidates
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
    graph_unread,
    host_view,
    in_domain,
    member_generation,
    rows_for_results,
    unchecked_rows,
    unhealthy_first,
    uses_dsa,
    winrm_sensors,
)
from bot.fleet.merge import FleetMember, merge_fleet
from bot.fleet.retirement import REMOVAL_STEP, DsaStatus, RetirementVerdict, dsa_statuses

__all__ = [
    "REMOVAL_STEP",
    "AccountSensors",
    "CandidateRows",
    "DsaStatus",
    "FleetMember",
    "Generation",
    "GraphFleet",
    "RetirementVerdict",
    "SensorRow",
    "account_members",
    "account_sensors",
    "build_rows",
    "candidate_rows",
    "candidates_unread",
    "check_hosts",
    "checked_fleet",
    "dsa_statuses",
    "fleet_exit_code",
    "generation_of",
    "graph_notes",
    "graph_problems",
    "graph_unread",
    "host_view",
    "in_domain",
    "listed_candidates",
    "member_generation",
    "merge_fleet",
    "rows_for_results",
    "unchecked_rows",
    "unhealthy_first",
    "uses_dsa",
    "winrm_sensors",
]
