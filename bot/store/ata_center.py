"""The ATA Center backend: update the directory services credential in the Center's configuration.

Microsoft documents this change only as a console procedure (Configuration > Directory services >
Password > Save). The console itself reads and writes the Center's configuration through
`/api/management/systemProfiles/...`, which Microsoft does not document as an API; the field names
below come from community tooling (see docs/store.md). They are kept in this one block so that a
different ATA version needs a change in one place only.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from pathlib import Path
from typing import Any

import requests
from pydantic import SecretStr
from requests_ntlm import HttpNtlmAuth

from bot.config import AccountName, AtaCenterConfig, ConfigError, Settings
from bot.infra.redaction import scrub
from bot.infra.redirects import describe_redirect, redirect_target
from bot.store.base import BackendName, CredentialMetadata, StoreError, configured_account
from bot.store.ledger import MetadataLedger

log = logging.getLogger(__name__)

# --- ATA Center configuration fields (ATA 1.8/1.9; not documented by Microsoft, see docs/store.md) ---
# GET returns the Center's system profile as JSON; POST of the whole, modified profile to the same
# path replaces it.
PROFILE_PATH = "/api/management/systemProfiles/center"
# The object in the profile that holds the directory services (domain connectivity) account.
CREDENTIAL_SECTION = "GatewayCommonConfiguration"
ACCOUNT_NAME_FIELD = "DirectoryServicesClientAccountName"
ACCOUNT_DOMAIN_FIELD = "DirectoryServicesClientAccountDomainName"
# The password: the Center returns it encrypted; a client sends {PASSWORD_PLAIN_KEY: "<new password>"}
# in its place and the Center encrypts it on save.
PASSWORD_FIELD = "DirectoryServicesClientAccountPasswordEncrypted"  # noqa: S105 (a field name)
PASSWORD_PLAIN_KEY = "Password"  # noqa: S105 (a field name)
# --- end of ATA Center fields ---

BODY_LOG_LIMIT = 2000


def _status(code: int) -> str:
    """The code with its standard phrase: the peer's own reason phrase is its text, never repeated."""
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


def _matches(profile_user: str, profile_domain: str, account: AccountName) -> bool:
    """The Center stores the user name and the DNS domain; a NetBIOS domain matches its first label."""
    if profile_user.lower() != account.user.lower():
        return False
    domain, wanted = profile_domain.lower(), account.domain.lower()
    return domain == wanted or domain.split(".", 1)[0] == wanted


class AtaCenterStore:
    def __init__(self, config: AtaCenterConfig, settings: Settings, ledger_path: Path) -> None:
        self._config = config
        self._settings = settings
        self._ledger = MetadataLedger(ledger_path, "ata-center")

    @property
    def backend(self) -> BackendName:
        return "ata-center"

    @property
    def profile_url(self) -> str:
        return self._config.url + PROFILE_PATH

    def _session(self) -> requests.Session:
        try:
            password = self._config.password()
        except ConfigError as exc:
            raise StoreError(exc.problems[0], reason="config") from None
        session = requests.Session()
        session.auth = HttpNtlmAuth(self._config.username, password.get_secret_value())
        return session

    @property
    def _verify(self) -> bool | str:
        # Passed on every request: a session-wide setting would lose to $REQUESTS_CA_BUNDLE.
        if not self._config.tls_verify:
            return False
        return str(self._config.ca_file) if self._config.ca_file else True

    def _call(
        self, session: requests.Session, method: str, secret: str, body: bytes | None = None
    ) -> requests.Response:
        url = self.profile_url
        try:
            response = session.request(
                method,
                url,
                data=body,
                headers={"Content-Type": "application/json"} if body is not None else None,
                timeout=self._config.timeout,
                verify=self._verify,
                allow_redirects=False,
            )
        except requests.exceptions.SSLError as exc:
            raise StoreError(
                f"TLS verification of the ATA Center {self._config.url} failed "
                f"(set store.ata_center.ca_file to the CA that issued its certificate): {exc}",
                reason="tls",
            ) from None
        except requests.exceptions.Timeout:
            maybe = "; the password may or may not have been saved" if method == "POST" else ""
            raise StoreError(
                f"the ATA Center {self._config.url} did not answer {method} "
                f"within {self._config.timeout:g} s{maybe}",
                reason="unreachable",
            ) from None
        except requests.exceptions.RequestException as exc:
            raise StoreError(
                f"cannot reach the ATA Center {self._config.url}: {type(exc).__name__}", reason="unreachable"
            ) from None
        log.debug("ATA Center %s %s: HTTP %s", method, url, response.status_code)
        target = redirect_target(response.status_code, url, response.headers.get("Location"))
        if target is not None:
            raise StoreError(
                f"the ATA Center answered {method} {PROFILE_PATH} with an "
                f"{scrub(describe_redirect(response.status_code, target), secret)} "
                "(check store.ata_center.url)",
                reason="bad-response",
            )
        if response.status_code in (401, 403):
            raise StoreError(
                f"the ATA Center refused {method} {PROFILE_PATH} for {self._config.username} "
                f"(HTTP {response.status_code}): check store.ata_center.username and its password, "
                "and that the account is an ATA administrator",
                reason="auth",
            )
        if not response.ok:
            log.debug(
                "ATA Center %s %s answer: %s", method, url, scrub(response.text, secret)[:BODY_LOG_LIMIT]
            )
            raise StoreError(
                f"the ATA Center answered {method} {PROFILE_PATH} with HTTP {_status(response.status_code)} "
                f"({len(response.content)} bytes, logged at DEBUG)",
                reason="rejected",
            )
        return response

    def _section(self, profile: Any) -> dict[str, Any]:
        section = profile.get(CREDENTIAL_SECTION) if isinstance(profile, dict) else None
        if not isinstance(section, dict):
            raise StoreError(
                f"unexpected answer from the ATA Center: the profile has no {CREDENTIAL_SECTION} object "
                "(is this an ATA 1.8/1.9 Center?)",
                reason="bad-response",
            )
        for field in (ACCOUNT_NAME_FIELD, ACCOUNT_DOMAIN_FIELD):
            if not isinstance(section.get(field), str):
                raise StoreError(
                    f"unexpected answer from the ATA Center: {CREDENTIAL_SECTION}.{field} is missing "
                    "or not a string",
                    reason="bad-response",
                )
        return section

    def save(self, account_id: str, password: SecretStr, actor: str) -> CredentialMetadata:
        account = configured_account(self._settings, account_id).name
        secret = password.get_secret_value()
        with self._session() as session:
            response = self._call(session, "GET", secret)
            try:
                profile = response.json()
            except ValueError:
                raise StoreError(
                    f"unexpected answer from the ATA Center: GET {PROFILE_PATH} did not return JSON",
                    reason="bad-response",
                ) from None
            section = self._section(profile)
            user, domain = section[ACCOUNT_NAME_FIELD], section[ACCOUNT_DOMAIN_FIELD]
            if not _matches(user, domain, account):
                found = scrub(f"{user}@{domain}", secret)
                raise StoreError(
                    f"the ATA Center's directory services account is {found}, not {account.raw}; "
                    "refusing to overwrite another account's password",
                    reason="config",
                )
            section[PASSWORD_FIELD] = {PASSWORD_PLAIN_KEY: secret}
            self._call(session, "POST", secret, json.dumps(profile).encode("utf-8"))
        log.info("saved the credential of %s in the ATA Center %s", account_id, self._config.url)
        return self._ledger.record(account_id, actor)

    def read(self, account_id: str) -> SecretStr | None:
        """The ATA Center returns the password only encrypted with its own certificate."""
        return None

    def metadata(self, account_id: str) -> CredentialMetadata | None:
        return self._ledger.get(account_id)
