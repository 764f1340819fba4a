"""The Kerberos check offers AES only: what libkrb5 really puts on the wire, read by a loopback KDC of our
own (lab/kdc.py, decoded with pyasn1), and what a KDC that offers only RC4 or DES3 gets (nothing keyed).
And the `kerberos_check` key that decides what a password no KDC confirmed gets.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.config import ConfigError, load_settings
from bot.directory.kerberos_check import KdcAnswer, ask_kdc
from lab.kdc import AES_ENCTYPES, DES3_CBC_SHA1, RC4_HMAC, FakeKdc, fake_kdc
from tests.conftest import CANARY

PRINCIPAL = "svc-atp@CONTOSO.TEST"
TIMEOUT = 30.0


def ask(kdc: FakeKdc) -> KdcAnswer:
    return ask_kdc(PRINCIPAL, SecretStr(CANARY), [f"127.0.0.1:{kdc.port}"], TIMEOUT).answer


@pytest.mark.parametrize("aes", sorted(AES_ENCTYPES))
def test_the_as_req_offers_aes_only_and_preauthenticates_with_it(aes: int) -> None:
    with fake_kdc([aes]) as kdc:
        answer = ask(kdc)

    assert answer is KdcAnswer.REJECTED, "the fake KDC refuses every timestamp: it holds no keys"
    assert kdc.undecodable == 0
    assert [r.preauthenticated for r in kdc.requests] == [False, True]
    for request in kdc.requests:
        assert request.client == "svc-atp"
        assert request.etypes == (18, 17, 20, 19), "aes256/aes128, SHA-1 then SHA-2, and nothing else"
    assert kdc.requests[1].timestamp_etype == aes


@pytest.mark.parametrize(
    "offered", [[RC4_HMAC], [DES3_CBC_SHA1], [RC4_HMAC, DES3_CBC_SHA1], [25, 26], []], ids=str
)
def test_a_kdc_offering_no_aes_gets_no_preauthentication(offered: list[int]) -> None:
    with fake_kdc(offered) as kdc:
        verdict = ask_kdc(PRINCIPAL, SecretStr(CANARY), [f"127.0.0.1:{kdc.port}"], TIMEOUT)

    assert verdict.answer is KdcAnswer.UNAVAILABLE, "no verdict: neither confirmed nor stale"
    assert CANARY not in repr(verdict)
    assert "no AES encryption type" in verdict.detail and "no pre-authentication" in verdict.detail
    assert kdc.undecodable == 0
    assert len(kdc.requests) == 1, kdc.requests
    assert not kdc.requests[0].preauthenticated, "no PA-ENC-TIMESTAMP keyed with RC4 (the NT hash) or DES3"
    assert set(kdc.requests[0].etypes) <= AES_ENCTYPES


def test_an_account_without_aes_keys_gets_no_verdict() -> None:
    """A KDC that holds only RC4 keys for the account answers KDC_ERR_ETYPE_NOSUPP to an AES-only request,
    as AD does for an account whose password was last set before the domain had AES."""
    with fake_kdc([RC4_HMAC], honest=True) as kdc:
        verdict = ask_kdc(PRINCIPAL, SecretStr(CANARY), [f"127.0.0.1:{kdc.port}"], TIMEOUT)
    assert verdict.answer is KdcAnswer.UNAVAILABLE and "no AES encryption type" in verdict.detail
    assert [r.preauthenticated for r in kdc.requests] == [False]


@pytest.mark.parametrize("etype", [RC4_HMAC, DES3_CBC_SHA1])
def test_a_reply_in_rc4_or_des3_is_not_accepted(etype: int) -> None:
    """A KDC answering at once, without asking for pre-authentication, with an AS-REP in RC4 or DES3: the
    library refuses its enctype before deriving any key (it never tries the NT hash on it)."""
    with fake_kdc([], reply_etype=etype) as kdc:
        verdict = ask_kdc(PRINCIPAL, SecretStr(CANARY), [f"127.0.0.1:{kdc.port}"], TIMEOUT)
    assert verdict.answer is KdcAnswer.UNAVAILABLE and "no AES encryption type" in verdict.detail
    assert [r.preauthenticated for r in kdc.requests] == [False]


def test_aes_is_chosen_when_a_kdc_offers_rc4_first() -> None:
    with fake_kdc([RC4_HMAC, DES3_CBC_SHA1, 17]) as kdc:
        ask(kdc)
    assert [r.timestamp_etype for r in kdc.requests] == [None, 17]


def test_kerberos_check_defaults_to_best_effort_and_refuses_other_values(tmp_path: Path) -> None:
    config = tmp_path / "atp-bot.toml"
    account = (
        '[[accounts]]\nid = "acct"\nusername = "svc@contoso.test"\ndomain_controllers = ["ldaps://dc1"]\n'
    )
    config.write_text(account)
    assert load_settings(config).accounts[0].kerberos_check == "best_effort"
    config.write_text(account + 'kerberos_check = "strict"\n')
    with pytest.raises(ConfigError) as raised:
        load_settings(config)
    assert "accounts[0].kerberos_check: must be one of best_effort, required" in str(raised.value)
    assert "line 5" in str(raised.value)
