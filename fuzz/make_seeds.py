"""Write the fuzz seeds (``fuzz/seeds``) and the trust folder they verify against (``fuzz/trust``).

Seeds are the interop vendor samples (``../shared/interop/edxml-samples``) and packages signed here with
a fresh test PKI (``tests/pki_fixtures.py``), in every mode of ``fuzz_package.py``: the first byte of
each seed is the mode. Run again to refresh (a new PKI each time; the trust folder changes with it).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

from cryptography.hazmat.primitives.serialization import Encoding  # noqa: E402
from hub_helpers import DEPARTMENT, PROVINCE, document, sign, status  # noqa: E402
from pki_fixtures import build_pki  # noqa: E402

from gateway.edxml.multipart import to_multipart  # noqa: E402
from gateway.trust.files import pem_of  # noqa: E402

SAMPLES = ROOT.parent / "shared" / "interop" / "edxml-samples"
BOUNDARY = "edxml-fuzz-0123456789"


def _shrink(data: bytes) -> bytes:
    """The sample with each base64 attachment cut to its first 64 characters (small seeds fuzz faster)."""
    base64_text = rb"(ContentTransferEncoded[^>]*>)([A-Za-z0-9+/=\s]{64})[A-Za-z0-9+/=\s]*(<)"
    return re.sub(base64_text, rb"\1\2\3", data)


def main() -> None:
    pki = build_pki()
    trust = HERE / "trust"
    trust.mkdir(exist_ok=True)
    (trust / "root.pem").write_bytes(pem_of([pki.root.cert]))
    (trust / "issuing.pem").write_bytes(pem_of([pki.intermediate.cert]))
    (trust / "issuing.crl").write_bytes(pki.crl.public_bytes(Encoding.PEM))
    (trust / "root.crl").write_bytes(pki.root_crl.public_bytes(Encoding.PEM))

    seeds = HERE / "seeds"
    seeds.mkdir(exist_ok=True)
    for old in seeds.iterdir():
        if "-crash-" not in old.name:  # crashes found by the fuzzer stay as seeds (regression inputs)
            old.unlink()
    province = pki.agencies[PROVINCE]
    doc = document(attachment=b"%PDF-1.7\n" + bytes(range(256)) + b"\n%%EOF\n")
    packages = {
        "document-mode": sign(doc, province),
        "envelope-mode": sign(doc, province, reference="envelope"),
        "no-attachment": sign(document(), province),
        "status": sign(status(sender=DEPARTMENT, doc=doc, code="01"), pki.agencies[DEPARTMENT]),
        "revoked-signer": sign(document(), pki.bad("revoked")),
    }
    packages |= {f"sample-{p.stem}": _shrink(p.read_bytes()) for p in sorted(SAMPLES.glob("*.edxml"))}
    content_type, chunks = to_multipart(packages["envelope-mode"], boundary=BOUNDARY)
    body = b"".join(chunks)
    for name, data in packages.items():
        for mode in (0, 1, 2, 5):
            (seeds / f"{mode}-{name}").write_bytes(bytes([mode]) + data)
    for chunk in range(6):  # mode 3 and 4 with each chunk size
        (seeds / f"3-multipart-chunk{chunk}").write_bytes(bytes([3 + 6 * chunk]) + body)
        (seeds / f"4-multipart-chunk{chunk}").write_bytes(
            bytes([4 + 6 * chunk]) + content_type.encode() + b"\n" + body
        )
    print(f"{len(list(seeds.iterdir()))} seeds in {seeds}")


if __name__ == "__main__":
    main()
