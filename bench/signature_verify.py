"""Signature verification against the floors of DESIGN §8. A measurement, not a test.

Times, over the same signed single-file package, in the same run, per core (one process):

* ``python-xmlsec``: parse with the same hardened parser, then libxmlsec1 verifies with its allow-lists set
  (key data X509 only; signature transforms RSA/ECDSA-SHA256 + exclusive C14N; reference transforms
  enveloped + exclusive C14N + SHA-256) and the signer's key pinned (loaded once): the reference floor;
* ``signxml`` / ``c14n``: :func:`gateway.signature.verify.verify_signature` forced to each engine
  (parse, comment stripping, profile checks, cryptography, signed content returned);
  ``c14n`` is what callers get by default.

    .venv/bin/python bench/signature_verify.py [--sizes 10k,1m,20m] [--seconds 2]

:func:`measure` is reusable by a harness: it returns operations per second and MB/s per variant.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import xmlsec
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from gateway.edxml.model import DS_NS
from gateway.edxml.xmlparser import make_parser
from gateway.signature.sign import sign_message
from gateway.signature.verify import verify_signature

UNITS = {"k": 1000, "m": 1000 * 1000}


def signed_package(size: int, *, key_type: str = "rsa2048") -> bytes:
    """A document-mode package of about ``size`` bytes (one inline attachment), signed by the test PKI."""
    from pki_fixtures import build_pki  # tests/ helper: the same PKI the tests use
    from signature_helpers import package

    pki = build_pki()
    signer = {"rsa2048": pki.province_rsa, "ec-p256": pki.district_ec}[key_type]
    msg = package(sender=signer.cert.subject.get_attributes_for_oid(_UID)[0].value)
    payload = max(0, (size - 6000) * 3 // 4)
    att = dataclasses.replace(msg.attachments[0], data=os.urandom(payload))
    msg = dataclasses.replace(msg, attachments=(att,))
    return sign_message(msg, key=signer.key, cert=signer.cert, chain=signer.chain)


def _uid() -> object:
    from cryptography.x509.oid import NameOID

    return NameOID.USER_ID


_UID = _uid()


def xmlsec_verifier(data: bytes) -> Callable[[bytes], None]:
    """python-xmlsec with allow-lists and the signer's certificate pinned (loaded once)."""
    from cryptography import x509

    root = etree.fromstring(data, make_parser())
    text = root.find(f".//{{{DS_NS}}}X509Certificate").text
    cert = x509.load_der_x509_certificate(__import__("base64").b64decode(text))
    key = xmlsec.Key.from_memory(cert.public_bytes(Encoding.PEM), xmlsec.constants.KeyDataFormatCertPem)
    c = xmlsec.constants

    def verify(raw: bytes) -> None:
        tree = etree.fromstring(raw, make_parser())
        ctx = xmlsec.SignatureContext()
        ctx.key = key
        ctx.set_enabled_key_data([c.KeyDataX509])
        for t in (c.TransformRsaSha256, c.TransformEcdsaSha256, c.TransformExclC14N):
            ctx.enable_signature_transform(t)
        for t in (c.TransformEnveloped, c.TransformExclC14N, c.TransformSha256):
            ctx.enable_reference_transform(t)
        ctx.verify(tree.find(f".//{{{DS_NS}}}Signature"))

    return verify


def _rate(fn: Callable[[bytes], object], data: bytes, seconds: float) -> float:
    fn(data)
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn(data)
        count += 1
    return count / elapsed


def measure(size: int, *, seconds: float = 2.0, key_type: str = "rsa2048") -> dict[str, tuple[float, float]]:
    """Verifications per second and MB/s per variant, for one package of about ``size`` bytes."""
    data = signed_package(size, key_type=key_type)
    variants: dict[str, Callable[[bytes], object]] = {
        "python-xmlsec": xmlsec_verifier(data),
        "signxml": lambda raw: verify_signature(raw, engine="signxml"),
        "c14n": lambda raw: verify_signature(raw, engine="c14n"),
    }
    out = {}
    for name, fn in variants.items():
        rate = _rate(fn, data, seconds)
        out[name] = (rate, rate * len(data) / 1e6)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10k,1m,20m")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--key", default="rsa2048", choices=["rsa2048", "ec-p256"])
    args = parser.parse_args()
    for spec in args.sizes.split(","):
        size = int(float(spec[:-1]) * UNITS[spec[-1].lower()]) if spec[-1].isalpha() else int(spec)
        results = measure(size, seconds=args.seconds, key_type=args.key)
        floor = results["python-xmlsec"][0]
        print(f"{spec} ({args.key}):")
        for name, (rate, mbs) in results.items():
            print(f"  {name:14} {rate:9.1f}/s {mbs:8.1f} MB/s  {rate / floor:6.0%} of python-xmlsec")


if __name__ == "__main__":
    main()
