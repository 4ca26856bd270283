"""Attacks on the signature, each rejected with its own code, by both verification engines.

Most variants are re-signed *correctly* (see ``signature_helpers.resign``): the cryptography would pass,
only the profile rejects them.
"""

from __future__ import annotations

import base64
import copy

import pytest
from lxml import etree
from signature_helpers import DS, E, dump, package, resign, set_certificates, signature_of, tree

from gateway.errors import GatewayError
from gateway.signature.sign import sign_message
from gateway.signature.verify import verify_signature

pytest_plugins = ["pki_fixtures"]

ENGINES = ("signxml", "c14n")


@pytest.fixture(scope="module")
def signed(pki):
    """Two signed packages (document and envelope mode) by the RSA province signer, as trees factories."""
    s = pki.province_rsa
    docs = {
        ref: sign_message(package(), key=s.key, cert=s.cert, chain=s.chain, reference=ref)
        for ref in ("document", "envelope")
    }
    return lambda ref="document": tree(docs[ref])


def verdict(data: bytes | etree._Element, engine: str) -> str:
    raw = dump(data) if isinstance(data, etree._Element) else data
    with pytest.raises(GatewayError) as err:
        verify_signature(raw, engine=engine)
    return err.value.code


@pytest.fixture(params=ENGINES)
def engine(request):
    return request.param


# --- presence, place, namespace ---------------------------------------------------------------------


def test_two_signatures(signed, engine):
    root = signed()
    body = root.find(f"{E}edXMLEnvelope/{E}edXMLBody")
    body.append(copy.deepcopy(signature_of(root)))
    assert verdict(root, engine) == "signature.multiple"


def test_signature_in_wrong_namespace(signed, engine):
    root = signed()
    signature_of(root).tag = f"{E}Signature"
    assert verdict(root, engine) == "signature.wrong_namespace"


def test_no_signature(signed, engine):
    root = signed()
    sig = signature_of(root)
    sig.getparent().remove(sig)
    assert verdict(root, engine) == "signature.missing"


@pytest.mark.parametrize("where", ["root", "body", "not_last"])
def test_signature_out_of_place(signed, engine, where):
    root = signed()
    sig = signature_of(root)
    if where == "root":
        root.append(sig)
    elif where == "body":
        root.find(f"{E}edXMLEnvelope/{E}edXMLBody").append(sig)
    else:
        sig.addnext(etree.Element(f"{E}Extra"))
    assert verdict(root, engine) == "signature.location"


# --- algorithms and canonicalization ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("sig_alg", "digest", "code"),
    [
        ("rsa-sha1", "sha1", "signature.sha1"),  # a legitimate RSA-SHA1 signature, re-signed correctly
        ("rsa-sha256", "sha1", "signature.sha1"),
        ("rsa-sha1", "sha256", "signature.sha1"),
        ("rsa-md5", "md5", "signature.md5"),
        ("rsa-sha256", "md5", "signature.md5"),
        ("hmac-sha256", "sha256", "signature.hmac"),
        ("hmac-sha256", "md5", "signature.hmac"),
        ("rsa-sha512", "sha512", "signature.algorithm"),
        ("rsa-sha256", "sha512", "signature.algorithm"),
    ],
)
def test_algorithm_downgrade(signed, pki, engine, sig_alg, digest, code):
    root = resign(signed(), pki.province_rsa.key, sig_alg=sig_alg, digest=digest)
    assert verdict(root, engine) == code


def test_method_that_does_not_fit_the_key(signed, pki, engine):
    root = resign(signed(), pki.district_ec.key, sig_alg="ecdsa-sha256")  # cert is still the RSA one
    assert verdict(root, engine) == "signature.algorithm"


def test_inclusive_c14n_of_signed_info(signed, pki, engine):
    root = resign(signed(), pki.province_rsa.key, c14n="inc")
    assert verdict(root, engine) == "signature.canonicalization"


def test_inclusive_c14n_transform(signed, pki, engine):
    root = resign(signed(), pki.province_rsa.key, transforms=("enveloped", "inc"))
    assert verdict(root, engine) == "signature.canonicalization"


@pytest.mark.parametrize(
    "transforms",
    [
        ("enveloped", "xpath", "exc"),
        ("enveloped", "xslt"),
        ("enveloped", "base64", "exc"),
        ("exc",),
        ("exc", "enveloped"),
        ("enveloped", "exc", "exc"),
    ],
)
def test_unknown_or_misordered_transforms(signed, pki, engine, transforms):
    root = resign(signed(), pki.province_rsa.key, transforms=transforms)
    assert verdict(root, engine) == "signature.transform"


# --- references and wrapping ------------------------------------------------------------------------


def test_reference_to_a_sibling_element(signed, pki, engine):
    root = signed()
    root.find(f"{E}edXMLEnvelope/{E}edXMLBody").set("Id", "body")
    resign(root, pki.province_rsa.key, uri="#body")
    assert verdict(root, engine) == "signature.reference"


def test_reference_to_the_header(signed, pki, engine):
    root = signed("envelope")
    root.find(f"{E}edXMLEnvelope/{E}edXMLHeader/{E}MessageHeader").set("Id", "mh")
    resign(root, pki.province_rsa.key, uri="#mh")
    assert verdict(root, engine) == "signature.reference"


@pytest.mark.parametrize(
    "uri", ["http://example.org/evil.xml", "#xpointer(/)", "#nowhere", "#", "file:///etc/passwd"]
)
def test_reference_uri_outside_the_package(signed, engine, uri):
    root = signed()
    signature_of(root).find(f"{DS}SignedInfo/{DS}Reference").set("URI", uri)
    assert verdict(root, engine) == "signature.reference"


def test_two_references(signed, engine):
    root = signed()
    ref = signature_of(root).find(f"{DS}SignedInfo/{DS}Reference")
    ref.addnext(copy.deepcopy(ref))
    assert verdict(root, engine) == "signature.reference_count"


def test_moved_signed_envelope_under_a_forged_one(signed, engine):
    """XSW: the signed envelope hides in the attachments; a forged envelope carries the signature."""
    root = signed("envelope")
    original = root.find(f"{E}edXMLEnvelope")
    forged = copy.deepcopy(original)
    forged.set("Id", "forged")
    forged.find(f".//{E}Subject").text = "Chuyển tiền ngay"
    hidden = copy.deepcopy(original)
    sig = signature_of(hidden)
    sig.getparent().remove(sig)  # the copy under the forged header stays; the digest of `hidden` matches
    root.replace(original, forged)
    holder = root.find(f"{E}AttachmentEncoded")
    holder.append(hidden)
    assert verdict(root, engine) == "signature.wrapping"


def test_duplicate_id(signed, engine):
    """The attacker gives the forged envelope the signed Id and hides the original with the same Id."""
    root = signed("envelope")
    original = root.find(f"{E}edXMLEnvelope")
    hidden = copy.deepcopy(original)
    signature_of(hidden).getparent().remove(signature_of(hidden))
    original.find(f".//{E}Subject").text = "Chuyển tiền ngay"
    root.find(f"{E}AttachmentEncoded").append(hidden)
    assert verdict(root, engine) == "signature.wrapping"


def test_duplicate_id_anywhere(signed, engine):
    root = signed("envelope")
    env_id = root.find(f"{E}edXMLEnvelope").get("Id")
    root.find(f"{E}AttachmentEncoded").set("ID", env_id)
    assert verdict(root, engine) == "signature.wrapping"


def test_two_id_attributes_with_one_value_on_one_element(signed, engine):
    """``Id`` and ``id`` on one element name it twice: resolvers disagree on which one counts."""
    root = signed("envelope")
    holder = root.find(f"{E}AttachmentEncoded")
    holder.set("Id", "twice")
    holder.set("id", "twice")
    assert verdict(root, engine) == "signature.wrapping"


def test_second_envelope_under_the_root(signed, engine):
    root = signed()
    forged = copy.deepcopy(root.find(f"{E}edXMLEnvelope"))
    signature_of(forged).getparent().remove(signature_of(forged))
    root.insert(0, forged)
    assert verdict(root, engine) == "signature.wrapping"


def test_document_wrapped_in_a_new_root_is_a_digest_mismatch(signed, engine):
    """Document mode: the whole document is covered, so any move changes the digest."""
    root = signed()
    new_root = etree.Element(f"{E}edXML", nsmap={None: E[1:-1]})
    forged = copy.deepcopy(root.find(f"{E}edXMLEnvelope"))
    forged.find(f".//{E}Subject").text = "Chuyển tiền ngay"
    new_root.append(forged)
    holder = etree.SubElement(new_root, f"{E}AttachmentEncoded")
    original_env = root.find(f"{E}edXMLEnvelope")
    signature_of(original_env).getparent().remove(signature_of(original_env))
    holder.append(original_env)
    assert verdict(new_root, engine) == "signature.digest_mismatch"


def test_extra_unsigned_attachment_in_document_mode(signed, engine):
    root = signed()
    holder = root.find(f"{E}AttachmentEncoded")
    extra = copy.deepcopy(holder[0])
    extra.find(f"{E}ContentId").text = "cid:extra"
    holder.append(extra)
    assert verdict(root, engine) == "signature.digest_mismatch"


# --- content and value ------------------------------------------------------------------------------


def test_changed_subject(signed, engine):
    root = signed()
    root.find(f".//{E}Subject").text += "!"
    assert verdict(root, engine) == "signature.digest_mismatch"


def test_changed_signature_value(signed, engine):
    root = signed()
    value = signature_of(root).find(f"{DS}SignatureValue")
    raw = bytearray(base64.b64decode(value.text))
    raw[10] ^= 1
    value.text = base64.b64encode(bytes(raw)).decode()
    assert verdict(root, engine) == "signature.invalid"


@pytest.mark.parametrize("child", ["SignedInfo", "SignatureValue"])
def test_signature_child_twice(signed, engine, child):
    root = signed()
    el = signature_of(root).find(f"{DS}{child}")
    el.addnext(copy.deepcopy(el))
    assert verdict(root, engine) == "signature.invalid"


def test_signed_info_not_first(signed, engine):
    root = signed()
    sig = signature_of(root)
    sig.insert(0, sig.find(f"{DS}SignatureValue"))
    assert verdict(root, engine) == "signature.invalid"


def test_canonicalization_method_not_first(signed, engine):
    root = signed()
    info = signature_of(root).find(f"{DS}SignedInfo")
    info.insert(0, info.find(f"{DS}SignatureMethod"))
    assert verdict(root, engine) == "signature.invalid"


def test_signature_value_not_base64(signed, engine):
    root = signed()
    signature_of(root).find(f"{DS}SignatureValue").text = "not base64 !!"
    assert verdict(root, engine) == "signature.invalid"


# --- keys and certificates --------------------------------------------------------------------------


def test_key_value_only(signed, pki, engine):
    root = signed()
    key_info = signature_of(root).find(f"{DS}KeyInfo")
    key_info.remove(key_info.find(f"{DS}X509Data"))
    numbers = pki.province_rsa.cert.public_key().public_numbers()
    rsa_value = etree.SubElement(etree.SubElement(key_info, f"{DS}KeyValue"), f"{DS}RSAKeyValue")

    def b64(n: int) -> str:
        return base64.b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).decode()

    etree.SubElement(rsa_value, f"{DS}Modulus").text = b64(numbers.n)
    etree.SubElement(rsa_value, f"{DS}Exponent").text = b64(numbers.e)
    assert verdict(root, engine) == "signature.key_value_only"


def test_key_value_disagreeing_with_certificate(signed, pki, engine):
    root = signed()
    key_info = signature_of(root).find(f"{DS}KeyInfo")
    rsa_value = etree.SubElement(etree.SubElement(key_info, f"{DS}KeyValue"), f"{DS}RSAKeyValue")
    etree.SubElement(rsa_value, f"{DS}Modulus").text = base64.b64encode(b"\x01" * 256).decode()
    etree.SubElement(rsa_value, f"{DS}Exponent").text = "AQAB"
    assert verdict(root, engine) == "signature.invalid"


def test_no_key_info(signed, engine):
    root = signed()
    sig = signature_of(root)
    sig.remove(sig.find(f"{DS}KeyInfo"))
    assert verdict(root, engine) == "signature.no_certificate"


def test_x509_data_without_certificate(signed, engine):
    root = signed()
    data = signature_of(root).find(f"{DS}KeyInfo/{DS}X509Data")
    for el in list(data):
        data.remove(el)
    etree.SubElement(data, f"{DS}X509SubjectName").text = "CN=user05"
    assert verdict(root, engine) == "signature.no_certificate"


def test_truncated_certificate(signed, engine):
    root = set_certificates(signed(), ["MIIFqTCCBJG"])
    assert verdict(root, engine) == "signature.bad_certificate"


@pytest.mark.parametrize(("name", "alg"), [("weak_rsa1024", "rsa-sha256"), ("weak_ec_p384", "ecdsa-sha256")])
def test_weak_key(signed, pki, engine, name, alg):
    bad = pki.bad(name)
    root = resign(set_certificates(signed(), [bad.cert]), bad.key, sig_alg=alg)
    assert verdict(root, engine) == "signature.weak_key"


def test_certificate_swapped_for_another_agency(signed, pki, engine):
    """Putting another certificate in X509Data does not make the signature that agency's."""
    root = set_certificates(signed(), [pki.ministry_rsa.cert])
    assert verdict(root, engine) == "signature.invalid"


def test_signer_found_whatever_the_x509data_order(signed, pki, engine):
    s = pki.province_rsa
    root = set_certificates(signed(), [*reversed(s.chain), s.cert])
    assert verify_signature(dump(root), engine=engine).signer == s.cert


@pytest.mark.parametrize("reference", ["document", "envelope"])
def test_resign_helper_makes_valid_signatures(signed, pki, engine, reference):
    """Guards the attack tests: without a forbidden choice, a re-signed package verifies."""
    root = resign(signed(reference), pki.province_rsa.key)
    assert verify_signature(dump(root), engine=engine).reference == reference


def test_base64_is_decoded_as_the_standard_library_decodes_it():
    """A fast decoder serves the common case; the accepted set stays the standard library's."""
    from gateway.signature.profile import _b64

    assert _b64("QUJD", what="x") == b"ABC"
    assert _b64(" QU\nJD\t", what="x") == b"ABC"
    assert _b64("QUJD====", what="x") == b"ABC"  # excess padding: tolerated by the standard library
    for bad in ("QUJ", "QU=D", "QUJ?", "", "  "):
        with pytest.raises(GatewayError) as err:
            _b64(bad, what="x")
        assert err.value.code == "signature.invalid"


@pytest.mark.parametrize("reference", ["document", "envelope"])
def test_undeclared_prefix_inserted_after_signing(signed, reference):
    """Read tolerantly by the parser, an element with an undeclared prefix is still covered by the digest."""
    raw = dump(signed(reference)).replace(b"<edXML:Subject>", b"<zz:Extra>1</zz:Extra><edXML:Subject>", 1)
    assert verdict(raw, "c14n") == "signature.digest_mismatch"
