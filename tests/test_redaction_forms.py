"""Every form a secret can take on its way out is redacted: escaped, encoded, and inside base64."""

from __future__ import annotations

import base64
import html
import json
import logging
import os
import re
from urllib.parse import quote, quote_plus, urlencode
from xml.sax.saxutils import quoteattr

import pytest
from pydantic import SecretStr

from bot.infra.redaction import REDACTED, active_secret, install_record_redaction, redact, scrub, secret_forms

# What AD passwords often contain: quotes, backslashes, markup and URL metacharacters, spaces, non-ASCII
# letters (one outside the BMP, which JSON writes as a surrogate pair).
HOSTILE = "Pä\"ss\\wörd &<b>%41 + '€/ñ𝄞"


def _wrapped(value: str) -> dict[str, str]:
    data = {"Password": value, "User": "svc-atp"}
    return {
        "literal": f"saving {value} now",
        "json": json.dumps(data),
        "json (raw non-ASCII)": json.dumps(data, ensure_ascii=False),
        "json in json": json.dumps({"body": json.dumps(data)}),
        "repr": repr(data),
        "repr of json": repr(json.dumps(data)),
        "repr of UTF-8 bytes": repr(value.encode("utf-8")),
        "ascii": ascii(data),
        "quote": "/save/" + quote(value, safe=""),
        "quote keeping /": "/save/" + quote(value),
        "quote_plus form": urlencode(data),
        "quote_plus": quote_plus(value),
        "lower-case percent escapes": re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(value)),
        "html": f"<p>{html.escape(value)}</p>",
        "xml text": f"<Password>{html.escape(value, quote=False)}</Password>",
        "xml attribute": f"<Account Password={quoteattr(value)}/>",
        "html numeric": html.escape(value).encode("ascii", "xmlcharrefreplace").decode(),
    }


@pytest.mark.parametrize(("form", "text"), list(_wrapped(HOSTILE).items()))
def test_escaped_and_encoded_forms_are_scrubbed(form: str, text: str) -> None:
    cleaned = scrub(text, HOSTILE)
    assert REDACTED in cleaned
    for leaked in secret_forms(HOSTILE):
        assert leaked not in cleaned, form


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16-le"])
@pytest.mark.parametrize("before", range(4))
@pytest.mark.parametrize("after", range(3))
def test_base64_inside_a_longer_encoding_is_scrubbed_at_every_alignment(
    encoding: str, before: int, after: int
) -> None:
    blob = os.urandom(before) + HOSTILE.encode(encoding) + os.urandom(after)
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        text = encode(blob).decode("ascii")
        cleaned = scrub(text, HOSTILE)
        assert REDACTED in cleaned
        # At most the characters shared with the neighbouring bytes remain: 2 before, 3 after (padding).
        assert len(cleaned) - len(REDACTED) <= (-(-before * 4 // 3)) + 2 + 3 + (after * 4 // 3) + 2


def test_a_standalone_base64_encoding_is_scrubbed_whole() -> None:
    for data in (HOSTILE.encode("utf-8"), HOSTILE.encode("utf-16-le")):
        assert scrub(f"auth {base64.b64encode(data).decode()} end", HOSTILE) == f"auth {REDACTED} end"


def test_the_log_filter_uses_every_form(caplog: pytest.LogCaptureFixture) -> None:
    install_record_redaction()  # as every entry point does
    caplog.set_level(logging.DEBUG)
    log = logging.getLogger("test.redaction.forms")
    with active_secret(SecretStr(HOSTILE)):
        for form, text in _wrapped(HOSTILE).items():
            log.info("%s: %s", form, text)
        assert redact(json.dumps({"p": HOSTILE})) == json.dumps({"p": REDACTED})
    for record in caplog.records:
        for leaked in secret_forms(HOSTILE):
            assert leaked not in record.getMessage()
    assert redact(HOSTILE) == HOSTILE  # no longer active


def test_unrelated_text_is_left_alone() -> None:
    text = "HTTP 500 Internal Server Error (312 bytes) from https://center.contoso.test"
    assert scrub(text, HOSTILE) == text
    assert scrub(text, "") == text
