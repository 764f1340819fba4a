"""Decoding Active Directory bind failures (pure; the Samba tests check the real messages too)."""

import pytest

from bot.directory.ad_errors import Reason, decode_bind_failure


def ad_message(code: str) -> str:
    return f"80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data {code}, v1db1"


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("52e", Reason.WRONG_PASSWORD),
        ("525", Reason.USER_NOT_FOUND),
        ("530", Reason.LOGON_HOURS),
        ("531", Reason.WORKSTATION_RESTRICTED),
        ("532", Reason.PASSWORD_EXPIRED),
        ("533", Reason.ACCOUNT_DISABLED),
        ("701", Reason.ACCOUNT_EXPIRED),
        ("773", Reason.MUST_CHANGE_PASSWORD),
        ("775", Reason.ACCOUNT_LOCKED),
    ],
)
def test_every_known_ad_code_is_decoded(code: str, reason: Reason) -> None:
    failure = decode_bind_failure(49, ad_message(code))
    assert failure.reason is reason
    assert failure.ad_code == code
    assert failure.message.endswith(".")


def test_unknown_code_is_still_a_rejection() -> None:
    failure = decode_bind_failure(49, ad_message("569"))
    assert failure.reason is Reason.CREDENTIAL_REJECTED
    assert "569" in failure.message


def test_other_results_are_not_credential_verdicts() -> None:
    failure = decode_bind_failure(
        8, "00002028: LdapErr: DSID-0C090259, comment: Transport encryption required"
    )
    assert failure.reason is Reason.BIND_REFUSED
    assert "Transport encryption required" in failure.message
