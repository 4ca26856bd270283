"""Received parts against the signed manifest: digest mismatch, unlisted, missing, cid normalisation."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from gateway.edxml.model import AttachmentDigest, ManifestReference
from gateway.edxml.multipart import MemorySink, iter_multipart, match_parts, read_multipart_bytes
from gateway.errors import GatewayError

A, B = b"first attachment", b"second"


def ref(cid: str, data: bytes) -> ManifestReference:
    return ManifestReference(
        content_id=cid,
        content_type="application/pdf",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def digest(cid: str, data: bytes) -> AttachmentDigest:
    return AttachmentDigest(content_id=cid, size=len(data), sha256=hashlib.sha256(data).hexdigest())


MANIFEST = (ref("cid:a", A), ref("cid:b", B))


def code(manifest, parts) -> str:
    with pytest.raises(GatewayError) as info:
        match_parts(manifest, parts)
    return info.value.code


def test_match_through_the_reader():
    ct, body = iter_multipart(b"<edXML/>", [(MANIFEST[0], A), (MANIFEST[1], B)])
    result = read_multipart_bytes(b"".join(body), ct, sink_factory=MemorySink)
    matched = match_parts(MANIFEST, result.parts)
    assert matched == {"a": digest("a", A), "b": digest("b", B)}
    assert list(matched) == ["a", "b"]


def test_cid_prefix_and_brackets_and_hex_case_are_normalised():
    manifest = (replace(ref("CID:a", A), sha256=hashlib.sha256(A).hexdigest().upper()),)
    assert match_parts(manifest, [digest("<a>", A)]) == {"a": digest("a", A)}


def test_order_of_parts_does_not_matter():
    assert list(match_parts(MANIFEST, [digest("b", B), digest("a", A)])) == ["a", "b"]


def test_no_attachments():
    assert match_parts((), []) == {}


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ([digest("a", A), digest("b", B + b"!")], "edxml.attachment_digest"),
        (
            [digest("a", A), AttachmentDigest(content_id="b", size=len(B), sha256="0" * 64)],
            "edxml.attachment_digest",
        ),
        (
            [digest("a", A), AttachmentDigest(content_id="b", size=len(B) + 1, sha256=digest("b", B).sha256)],
            "edxml.attachment_digest",
        ),
        ([digest("a", A)], "edxml.attachment_missing"),
        ([digest("a", A), digest("b", B), digest("c", b"")], "multipart.part_unlisted"),
        ([digest("a", A), digest("a", A), digest("b", B)], "multipart.duplicate_part"),
    ],
)
def test_mismatches(parts, expected):
    assert code(MANIFEST, parts) == expected


def test_manifest_must_carry_digests_and_unique_ids():
    assert code((replace(MANIFEST[0], sha256=None),), [digest("a", A)]) == "edxml.manifest_digest_missing"
    assert code((replace(MANIFEST[0], size=None),), [digest("a", A)]) == "edxml.manifest_digest_missing"
    assert code((MANIFEST[0], ref("a", A)), [digest("a", A)]) == "edxml.attachment_duplicate"


def test_digest_error_names_the_part():
    with pytest.raises(GatewayError) as info:
        match_parts(MANIFEST, [digest("a", A), digest("b", b"x")])
    assert info.value.status == 422
    assert info.value.to_problem()["content_id"] == "b"
