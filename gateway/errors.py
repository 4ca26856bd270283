"""The one error tree of the gateway.

Every failure a user can cause is a :class:`GatewayError` carrying a stable ``code`` (dotted, lower case,
e.g. ``signature.sha1``), an HTTP status and a human title. The hub turns them into
``application/problem+json`` in one place; the CLI prints ``code: detail``. Foreign exceptions (lxml,
signxml, cryptography, SQLAlchemy) are translated once, at the edge that calls the library, with
``raise ... from exc``.

Codes are registered in :data:`REASONS`; creating an error with an unregistered code is a programming
error and fails loudly, so the list below is the complete, documented catalogue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

PROBLEM_BASE = "https://lgsp-gateway.vn/problems/"


@dataclass(frozen=True, slots=True, kw_only=True)
class Reason:
    """One registered rejection reason."""

    code: str
    title: str


REASONS: dict[str, Reason] = {}


def _reg(code: str, title: str) -> str:
    REASONS[code] = Reason(code=code, title=title)
    return code


# --- input size and XML well-formedness -------------------------------------------------------------
_reg("input.too_large", "The input is larger than the configured limit")
_reg("input.empty", "The input is empty")
_reg("xml.malformed", "The input is not well-formed XML")
_reg("xml.encoding", "The input is not valid UTF-8 or declares an unsupported encoding")
_reg("xml.dtd_forbidden", "Document type declarations (DTD) are not accepted")
_reg("xml.entity_forbidden", "Entity declarations or references are not accepted")
_reg("xml.xinclude_forbidden", "XInclude is not accepted")
_reg("xml.too_deep", "The XML nesting is deeper than allowed")
_reg("xml.text_too_large", "A text node is larger than allowed")
_reg("xml.processing_instruction", "Processing instructions are not accepted inside a package")

# --- edXML structure --------------------------------------------------------------------------------
_reg("edxml.not_edxml", "The root element is not an edXML package")
_reg("edxml.missing_element", "A required edXML element is missing")
_reg("edxml.unexpected_element", "An element is not allowed at this place in an edXML package")
_reg("edxml.bad_date", "A date is not in the form yyyy/MM/dd")
_reg("edxml.bad_timestamp", "A timestamp is not in the form yyyy/MM/dd HH:mm:ss")
_reg("edxml.bad_integer", "A numeric field is not a whole number")
_reg("edxml.bad_base64", "An attachment's ContentTransferEncoded is not valid base64")
_reg("edxml.attachment_unlisted", "An attachment is not listed in the manifest")
_reg("edxml.attachment_missing", "The manifest lists an attachment that is not present")
_reg("edxml.attachment_duplicate", "Two attachments share one ContentId")
_reg("edxml.attachment_digest", "An attachment does not match the size or SHA-256 in the signed manifest")
_reg("edxml.manifest_digest_missing", "The manifest does not give an attachment's size and SHA-256")

# --- multipart carriage form (gateway/edxml/multipart.py; docs/carriage.md) ---------------------------
_reg("multipart.content_type", "The content type is not multipart/related with type application/edxml+xml")
_reg("multipart.boundary", "The multipart boundary is missing or not a valid RFC 2046 boundary")
_reg("multipart.preamble", "There is text other than blank lines before the first part or after the last one")
_reg("multipart.malformed", "The multipart body is not well formed (delimiter or header syntax)")
_reg("multipart.headers_too_large", "A part's headers are larger than allowed")
_reg("multipart.part_headers", "A part lacks Content-ID, repeats a header or has an unsupported encoding")
_reg("multipart.truncated", "The multipart body ended before its closing delimiter")
_reg("multipart.too_many_parts", "The multipart body has more parts than allowed")
_reg("multipart.duplicate_part", "Two parts share one Content-ID")
_reg("multipart.start_missing", "The first part is not the edXML start part (Content-ID <edxml>)")
_reg("multipart.part_unlisted", "A part is not listed in the signed manifest")
_reg("multipart.not_envelope_signed", "The signature covers the whole document; the package cannot be split")
# --- end multipart ----------------------------------------------------------------------------------

# --- field rules (codes and limits) -----------------------------------------------------------------
_reg("field.organ_id", "An agency code (OrganId) is not of the form V1V2V3.Z1Z2.Y1Y2.X1X2X3")
_reg("field.document_id", "A DocumentId is not <OrganId>,<yyyy/MM/dd>,<CodeNumber>/<CodeNotation>")
_reg("field.document_id_mismatch", "The DocumentId does not agree with the sender, date and number")
_reg("field.status_code", "The status code is not one of 01-06, 13, 15, 16")
_reg("field.priority", "Priority is not one of 0-4")
_reg("field.business_doc_type", "BussinessDocType is not one of 0-3")
_reg("field.paper", "Paper is not 0 or 1")
_reg("field.too_long", "A field is longer than its limit")
_reg("field.required", "A required field is empty")
_reg("field.future_date", "The promulgation date is in the future")
_reg("field.duplicate_recipient", "A recipient is listed twice")
_reg("field.no_recipient", "The package has no recipient")

# --- signature profile ------------------------------------------------------------------------------
_reg("signature.missing", "The package carries no signature")
_reg("signature.wrong_namespace", "The Signature element is not in the XML-DSig namespace")
_reg("signature.multiple", "The package carries more than one signature")
_reg("signature.location", "The signature is not where the profile puts it (edXMLHeader)")
_reg("signature.sha1", "SHA-1 is not accepted")
_reg("signature.md5", "MD5 is not accepted")
_reg("signature.hmac", "HMAC signatures are not accepted")
_reg("signature.algorithm", "The signature or digest algorithm is not accepted")
_reg("signature.canonicalization", "Only exclusive XML canonicalization is accepted")
_reg("signature.transform", "A transform is not accepted")
_reg("signature.key_value_only", "The signature names its key only by KeyValue; a certificate is required")
_reg("signature.no_certificate", "The signature carries no X509 certificate")
_reg("signature.bad_certificate", "The certificate in the signature cannot be read")
_reg("signature.weak_key", "The signing key is too weak (RSA < 2048 or a curve other than P-256)")
_reg("signature.reference", "The signature references something other than the signed package")
_reg("signature.reference_count", "The signature must carry exactly one reference")
_reg("signature.digest_mismatch", "The signed content was changed after signing")
_reg("signature.invalid", "The signature value does not verify")
_reg("signature.wrapping", "The signed content is not the content of the package (signature wrapping)")

# --- certificates and trust -------------------------------------------------------------------------
_reg("certificate.untrusted", "The certificate does not chain to a trusted authority")
_reg("certificate.expired", "The certificate had expired at the signing time")
_reg("certificate.not_yet_valid", "The certificate was not yet valid at the signing time")
_reg("certificate.revoked", "The certificate was revoked")
_reg("certificate.key_usage", "The certificate's key usage does not allow digital signatures")
_reg("certificate.agency_mismatch", "The certificate does not belong to the sending agency")
_reg("certificate.no_agency", "The certificate does not name an agency code")
_reg("certificate.crl_stale", "A revocation list is past its next update")
_reg("certificate.not_pinned", "The certificate is not among those pinned for the agency")

# --- service-level ----------------------------------------------------------------------------------
_reg("request.bad", "The request is not valid")
_reg("request.unsupported_media_type", "The content type is not accepted")
_reg("request.timeout", "The request took too long to arrive")
_reg("auth.forbidden", "The caller may not do this")
_reg("auth.unauthenticated", "A client certificate is required")
_reg("directory.unknown_recipient", "A recipient is not in the agency directory")
_reg("directory.unknown_agency", "The agency is not in the directory")
_reg("resource.not_found", "Not found")
_reg("conflict.document_id", "A different package was already sent with this DocumentId")
_reg("conflict.transition", "The status is not allowed in the exchange's current state")
_reg("config.invalid", "The configuration is not valid")
_reg("usage", "The command was used wrongly")

# --- storage (added by the storage foundation: gateway/store) ------------------------------------------
_reg("directory.bad_level", "An agency level is not one of central, province, department, district, commune")
_reg("directory.bad_fingerprint", "A certificate fingerprint is not a SHA-256 digest in hex")

# --- agency node (gateway/node) -----------------------------------------------------------------------
_reg("node.hub_unavailable", "The hub could not be reached; the work stays queued and is retried")
_reg("node.hub_refused", "The hub refused the request")
_reg("node.receipt_mismatch", "The hub receipt does not match what was sent")
_reg("node.package_digest", "The bytes fetched from the hub are not those of the package id")
_reg("node.unknown_document", "The node has no record of this document")


class GatewayError(Exception):
    """Base of every error the gateway reports to a user."""

    status: ClassVar[int] = 400

    def __init__(self, code: str, detail: str | None = None, **extra: Any) -> None:
        if code not in REASONS:
            raise KeyError(f"unregistered error code {code!r}")
        self.code = code
        self.detail = detail or REASONS[code].title
        self.extra = extra
        super().__init__(f"{code}: {self.detail}")

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as ``(class, (code, detail), state)``: the default passes ``args`` (the message) to
        ``__init__``, which takes the code, so an error with extra fields could not cross a process pool."""
        return (_rebuild, (type(self), self.code, self.detail, self.extra), self.__dict__.copy())

    @property
    def title(self) -> str:
        return REASONS[self.code].title

    @property
    def type_uri(self) -> str:
        return PROBLEM_BASE + self.code

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        """RFC 9457 problem details; ``code`` repeats the stable reason for clients that do not parse URIs."""
        body: dict[str, Any] = {
            "type": self.type_uri,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance:
            body["instance"] = instance
        body.update({k: v for k, v in self.extra.items() if k not in body})
        return body


class InputError(GatewayError):
    """The bytes are not an acceptable XML document (size, well-formedness, hardening)."""

    status = 400


class InputTooLarge(InputError):
    status = 413


class PackageError(GatewayError):
    """The XML is well-formed but is not a valid edXML package or status message."""

    status = 422


class FieldError(PackageError):
    """A field breaks a code rule or a limit."""


class SignatureError(GatewayError):
    """The signature breaks the profile or does not verify."""

    status = 422


class TrustError(GatewayError):
    """The signer certificate is not trusted for this agency at this time."""

    status = 422


class RequestError(GatewayError):
    status = 400


class UnsupportedMediaType(GatewayError):
    status = 415


class RequestTimeout(GatewayError):
    status = 408


class AuthError(GatewayError):
    status = 403


class Unauthenticated(GatewayError):
    status = 401


class NotFound(GatewayError):
    status = 404


class DirectoryError(GatewayError):
    status = 422


class Conflict(GatewayError):
    status = 409


class ConfigError(GatewayError):
    status = 500


class UsageError(GatewayError):
    """A CLI misuse; the CLI exits 2 for these."""

    status = 400


def _rebuild(cls: type[GatewayError], code: str, detail: str, extra: dict[str, Any]) -> GatewayError:
    """Unpickle a :class:`GatewayError` through its own ``__init__`` (see ``__reduce__``)."""
    return cls(code, detail, **extra)
