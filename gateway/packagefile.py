"""A package as a file on disk, in either carriage form.

The single-file form is the edXML document itself. The multipart form has no standard file shape, so
the gateway writes it as a MIME entity: one ``Content-Type: multipart/related; …`` header line, a blank
line, then the multipart body, exactly as it travels over HTTP. Reading streams the file through the
multipart reader, so a large package is hashed in constant memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from gateway.edxml.model import AttachmentDigest
from gateway.edxml.multipart import DiscardSink, MultipartReader, ReceivedPart, Sink
from gateway.errors import InputError, UsageError

CHUNK = 1 << 20
_HEADER = b"content-type:"
_MAX_HEADER = 4096

S = TypeVar("S", bound=Sink)


@dataclass(frozen=True, slots=True, kw_only=True)
class PackageFile(Generic[S]):
    """What a package file holds: the edXML bytes and, for the multipart form, the measured parts."""

    edxml: bytes
    content_type: str | None = None
    parts: tuple[ReceivedPart[S], ...] = ()

    @property
    def is_multipart(self) -> bool:
        return self.content_type is not None

    def digests(self) -> dict[str, AttachmentDigest] | None:
        return {p.content_id: p.digest for p in self.parts} if self.is_multipart else None


def write_multipart_file(path: Path, content_type: str, body: Iterable[bytes]) -> None:
    """Write a multipart package as a MIME entity (header line, blank line, body), streaming the body."""
    tmp = path.with_name(path.name + ".part")
    with tmp.open("wb") as out:
        out.write(b"Content-Type: " + content_type.encode("ascii") + b"\r\n\r\n")
        for chunk in body:
            out.write(chunk)
    tmp.replace(path)


def read_package_file(
    path: Path,
    *,
    sink_factory: Callable[[str, str], S] = DiscardSink,  # type: ignore[assignment]
) -> PackageFile[S]:
    """Read a package file of either form; multipart parts go to ``sink_factory`` while hashed."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise UsageError("usage", f"cannot read {path}: {exc.strerror}") from exc
    with handle:
        head = handle.read(_MAX_HEADER)
        if head[: len(_HEADER)].lower() != _HEADER:
            return PackageFile(edxml=head + handle.read())
        end = head.find(b"\r\n\r\n")
        sep = 4
        if end < 0:
            end, sep = head.find(b"\n\n"), 2
        if end < 0:
            raise InputError("multipart.malformed", f"{path}: the Content-Type header line does not end")
        content_type = head[len(_HEADER) : end].decode("ascii", "replace").strip()
        reader = MultipartReader(content_type, sink_factory=sink_factory)
        reader.feed(head[end + sep :])
        while chunk := handle.read(CHUNK):
            reader.feed(chunk)
        result = reader.close()
    return PackageFile(edxml=result.edxml, content_type=content_type, parts=result.parts)
