"""Microsoft Graph v1.0 for Defender for Identity: sign-in (msal), the health issues, the sensor list.
No call follows a redirect; errors name the endpoint and status, never the secret or a token."""

from bot.graph.client import GraphError, GraphHealthSource, HealthIssue, parse_health_issue
from bot.graph.sensors import GraphSensor, GraphSensorSource

__all__ = [
    "GraphError",
    "GraphHealthSource",
    "GraphSensor",
    "GraphSensorSource",
    "HealthIssue",
    "parse_health_issue",
]
