"""Microsoft Graph v1.0 for Defender for Identity: sign-in (msal), the health issues, the sensor list.
No call follows a redirect, no body is read past MAX_BODY_BYTES, and every answer that cannot be used is a
GraphError; errors name the endpoint and status, never the secret or a token."""

from bot.graph.client import GraphHealthSource, HealthIssue, parse_health_issue
from bot.graph.http import MAX_BODY_BYTES, GraphError
from bot.graph.sensors import GraphSensor, GraphSensorSource

__all__ = [
    "MAX_BODY_BYTES",
    "GraphError",
    "GraphHealthSource",
    "GraphSensor",
    "GraphSensorSource",
    "HealthIssue",
    "parse_health_issue",
]
