"""Everything the codec can say about a package, for ``gateway package inspect`` and the auditor.

The hub rejects at the first problem; an operator looking at a real, messy package wants to see its
header *and* every problem at once. :func:`inspect_package` combines the lenient parse (value-level
problems such as bad base64 do not hide the header) with :func:`~gateway.edxml.validate.violations`.
Signature and trust verdicts are not the codec's: the caller adds them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from gateway.edxml.model import Message
from gateway.edxml.parse import parse_lenient
from gateway.edxml.validate import violations
from gateway.edxml.xmlparser import DEFAULT_LIMITS, XmlLimits
from gateway.errors import GatewayError


@dataclass(frozen=True, slots=True, kw_only=True)
class Inspection:
    """``message`` is ``None`` when nothing could be read (not XML, not edXML, a required element missing)."""

    message: Message | None
    problems: tuple[GatewayError, ...]

    @property
    def ok(self) -> bool:
        return self.message is not None and not self.problems

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(p.code for p in self.problems)


def inspect_package(
    data: bytes, *, today: dt.date, limits: XmlLimits = DEFAULT_LIMITS, strict_organ_id: bool = True
) -> Inspection:
    """Parse leniently and list every parse and field problem in document order; never raises GatewayError."""
    try:
        message, parse_problems = parse_lenient(data, limits=limits)
    except GatewayError as exc:
        return Inspection(message=None, problems=(exc,))
    found = violations(message, today=today, strict_organ_id=strict_organ_id)
    return Inspection(message=message, problems=(*parse_problems, *found))
