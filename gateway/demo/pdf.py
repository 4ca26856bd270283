"""A one-page PDF written by hand, so the demo's dispatches carry a real, openable attachment without a
PDF library.

The text uses the standard Helvetica font, which only covers Latin-1: Vietnamese letters are written
without their diacritics (the edXML metadata keeps them; the attachment is only there to be opened).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

_SPECIAL = str.maketrans({"đ": "d", "Đ": "D"})


def ascii_text(text: str) -> str:
    """``Về việc triển khai`` → ``Ve viec trien khai`` (Helvetica has no Vietnamese glyphs)."""
    decomposed = unicodedata.normalize("NFD", text.translate(_SPECIAL))
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return plain.encode("ascii", "replace").decode("ascii")


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}".strip()
    if current:
        lines.append(current)
    return lines or [""]


def make_pdf(title: str, paragraphs: Sequence[str]) -> bytes:
    """A valid PDF 1.4 document of one A4 page: a bold title and wrapped paragraphs."""
    ops = ["BT", "/F2 14 Tf", "16 TL", "56 780 Td"]
    for line in _wrap(ascii_text(title), 70):
        ops.append(f"({_escape(line)}) Tj T*")
    ops += ["/F1 11 Tf", "14 TL", "T*"]
    for paragraph in paragraphs:
        for line in _wrap(ascii_text(paragraph), 90):
            ops.append(f"({_escape(line)}) Tj T*")
        ops.append("T*")
    ops.append("ET")
    stream = "\n".join(ops).encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 4 0 R /F2 5 0 R >> >> /Contents 6 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)
