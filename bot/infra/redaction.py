"""Keeps secrets out of log output.

Code that handles a password registers it for the duration of the work (`active_secret`); the logging
filter installed by `bot.infra.logging_setup` replaces every registered value in a formatted record. This is
defence in depth: the code itself never logs a secret, and the tests prove it with a canary.

A peer may echo a secret back transformed (JSON- or XML-escaped, percent-encoded, in base64), so a
secret is registered in every form it can take on the way out (`secret_forms`); the log filter and
every scrubber of peer output (`scrub`) replace all of them.

Some secrets are logged by libraries before atp-bot ever sees them: Bolt logs the whole request body when
a signature check fails and slack_sdk logs request parameters at DEBUG. Those are caught by shape
(`redact_patterns`): Slack tokens, bearer credentials, `token` fields, and every `values` object (a
modal's `view.state.values`, where a typed password travels) in JSON, Python-repr or URL-encoded text.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from urllib.parse import quote, quote_plus

from pydantic import SecretStr

REDACTED = "[REDACTED]"

_lock = threading.Lock()
_active: Counter[str] = Counter()
_forms: dict[str, frozenset[str]] = {}
_active_forms: tuple[str, ...] = ()  # every form of every active secret, longest first

# Shorter base64 fragments of a (very short) secret would match unrelated text; they are not registered.
MIN_BASE64_CORE = 4
_URL_SAFE = str.maketrans("+/", "-_")


def _json_forms(value: str) -> set[str]:
    """JSON string bodies: Python's (`\\u00e9` or raw non-ASCII) and the HTML-safe style of .NET's
    encoders, which also writes `"`, `&`, `<`, `>`, `'`, `+` and non-ASCII as `\\uXXXX`."""
    forms = {json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    for digits in ("{:04x}", "{:04X}"):
        forms.add("".join(_json_unicode_escape(char, digits) for char in value))
    return forms


def _json_unicode_escape(char: str, digits: str) -> str:
    if char == "\\":
        return "\\\\"
    if char.isascii() and char.isprintable() and char not in "\"&<>'+`":
        return char
    units = char.encode("utf-16-be", "surrogatepass")
    return "".join("\\u" + digits.format(int.from_bytes(units[i : i + 2])) for i in range(0, len(units), 2))


def _repr_forms(value: str) -> set[str]:
    """Python `repr`/`ascii` of the string, and `repr` of its UTF-8 bytes, without the quotes."""
    return {repr(value)[1:-1], ascii(value)[1:-1], repr(value.encode("utf-8", "surrogatepass"))[2:-1]}


def _percent_forms(value: str) -> set[str]:
    """`quote` (with and without `/` kept), `quote_plus`, `encodeURIComponent`, in both hex cases."""
    encoded = {
        quote(value, safe=""),
        quote(value),
        quote_plus(value, safe=""),
        quote(value, safe="!'()*~"),
    }
    lower = {re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), form) for form in encoded}
    return encoded | lower


def _markup_forms(value: str) -> set[str]:
    """XML/HTML escaping, with each way encoders write (or leave) the two quotes, each also with
    non-ASCII as `&#NNN;`."""
    text = html.escape(value, quote=False)
    forms = {
        text.replace('"', double).replace("'", single)
        for double in ('"', "&quot;", "&#34;")
        for single in ("'", "&#x27;", "&apos;", "&#39;")
    }
    return forms | {form.encode("ascii", "xmlcharrefreplace").decode("ascii") for form in forms}


def _base64_core(data: bytes, offset: int) -> str:
    """The base64 characters that depend on `data` alone when it starts `offset` (0-2) bytes into a
    longer encoded string: the characters shared with the neighbouring bytes are left out."""
    encoded = base64.b64encode(bytes(offset) + data).decode("ascii").rstrip("=")
    first = -(-8 * offset // 6)  # ceil: the first character without bits of the bytes before
    last = 8 * (offset + len(data)) // 6  # floor: past the last character without bits of the bytes after
    return encoded[first:last]


def _base64_forms(value: str) -> set[str]:
    """Base64 (standard and URL-safe) of the UTF-8 and UTF-16-LE bytes: the whole encoding, and the
    three alignments in which the bytes can sit inside a longer encoded string."""
    forms = set()
    for data in (value.encode("utf-8", "surrogatepass"), value.encode("utf-16-le", "surrogatepass")):
        forms.add(base64.b64encode(data).decode("ascii"))
        forms.update(
            core for offset in range(3) if len(core := _base64_core(data, offset)) >= MIN_BASE64_CORE
        )
    return forms | {form.translate(_URL_SAFE) for form in forms}


_EXPANSIONS: tuple[Callable[[str], set[str]], ...] = (
    _json_forms,
    _repr_forms,
    _percent_forms,
    _markup_forms,
    _base64_forms,
)


def secret_forms(value: str) -> frozenset[str]:
    """Every form `value` can take on its way out: literal, JSON-escaped, `repr` (and those two applied
    twice, as when a JSON body is quoted in a log line), percent-encoded, XML/HTML-escaped and base64."""
    forms = {value}
    for expand in _EXPANSIONS:
        try:
            forms |= expand(value)
        except UnicodeEncodeError:  # percent-encoding a lone surrogate (refused as a password anyway)
            continue
    quoted = _json_forms(value) | _repr_forms(value)
    forms |= {twice for form in quoted for twice in _json_forms(form) | _repr_forms(form)}
    return frozenset(form for form in forms if form)


def _longest_first(forms: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(forms), key=len, reverse=True))


def _refresh_active_forms() -> None:
    global _active_forms
    _active_forms = _longest_first(form for value in _active for form in _forms[value])


@contextmanager
def active_secret(secret: SecretStr) -> Iterator[None]:
    """Redact `secret`, in every form, from every log record emitted while the block runs."""
    value = secret.get_secret_value()
    if not value:
        yield
        return
    forms = secret_forms(value)
    with _lock:
        _active[value] += 1
        _forms[value] = forms
        _refresh_active_forms()
    try:
        yield
    finally:
        with _lock:
            _active[value] -= 1
            if _active[value] <= 0:
                del _active[value], _forms[value]
                _refresh_active_forms()


def _replace(text: str, forms: Iterable[str]) -> str:
    for form in forms:
        if form in text:
            text = text.replace(form, REDACTED)
    return text


def scrub(text: str, secret: str) -> str:
    """`text` (a peer's output) with every form of `secret`, and of every active secret, replaced."""
    with _lock:
        active = _active_forms
    return _replace(text, _longest_first((*secret_forms(secret), *active)) if secret else active)


_TOKEN = re.compile(r"\b(?:xox[a-z]|xapp|xoxe(?:\.xox[a-z])?|xwfp)-[A-Za-z0-9-]+")
_BEARER = re.compile(r"(?i)\b(Bearer\s+)[^\s'\",}]+")
_TOKEN_FIELD = re.compile(
    r"""(["']token["']\s*:\s*["'])[^"']*"""
    r"""|((?:^|[?&\s])token=)[^&\s'",]+"""
    r"""|((?i:%22token%22(?:\+|%20)*%3A(?:\+|%20)*%22))[A-Za-z0-9._-]+"""
)
# The key of a `values` object in JSON/repr text (`"values": {`) or URL-encoded JSON (`%22values%22%3A%7B`).
_VALUES_KEY = re.compile(
    r"""(?i)(?:(["'])values\1\s*:\s*(?=\{)|%22values%22(?:\+|%20)*%3A(?:\+|%20)*(?=%7B))"""
)
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def _units(text: str, start: int, url_encoded: bool) -> Iterator[tuple[int, str]]:
    """Yield (end offset, decoded character) from `start`, decoding %XX escapes in URL-encoded text."""
    index = start
    while index < len(text):
        if url_encoded and text[index] == "%" and _PERCENT_ESCAPE.match(text, index):
            yield index + 3, chr(int(text[index + 1 : index + 3], 16))
            index += 3
        else:
            yield index + 1, text[index]
            index += 1


def _object_end(text: str, start: int, url_encoded: bool) -> int:
    """The offset just past the JSON/repr object opening at `start`; the text's end if it never closes.

    Braces inside quoted strings do not count, so a password like `a}"b` cannot end the object early.
    """
    depth, quote, escaped = 0, "", False
    for end, char in _units(text, start, url_encoded):
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return end
    return len(text)


def _redact_values(text: str) -> str:
    pieces, position = [], 0
    while match := _VALUES_KEY.search(text, position):
        url_encoded = match.group(0).startswith("%")
        end = _object_end(text, match.end(), url_encoded)
        pieces.append(text[position : match.end()] + ("%7B" if url_encoded else "{") + REDACTED)
        pieces.append("%7D" if url_encoded else "}")
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


def redact_patterns(text: str) -> str:
    """Redact secrets recognisable by their shape (see the module docstring)."""
    if "values" in text.lower():
        text = _redact_values(text)
    text = _TOKEN.sub(REDACTED, text)
    text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    return _TOKEN_FIELD.sub(lambda m: (m.group(1) or m.group(2) or m.group(3)) + REDACTED, text)


def redact(text: str) -> str:
    """Redact every form of the active secrets, then everything `redact_patterns` recognises."""
    with _lock:
        forms = _active_forms
    return redact_patterns(_replace(text, forms))


class RedactingFilter(logging.Filter):
    """A filter that rewrites a record's message and traceback without secrets (see `redact`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_redacting_factory_installed = False


def install_record_redaction() -> None:
    """Redact every log record as it is created, so that every handler (not only atp-bot's) gets it clean.

    Idempotent. A handler filter alone would leave library records unredacted for other handlers
    (a test's capture handler, a log shipper added later).
    """
    global _redacting_factory_installed
    with _lock:
        if _redacting_factory_installed:
            return
        _redacting_factory_installed = True
    previous = logging.getLogRecordFactory()
    redacting = RedactingFilter()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        redacting.filter(record)
        return record

    logging.setLogRecordFactory(factory)
