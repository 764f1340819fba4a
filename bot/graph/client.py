"""Defender for Identity health issues from Microsoft Graph (`GET /security/identities/healthIssues`).

App-only access: an app registration with the `SecurityIdentitiesHealth.Read.All` application
permission, signed in with its client secret or certificate through MSAL (client credentials flow). Only
open issues whose display name matches `[graph].issue_patterns` (the directory service account's
credentials) are returned. Errors name the endpoint and the HTTP status, never the secret or the token.
No call follows a redirect (see bot.infra.redirects): the token request carries the client secret (or
assertion), the others the token.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import msal
import requests
from pydantic import BaseModel, ConfigDict

from bot.config import ConfigError, GraphConfig
from bot.graph.credential import client_credential
from bot.graph.http import BodyTooLarge, GraphError, Http, RedirectRefused, json_page
from bot.infra.redaction import active_secret, scrub


class HealthIssue(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    """An open Defender for Identity health issue about the directory service account (Microsoft Graph)."""

    id: str
    display_name: str
    status: str
    severity: str | None = None
    issue_type: str | None = None
    sensors: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    created: datetime | None = None


log = logging.getLogger(__name__)

HEALTH_ISSUES_PATH = "/security/identities/healthIssues"
MAX_PAGES = 50


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value if v) if isinstance(value, list) else ()


def parse_health_issue(item: dict[str, Any]) -> HealthIssue | None:
    """A healthIssue resource as a HealthIssue; None when it lacks an id or a display name."""
    issue_id, name = item.get("id"), item.get("displayName")
    if not isinstance(issue_id, str) or not isinstance(name, str):
        return None
    return HealthIssue(
        id=issue_id,
        display_name=name,
        status=str(item.get("status") or "unknown"),
        severity=str(item["severity"]) if item.get("severity") else None,
        issue_type=str(item["healthIssueType"]) if item.get("healthIssueType") else None,
        sensors=_strings(item.get("sensorDNSNames")),
        domains=_strings(item.get("domainNames")),
        created=_parse_time(item.get("createdDateTime")),
    )


def _entra_code(result: Any) -> str:
    """Entra's `AADSTS…` code of a refusal (digits only, from the peer's description), e.g. AADSTS700027
    for a certificate it does not know."""
    description = result.get("error_description") if isinstance(result, dict) else None
    found = re.search(r"\bAADSTS[0-9]{1,9}\b", description) if isinstance(description, str) else None
    return f" {found.group()}" if found else ""


class GraphHealthSource:
    """Reads open credential health issues. One MSAL app per source, so its token cache is reused."""

    def __init__(self, config: GraphConfig, *, session: requests.Session | None = None) -> None:
        if not (config.tenant_id and config.client_id):
            raise ConfigError(["graph: tenant_id and client_id are required"])
        self.config = config
        verify = str(config.ca_file) if config.ca_file else True
        self._http = Http(session or requests.Session(), verify, config.timeout)
        self._app: msal.ConfidentialClientApplication | None = None
        self._scope = f"{_origin(config.graph_url)}/.default"

    def _token(self) -> str:
        credential = client_credential(self.config)
        secret = credential.secret
        with active_secret(secret):
            try:
                if self._app is None:
                    self._app = msal.ConfidentialClientApplication(
                        self.config.client_id,
                        client_credential=credential.msal_value,
                        authority=f"{self.config.authority_url}/{self.config.tenant_id}",
                        http_client=self._http,
                        instance_discovery=False,
                    )
                result = self._app.acquire_token_for_client(scopes=[self._scope])
            except Exception as exc:  # noqa: BLE001 - MSAL parses what the sign-in endpoints send: any step may fail
                self._app = None
                # The library's words, scrubbed of the secret in every form before they are cut short.
                detail = " ".join(scrub(str(exc), secret.get_secret_value()).split())[:200]
                raise GraphError(
                    f"cannot sign in at {self.config.authority_url}: {type(exc).__name__}: {detail}"
                ) from None
        token = result.get("access_token") if isinstance(result, dict) else None
        if not isinstance(token, str):
            self._app = None  # sign in afresh next time: the credential may have been rotated meanwhile
            error = result.get("error") if isinstance(result, dict) else None
            said = " ".join(error.split())[:100] if isinstance(error, str) and error else "no access token"
            said += _entra_code(result)
            raise GraphError(
                f"sign-in at {self.config.authority_url} refused: {said} "
                f"(check tenant_id, client_id and {credential.what_to_check})"
            )
        return token

    def _get(self, url: str, token: str) -> dict[str, Any]:
        try:
            response = self._http.get(url, headers={"Authorization": f"Bearer {token}"})
        except (RedirectRefused, BodyTooLarge) as exc:
            raise GraphError(f"Graph answered {HEALTH_ISSUES_PATH} with {exc}") from None
        except requests.RequestException as exc:
            raise GraphError(f"cannot reach {_origin(url)}: {type(exc).__name__}") from None
        if response.status_code in (401, 403):
            raise GraphError(
                f"Graph refused the request ({response.status_code}): the app needs the "
                "SecurityIdentitiesHealth.Read.All application permission with admin consent"
            )
        if response.status_code != 200:
            raise GraphError(f"Graph answered HTTP {response.status_code} for {HEALTH_ISSUES_PATH}")
        return json_page(response.content, HEALTH_ISSUES_PATH)

    def health_issues(self, status: str = "open") -> list[dict[str, Any]]:
        """Every health issue with `status` (all pages), as Graph returns them."""
        token = self._token()
        url: str | None = f"{self.config.graph_url}{HEALTH_ISSUES_PATH}?$filter=status eq '{status}'"
        items: list[dict[str, Any]] = []
        for _ in range(MAX_PAGES):
            if url is None:
                return items
            page = self._get(url, token)
            items += [i for i in page["value"] if isinstance(i, dict)]
            next_link = page.get("@odata.nextLink")
            if next_link is not None and (
                not isinstance(next_link, str) or _origin(next_link) != _origin(self.config.graph_url)
            ):
                raise GraphError("Graph's next page link points to another host; not following it")
            url = next_link
        raise GraphError(f"more than {MAX_PAGES} pages of health issues; stopped")

    def close(self) -> None:
        """Drop idle connections (the source stays usable: the next call opens new ones)."""
        self._http.close()

    def credential_issues(self) -> list[HealthIssue]:
        patterns = [p.lower() for p in self.config.issue_patterns]
        found = []
        for item in self.health_issues():
            issue = parse_health_issue(item)
            if issue is None or issue.status.lower() != "open":
                continue
            if any(p in issue.display_name.lower() for p in patterns):
                found.append(issue)
        log.info("graph: %d open credential health issue(s)", len(found))
        return found
