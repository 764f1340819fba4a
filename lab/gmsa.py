"""gMSA objects in the lab's Samba AD DC: computer accounts, nested groups, gMSAs and KDS root keys.

Made over LDAPS as Administrator, as AD's own tools would. Samba 4.17 stores a gMSA and its
`msDS-GroupMSAMembership` (it does not compute gMSA passwords); it refuses a `pwdLastSet` other than 0
or -1, so a future `pwdLastSet` cannot be modelled here. It accepts the KDS containers and an
`msKds-ProvRootKey` object. Security descriptors are built from SDDL by Samba's own bindings (the system
Python has them), so the product's decoder is checked against an independent encoder.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime

from ldap3 import BASE, MODIFY_REPLACE, Connection
from ldap3.core.exceptions import LDAPEntryAlreadyExistsResult
from winacl.dtyp.sid import SID

from lab.samba import SYSTEM_PYTHON, SambaDC, to_filetime

UF_WORKSTATION_TRUST_ACCOUNT = 0x1000
GROUP_GLOBAL_SECURITY = -2147483646
GROUP_UNIVERSAL_SECURITY = -2147483640
_SDDL_TO_BYTES = (
    "import sys\n"
    "from samba.dcerpc import security\n"
    "from samba.ndr import ndr_pack\n"
    "sd = security.descriptor.from_sddl(sys.argv[1], security.dom_sid(sys.argv[2]))\n"
    "sys.stdout.buffer.write(ndr_pack(sd))\n"
)


@dataclass(frozen=True)
class LabPrincipal:
    name: str  # sAMAccountName
    dn: str
    sid: str


def security_descriptor(sddl: str, domain_sid: str) -> bytes:
    """A self-relative SECURITY_DESCRIPTOR, as AD stores it, encoded by Samba's bindings."""
    result = subprocess.run(
        [SYSTEM_PYTHON, "-c", _SDDL_TO_BYTES, sddl, domain_sid], capture_output=True, check=True, timeout=60
    )
    return result.stdout


def allow_sddl(sids: Sequence[str], denied: Sequence[str] = ()) -> str:
    """A DACL that lets `sids` (and not `denied`) retrieve the password, as New-ADServiceAccount writes."""
    aces = "".join(f"(D;;0xf01ff;;;{sid})" for sid in denied) + "".join(
        f"(A;;0xf01ff;;;{sid})" for sid in sids
    )
    return f"O:BAD:{aces}"


class LabGmsa:
    """Creates the gMSA-related objects in one lab DC."""

    def __init__(self, dc: SambaDC) -> None:
        self.dc = dc

    def _sid(self, conn: Connection, dn: str) -> str:
        conn.search(dn, "(objectClass=*)", BASE, attributes=["objectSid"])
        return str(SID.from_bytes(conn.response[0]["raw_attributes"]["objectSid"][0]))

    def sid_of(self, dn: str) -> str:
        with self.dc.admin() as conn:
            return self._sid(conn, dn)

    @property
    def domain_sid(self) -> str:
        with self.dc.admin() as conn:
            return self._sid(conn, self.dc.base_dn)

    def add_computer(self, name: str, dns_host_name: str | None = None) -> LabPrincipal:
        dn = f"CN={name},CN=Computers,{self.dc.base_dn}"
        with self.dc.admin() as conn:
            conn.add(
                dn,
                ["top", "person", "organizationalPerson", "user", "computer"],
                {
                    "sAMAccountName": f"{name}$",
                    "dNSHostName": dns_host_name or f"{name}.{self.dc.dns_domain}",
                    "userAccountControl": str(UF_WORKSTATION_TRUST_ACCOUNT),
                },
            )
            return LabPrincipal(f"{name}$", dn, self._sid(conn, dn))

    def add_group(self, name: str, members: list[LabPrincipal], *, universal: bool = False) -> LabPrincipal:
        dn = f"CN={name},CN=Users,{self.dc.base_dn}"
        kind = GROUP_UNIVERSAL_SECURITY if universal else GROUP_GLOBAL_SECURITY
        attributes: dict[str, object] = {"sAMAccountName": name, "groupType": str(kind)}
        if members:
            attributes["member"] = [m.dn for m in members]
        with self.dc.admin() as conn:
            conn.add(dn, ["top", "group"], attributes)
            return LabPrincipal(name, dn, self._sid(conn, dn))

    def add_gmsa(
        self,
        name: str,
        allowed: list[LabPrincipal],
        *,
        denied: Sequence[LabPrincipal] = (),
        encryption_types: int | None = 0x18,
        interval_days: int = 30,
        enabled: bool = True,
    ) -> LabPrincipal:
        """A gMSA `name$` whose password `allowed` may retrieve (New-ADServiceAccount's shape)."""
        dn = f"CN={name},CN=Managed Service Accounts,{self.dc.base_dn}"
        descriptor = security_descriptor(
            allow_sddl([p.sid for p in allowed], [p.sid for p in denied]), self.domain_sid
        )
        attributes: dict[str, object] = {
            "sAMAccountName": f"{name}$",
            "dNSHostName": f"{name}.{self.dc.dns_domain}",
            "msDS-ManagedPasswordInterval": str(interval_days),
            "msDS-GroupMSAMembership": descriptor,
        }
        if encryption_types is not None:
            attributes["msDS-SupportedEncryptionTypes"] = str(encryption_types)
        with self.dc.admin() as conn:
            conn.add(dn, ["top", "msDS-GroupManagedServiceAccount"], attributes)
            if enabled:  # Samba creates it disabled (it has no password); AD's gMSAs start enabled
                uac = [str(UF_WORKSTATION_TRUST_ACCOUNT)]
                conn.modify(dn, {"userAccountControl": [(MODIFY_REPLACE, uac)]})
            return LabPrincipal(f"{name}$", dn, self._sid(conn, dn))

    def kds_container(self) -> str:
        configuration = f"CN=Configuration,{self.dc.base_dn}"
        return f"CN=Master Root Keys,CN=Group Key Distribution Service,CN=Services,{configuration}"

    def add_kds_root_key(self, effective: datetime, readable_by: LabPrincipal | None = None) -> str:
        """A KDS root key effective at `effective` (Add-KdsRootKey's object; its key data is a dummy).

        AD lets only admins read the keys' (confidential) attributes; `readable_by` is granted read and
        control access, as an organisation that delegates it to atp-bot's lookup account would.
        """
        container = self.kds_container()
        service = container.split(",", 1)[1]
        key_dn = f"CN={uuid.uuid4()},{container}"
        when = str(to_filetime(effective))
        attributes: dict[str, object] = {
            "msKds-UseStartTime": when,
            "msKds-CreateTime": when,
            "msKds-Version": "1",
            "msKds-KDFAlgorithmID": "SP800_108_CTR_HMAC",
            "msKds-RootKeyData": uuid.uuid4().bytes * 4,
            "msKds-DomainID": self.dc.base_dn,
            "msKds-PrivateKeyLength": "512",
            "msKds-PublicKeyLength": "2048",
            "msKds-SecretAgreementAlgorithmID": "DH",
        }
        if readable_by is not None:
            sddl = f"O:DAD:(A;;FA;;;DA)(A;;FA;;;EA)(A;;FA;;;SY)(A;;RPLCLORCCR;;;{readable_by.sid})"
            attributes["nTSecurityDescriptor"] = security_descriptor(sddl, self.domain_sid)
        readable_container = security_descriptor(
            "O:DAD:(A;;FA;;;DA)(A;;FA;;;EA)(A;;FA;;;SY)(A;;RPLCLORC;;;AU)", self.domain_sid
        )
        with self.dc.admin() as conn:
            for dn in (service, container):  # readable by Authenticated Users, as in AD
                with suppress(LDAPEntryAlreadyExistsResult):
                    conn.add(dn, ["top", "container"], {"nTSecurityDescriptor": readable_container})
            conn.add(key_dn, ["top", "msKds-ProvRootKey"], attributes)
        return key_dn
