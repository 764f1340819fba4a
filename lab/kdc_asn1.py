"""The Kerberos messages of an AS exchange (RFC 4120 section 5, EXPLICIT TAGS), as pyasn1 types.

Only what a KDC needs to read an AS-REQ and answer it (KRB-ERROR, or an AS-REP): written from the RFC,
independent of the client library under test.
"""

from __future__ import annotations

from typing import TypeVar

from pyasn1.type import base, char, namedtype, tag, univ, useful

PA_ENC_TIMESTAMP = 2
PA_ETYPE_INFO2 = 19
KDC_ERR_ETYPE_NOSUPP = 14
KDC_ERR_PREAUTH_FAILED = 24
KDC_ERR_PREAUTH_REQUIRED = 25

Asn1Value = base.SimpleAsn1Type | base.ConstructedAsn1Type
_Asn1 = TypeVar("_Asn1", bound=Asn1Value)


def field(number: int, asn1_type: _Asn1) -> _Asn1:
    """`[number]` with an explicit context tag, as every Kerberos field is."""
    context = tag.Tag(tag.tagClassContext, tag.tagFormatSimple, number)
    tagged: _Asn1 = asn1_type.subtype(explicitTag=context)  # type: ignore[no-untyped-call]
    return tagged


def _application(number: int) -> tag.TagSet:
    application = tag.Tag(tag.tagClassApplication, tag.tagFormatConstructed, number)
    tag_set: tag.TagSet = univ.Sequence.tagSet.tagExplicitly(application)  # type: ignore[no-untyped-call]
    return tag_set


def _required(name: str, number: int, asn1_type: Asn1Value) -> namedtype.NamedType:
    return namedtype.NamedType(name, field(number, asn1_type))


def _optional(name: str, number: int, asn1_type: Asn1Value) -> namedtype.OptionalNamedType:
    return namedtype.OptionalNamedType(name, field(number, asn1_type))


class PrincipalName(univ.Sequence):
    componentType = namedtype.NamedTypes(
        _required("name-type", 0, univ.Integer()),
        _required("name-string", 1, univ.SequenceOf(componentType=char.GeneralString())),
    )


class PaData(univ.Sequence):
    componentType = namedtype.NamedTypes(
        _required("padata-type", 1, univ.Integer()),
        _required("padata-value", 2, univ.OctetString()),
    )


class MethodData(univ.SequenceOf):
    componentType = PaData()


class EncryptedData(univ.Sequence):
    componentType = namedtype.NamedTypes(
        _required("etype", 0, univ.Integer()),
        _optional("kvno", 1, univ.Integer()),
        _required("cipher", 2, univ.OctetString()),
    )


class HostAddress(univ.Sequence):
    componentType = namedtype.NamedTypes(
        _required("addr-type", 0, univ.Integer()),
        _required("address", 1, univ.OctetString()),
    )


class KdcReqBody(univ.Sequence):
    componentType = namedtype.NamedTypes(
        _required("kdc-options", 0, univ.BitString()),
        _optional("cname", 1, PrincipalName()),
        _required("realm", 2, char.GeneralString()),
        _optional("sname", 3, PrincipalName()),
        _optional("from", 4, useful.GeneralizedTime()),
        _optional("till", 5, useful.GeneralizedTime()),
        _optional("rtime", 6, useful.GeneralizedTime()),
        _required("nonce", 7, univ.Integer()),
        _required("etype", 8, univ.SequenceOf(componentType=univ.Integer())),
        _optional("addresses", 9, univ.SequenceOf(componentType=HostAddress())),
        _optional("enc-authorization-data", 10, EncryptedData()),
    )


class AsReq(univ.Sequence):
    tagSet = _application(10)
    componentType = namedtype.NamedTypes(
        _required("pvno", 1, univ.Integer()),
        _required("msg-type", 2, univ.Integer()),
        _optional("padata", 3, MethodData()),
        _required("req-body", 4, KdcReqBody()),
    )


class EtypeInfo2Entry(univ.Sequence):
    componentType = namedtype.NamedTypes(
        _required("etype", 0, univ.Integer()),
        _optional("salt", 1, char.GeneralString()),
        _optional("s2kparams", 2, univ.OctetString()),
    )


class EtypeInfo2(univ.SequenceOf):
    componentType = EtypeInfo2Entry()


class Ticket(univ.Sequence):
    tagSet = _application(1)
    componentType = namedtype.NamedTypes(
        _required("tkt-vno", 0, univ.Integer()),
        _required("realm", 1, char.GeneralString()),
        _required("sname", 2, PrincipalName()),
        _required("enc-part", 3, EncryptedData()),
    )


class AsRep(univ.Sequence):
    tagSet = _application(11)
    componentType = namedtype.NamedTypes(
        _required("pvno", 0, univ.Integer()),
        _required("msg-type", 1, univ.Integer()),
        _optional("padata", 2, MethodData()),
        _required("crealm", 3, char.GeneralString()),
        _required("cname", 4, PrincipalName()),
        _required("ticket", 5, Ticket()),
        _required("enc-part", 6, EncryptedData()),
    )


class KrbError(univ.Sequence):
    tagSet = _application(30)
    componentType = namedtype.NamedTypes(
        _required("pvno", 0, univ.Integer()),
        _required("msg-type", 1, univ.Integer()),
        _optional("ctime", 2, useful.GeneralizedTime()),
        _optional("cusec", 3, univ.Integer()),
        _required("stime", 4, useful.GeneralizedTime()),
        _required("susec", 5, univ.Integer()),
        _required("error-code", 6, univ.Integer()),
        _optional("crealm", 7, char.GeneralString()),
        _optional("cname", 8, PrincipalName()),
        _required("realm", 9, char.GeneralString()),
        _required("sname", 10, PrincipalName()),
        _optional("e-text", 11, char.GeneralString()),
        _optional("e-data", 12, univ.OctetString()),
    )
