"""The WS-Management SOAP messages of the Windows Remote Shell protocol ([MS-WSMV]), as pywinrm uses them."""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.sax.saxutils import escape

SOAP = "http://www.w3.org/2003/05/soap-envelope"
ADDRESSING = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
WSMAN = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer"
WSMAN_FAULT = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"

CREATE = f"{TRANSFER}/Create"
DELETE = f"{TRANSFER}/Delete"
COMMAND = f"{SHELL}/Command"
RECEIVE = f"{SHELL}/Receive"
SIGNAL = f"{SHELL}/Signal"
SEND = f"{SHELL}/Send"
CMD_RESOURCE = f"{SHELL}/cmd"
DONE = f"{SHELL}/CommandState/Done"
RUNNING = f"{SHELL}/CommandState/Running"
DEFAULT_MAX_ENVELOPE = 153600  # bytes; what pywinrm asks for (`w:MaxEnvelopeSize`)

# WSManFault codes Windows uses.
OPERATION_TIMEOUT = 2150858793
INVALID_SELECTORS = 2150858843
ACCESS_DENIED = 5
INTERNAL_ERROR = 2150858770
QUOTA_MAX_SHELLS = 2150859174  # ERROR_WSMAN_QUOTA_MAX_SHELLS_PPQ: MaxShellsPerUser exceeded


@dataclass(frozen=True)
class Request:
    action: str
    message_id: str
    resource_uri: str
    shell_id: str | None
    operation_timeout: float
    max_envelope: int
    body: ET.Element


class BadRequest(Exception):
    pass


def duration(text: str | None, default: float = 60.0) -> float:
    """Seconds of an xs:duration as WS-Management sends them (`PT20S`, `PT60.000S`), else `default`."""
    found = re.fullmatch(r"PT(\d+(?:\.\d+)?)S", (text or "").strip())
    return float(found.group(1)) if found else default


def _size(text: str | None) -> int:
    found = re.fullmatch(r"\d+", (text or "").strip())
    return int(found.group(0)) if found else DEFAULT_MAX_ENVELOPE


def parse(xml: bytes) -> Request:
    try:
        # The peer is the bot under test on loopback; the lab has no defusedxml dependency.
        root = ET.fromstring(xml)  # noqa: S314
    except ET.ParseError as exc:
        raise BadRequest(f"not XML: {exc}") from None
    header, body = root.find(f"{{{SOAP}}}Header"), root.find(f"{{{SOAP}}}Body")
    if root.tag != f"{{{SOAP}}}Envelope" or header is None or body is None:
        raise BadRequest("not a SOAP 1.2 envelope")
    shell_id = None
    for selector in header.iter(f"{{{WSMAN}}}Selector"):
        if selector.get("Name") == "ShellId":
            shell_id = selector.text
    return Request(
        action=(header.findtext(f"{{{ADDRESSING}}}Action") or "").strip(),
        message_id=(header.findtext(f"{{{ADDRESSING}}}MessageID") or "").strip(),
        resource_uri=(header.findtext(f"{{{WSMAN}}}ResourceURI") or "").strip(),
        shell_id=shell_id,
        operation_timeout=duration(header.findtext(f"{{{WSMAN}}}OperationTimeout")),
        max_envelope=_size(header.findtext(f"{{{WSMAN}}}MaxEnvelopeSize")),
        body=body,
    )


def envelope(action: str, relates_to: str, body: str) -> bytes:
    return (
        f'<s:Envelope xml:lang="en-US" xmlns:s="{SOAP}" xmlns:a="{ADDRESSING}" xmlns:x="{TRANSFER}" '
        f'xmlns:w="{WSMAN}" xmlns:rsp="{SHELL}" xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd">'
        f"<s:Header><a:Action>{escape(action)}</a:Action><a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID>"
        f"<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>"
        f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo></s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def fault(relates_to: str, subcode: str, reason: str, code: int, machine: str) -> bytes:
    body = (
        f"<s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>w:{subcode}</s:Value></s:Subcode>"
        f'</s:Code><s:Reason><s:Text xml:lang="en-US">{escape(reason)}</s:Text></s:Reason><s:Detail>'
        f'<f:WSManFault xmlns:f="{WSMAN_FAULT}" Code="{code}" Machine="{escape(machine)}">'
        f"<f:Message>{escape(reason)}</f:Message></f:WSManFault></s:Detail></s:Fault>"
    )
    return envelope("http://schemas.dmtf.org/wbem/wsman/1/wsman/fault", relates_to, body)


def shell_created(relates_to: str, address: str, shell_id: str) -> bytes:
    body = (
        f"<x:ResourceCreated><a:Address>{escape(address)}</a:Address><a:ReferenceParameters>"
        f"<w:ResourceURI>{CMD_RESOURCE}</w:ResourceURI><w:SelectorSet>"
        f'<w:Selector Name="ShellId">{shell_id}</w:Selector></w:SelectorSet></a:ReferenceParameters>'
        f"</x:ResourceCreated><rsp:Shell><rsp:ShellId>{shell_id}</rsp:ShellId>"
        f"<rsp:ResourceUri>{CMD_RESOURCE}</rsp:ResourceUri><rsp:InputStreams>stdin</rsp:InputStreams>"
        f"<rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell>"
    )
    return envelope(f"{TRANSFER}/CreateResponse", relates_to, body)


def command_started(relates_to: str, command_id: str) -> bytes:
    body = f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId></rsp:CommandResponse>"
    return envelope(f"{SHELL}/CommandResponse", relates_to, body)


def received(
    relates_to: str, command_id: str, streams: list[tuple[str, str, bool]], exit_code: int | None
) -> bytes:
    """`streams`: (name, base64 data, end) in order; the command is Done with `exit_code`, or still
    Running (`exit_code` None: more output follows in the next Receive)."""
    end_attr = ' End="true"'
    parts = [
        f'<rsp:Stream Name="{name}" CommandId="{command_id}"{end_attr if end else ""}>{data}</rsp:Stream>'
        for name, data, end in streams
    ]
    if exit_code is None:
        state = f'<rsp:CommandState CommandId="{command_id}" State="{RUNNING}"/>'
    else:
        state = (
            f'<rsp:CommandState CommandId="{command_id}" State="{DONE}"><rsp:ExitCode>{exit_code}'
            "</rsp:ExitCode></rsp:CommandState>"
        )
    body = f"<rsp:ReceiveResponse>{''.join(parts)}{state}</rsp:ReceiveResponse>"
    return envelope(f"{SHELL}/ReceiveResponse", relates_to, body)


def signalled(relates_to: str) -> bytes:
    return envelope(f"{SHELL}/SignalResponse", relates_to, "<rsp:SignalResponse/>")


def deleted(relates_to: str) -> bytes:
    return envelope(f"{TRANSFER}/DeleteResponse", relates_to, "")
