"""Hardened XML parsing: the only way bytes from outside become an lxml tree.

Why this module exists (DESIGN §3): packages come from other agencies' systems and cross the network, so
the parser must never expand entities, read a DTD, touch the file system or the network, or let a small
input grow into a large tree. libxml2's own limits are not ours: its ``huge_tree`` switch lifts the 10 MB
text-node cap that large inline attachments need, but also lifts other caps, so :func:`parse_xml`
enforces :class:`XmlLimits` itself, before parsing (size) and after (depth, text size), iteratively.

Every failure is a :class:`~gateway.errors.InputError` with its own code; lxml exceptions are translated
once, here, with ``raise ... from exc``.

Tolerance: real packages carry ``xlink:href`` without declaring ``xlink`` (see the interop samples).
That breaks namespace well-formedness only, not XML well-formedness, so a document whose *only* errors
are undeclared namespace prefixes is re-read in libxml2's recovery mode and the attribute keeps its
literal name (``xlink:href``). Any other error is fatal. :func:`make_parser` (handed to signxml) does not
have this tolerance: it is a plain strict parser.
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass

from lxml import etree

from gateway.errors import GatewayError, InputError, InputTooLarge

MiB = 1024 * 1024

XINCLUDE_NAMESPACES = frozenset({"http://www.w3.org/2001/XInclude", "http://www.w3.org/2003/XInclude"})


@dataclass(frozen=True, slots=True, kw_only=True)
class XmlLimits:
    """What one XML input may cost.

    ``max_text_bytes`` is large by default because single-file packages carry attachments as one base64
    text node; it is measured in UTF-8 bytes. ``max_depth`` counts the root as depth 1; edXML needs about
    10, an XML-DSig signature inside it a few more.
    """

    max_bytes: int = 100 * MiB
    max_depth: int = 64
    max_text_bytes: int = 100 * MiB


DEFAULT_LIMITS = XmlLimits()

_UTF8_BOM = b"\xef\xbb\xbf"
# BOMs and first-byte patterns of the encodings libxml2 would otherwise auto-detect (UTF-16/32, EBCDIC).
_FOREIGN_STARTS = (
    b"\x00\x00\xfe\xff",
    b"\xff\xfe\x00\x00",
    b"\xfe\xff",
    b"\xff\xfe",
    b"\x00\x00\x00<",
    b"<\x00\x00\x00",
    b"\x00<",
    b"<\x00",
    b"\x4c\x6f\xa7\x94",
)
_XML_DECL = re.compile(
    rb"<\?xml\s+version\s*=\s*(?:\"[^\"]*\"|'[^']*')"
    rb"(?:\s+encoding\s*=\s*(?:\"(?P<e1>[^\"]*)\"|'(?P<e2>[^']*)'))?"
)
_NON_SPACE = re.compile(rb"[^ \t\r\n]")
_UTF8_NAMES = frozenset({"utf-8", "utf8"})
_PROLOG_LIMIT = 64 * 1024  # how far the DOCTYPE pre-scan looks; a prolog longer than this is not edXML
_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
_SUBSET_END = re.compile(rb"\]\s*>")

_ENCODING_ERRORS = frozenset({"ERR_INVALID_ENCODING", "ERR_UNSUPPORTED_ENCODING", "ERR_UNKNOWN_ENCODING"})
_ENTITY_ERRORS = frozenset(
    {"ERR_UNDECLARED_ENTITY", "WAR_UNDECLARED_ENTITY", "ERR_ENTITY_LOOP", "ERR_ENTITY_PE_INTERNAL"}
)


def make_parser(limits: XmlLimits = DEFAULT_LIMITS) -> etree.XMLParser:
    """A strict lxml parser with every dangerous feature off and libxml2's text-node cap lifted.

    A new parser per call: lxml parsers keep an error log, and a shared log would mix inputs. The size,
    depth and text limits are not expressible as libxml2 options; code that parses with this parser
    directly (signxml's ``parser=``) must check the size before and call :func:`check_tree` after.
    ``limits`` is accepted so callers state which limits the parse belongs to.
    """
    del limits  # documented above: libxml2 cannot enforce them
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        attribute_defaults=False,
        huge_tree=True,
        remove_blank_text=False,
        remove_comments=False,
        remove_pis=False,
        collect_ids=False,
    )


_THREAD = threading.local()


def _strict_parser() -> etree.XMLParser:
    """This thread's :func:`make_parser` parser, made once (a new one per input costs a libxml2 context).

    Safe to reuse: lxml clears a parser's error log when a parse starts, and a parser private to a thread
    never serves two parses at once, so the log read after a failure is that input's.
    """
    parser: etree.XMLParser | None = getattr(_THREAD, "parser", None)
    if parser is None:
        parser = _THREAD.parser = make_parser()
    return parser


def _recovering_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        attribute_defaults=False,
        huge_tree=True,
        recover=True,
        collect_ids=False,
    )


def parse_xml(data: bytes, *, limits: XmlLimits = DEFAULT_LIMITS) -> etree._Element:
    """Parse untrusted bytes into a tree, or raise an :class:`InputError` that says precisely why not.

    Order matters: the size is checked before anything is read, the encoding and DOCTYPE are found by a
    bounded scan of the prolog before libxml2 sees the document, and the tree is checked afterwards.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("parse_xml takes bytes")
    size = len(data)
    if size > limits.max_bytes:
        raise InputTooLarge("input.too_large", f"{size} bytes; the limit is {limits.max_bytes}")
    if size == 0 or _NON_SPACE.search(data) is None:  # stops at the first non-blank byte
        raise InputError("input.empty")
    data = bytes(data)
    _prescan(data)
    root = _parse(data)
    check_tree(root, limits=limits, source_size=len(data))
    return root


def _prescan(data: bytes) -> None:
    """Reject non-UTF-8 encodings and any DOCTYPE from the prolog, without parsing."""
    head = data[:_PROLOG_LIMIT]
    if head.startswith(_FOREIGN_STARTS):
        raise InputError("xml.encoding", "only UTF-8 is accepted (UTF-16/32 or EBCDIC detected)")
    body = head[len(_UTF8_BOM) :] if head.startswith(_UTF8_BOM) else head
    decl = _XML_DECL.match(body)
    if decl:
        name = decl.group("e1") or decl.group("e2")
        if name is not None and name.decode("ascii", "replace").strip().lower() not in _UTF8_NAMES:
            raise InputError("xml.encoding", f"declared encoding {name.decode('ascii', 'replace')!r}")
    # A DOCTYPE can only stand in the prolog, i.e. before the first element; in the prolog '<!DOCTYPE'
    # cannot hide inside markup except in a comment or PI, which would make us over-reject, never under.
    first_element = _first_element_offset(body)
    doctype = _DOCTYPE.search(body, 0, first_element)
    if doctype:
        end = _SUBSET_END.search(body, doctype.end())
        subset = body[doctype.end() : end.end() if end else len(body)]
        if b"<!ENTITY" in subset:
            raise InputError("xml.entity_forbidden", "the document type declaration declares entities")
        raise InputError("xml.dtd_forbidden")


def _first_element_offset(body: bytes) -> int:
    """Offset of the first ``<`` that opens an element (not ``<?``, ``<!``), or the scan window's end."""
    pos = 0
    while True:
        pos = body.find(b"<", pos)
        if pos < 0 or pos + 1 >= len(body):
            return len(body)
        nxt = body[pos + 1 : pos + 2]
        if nxt not in (b"?", b"!"):
            return pos
        if body.startswith(b"<!--", pos):
            end = body.find(b"-->", pos + 4)
            if end < 0:
                return len(body)
            pos = end + 3
        else:
            pos += 2


def _parse(data: bytes) -> etree._Element:
    parser = _strict_parser()
    try:
        return etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        errors = list(parser.error_log)
        if errors and all(e.type_name == "NS_ERR_UNDEFINED_NAMESPACE" for e in errors):
            return _parse_tolerating_prefixes(data, exc)
        raise _translate(exc, errors) from exc


def _parse_tolerating_prefixes(data: bytes, first: etree.XMLSyntaxError) -> etree._Element:
    """Re-read a document whose only defect is undeclared namespace prefixes (see the module docstring)."""
    parser = _recovering_parser()
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:  # pragma: no cover - the strict pass already saw only ns errors
        raise _translate(exc, list(parser.error_log)) from exc
    errors = list(parser.error_log)
    if root is None or any(e.type_name != "NS_ERR_UNDEFINED_NAMESPACE" for e in errors):
        raise _translate(first, errors) from first
    return root


def _translate(exc: etree.XMLSyntaxError, errors: list[etree._LogEntry]) -> GatewayError:
    """Map libxml2's error log to our codes; the first matching class of error decides."""
    names = {e.type_name for e in errors}
    message = str(exc.msg if hasattr(exc, "msg") and exc.msg else exc)
    if names & _ENCODING_ERRORS:
        return InputError("xml.encoding", message)
    if names & _ENTITY_ERRORS:
        return InputError("xml.entity_forbidden", message)
    if any("Excessive depth" in e.message for e in errors):
        return InputError("xml.too_deep", message)
    if any("Text node too long" in e.message or "huge" in e.message.lower() for e in errors):
        return InputError("xml.text_too_large", message)
    return InputError("xml.malformed", message)


def check_tree(
    root: etree._Element, *, limits: XmlLimits = DEFAULT_LIMITS, source_size: int | None = None
) -> None:
    """Check an already-parsed tree against the hardening rules and ``limits``.

    Public because code that parses with :func:`make_parser` itself (signature verification) must apply
    the same rules to what it gets. ``source_size``: the byte length of the input the tree was parsed from,
    if known. No text node or attribute value can be longer in UTF-8 than its input (entities are never
    expanded, character references and line-end normalisation only shrink), so the text walk is skipped
    when the whole input fits the text limit.

    Everything is found without a Python loop over the nodes: forbidden node kinds by lxml's tag-filtered
    iteration, depth by one compiled XPath that libxml2 evaluates (no recursion either way: a recursive
    walk would itself be the stack-depth problem it is meant to detect).
    """
    tree = root.getroottree()
    info = tree.docinfo
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        raise InputError("xml.dtd_forbidden")
    encoding = (info.encoding or "UTF-8").lower()
    if encoding not in _UTF8_NAMES:
        raise InputError("xml.encoding", f"document encoding {info.encoding!r}")
    for sibling in (*root.itersiblings(preceding=True), *root.itersiblings()):
        if isinstance(sibling, etree._ProcessingInstruction):
            raise InputError("xml.processing_instruction", f"<?{sibling.target}?> outside the root element")
    for node in root.iter(etree.Entity, etree.ProcessingInstruction, *_XINCLUDE_TAGS):
        if isinstance(node, etree._Entity):
            raise InputError("xml.entity_forbidden", f"entity reference &{node.name};")
        if isinstance(node, etree._ProcessingInstruction):
            raise InputError("xml.processing_instruction", f"<?{node.target}?>")
        raise InputError("xml.xinclude_forbidden", f"element {node.tag}")
    if limits.max_depth < 1 or _too_deep(limits.max_depth)(root):
        raise InputError("xml.too_deep", f"nesting deeper than {limits.max_depth} elements")
    max_text = limits.max_text_bytes
    if source_size is not None and source_size <= max_text:
        return
    for node in root.iter():
        _check_text(node.tail, max_text)
        if isinstance(node, etree._Comment | etree._ProcessingInstruction | etree._Entity):
            continue
        _check_text(node.text, max_text)
        for value in node.attrib.values():
            _check_text(value, max_text)


_XINCLUDE_TAGS = tuple(f"{{{ns}}}*" for ns in sorted(XINCLUDE_NAMESPACES))


@functools.lru_cache(maxsize=8)
def _too_deep(max_depth: int) -> etree.XPath:
    """An XPath that is true when a node (element, comment, PI) sits deeper than ``max_depth``.

    The root is depth 1, so with the root as context ``k`` child steps reach depth ``k + 1``: the
    ``max_depth``-th step looks for anything but text below the deepest allowed element.
    """
    steps = "*/" * (max_depth - 1) + "node()[not(self::text())]"
    return etree.XPath(f"boolean({steps})")


def _check_text(text: str | None, limit: int) -> None:
    """Compare a text's UTF-8 size with the limit, encoding only when the character count cannot decide."""
    if text is None or len(text) * 4 <= limit:
        return
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise InputError("xml.text_too_large", f"a text node of {size} bytes; the limit is {limit}")
