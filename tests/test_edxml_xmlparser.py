"""Hostile XML: each attack is refused, before or without doing the damage, with its own code."""

from __future__ import annotations

import pybase64
import pytest
from lxml import etree

from gateway.edxml.xmlparser import DEFAULT_LIMITS, XmlLimits, check_tree, make_parser, parse_xml
from gateway.errors import GatewayError, InputError, InputTooLarge


def code_of(data: bytes, limits: XmlLimits = DEFAULT_LIMITS) -> str:
    with pytest.raises(GatewayError) as info:
        parse_xml(data, limits=limits)
    assert isinstance(info.value, InputError)
    return info.value.code


def test_plain_document_parses() -> None:
    doc = '<?xml version="1.0" encoding="UTF-8"?>\n<a xmlns="urn:x"><!-- c --><b>Đà Nẵng</b></a>'
    root = parse_xml(doc.encode())
    assert root[1].text == "Đà Nẵng"


def test_utf8_bom_and_lowercase_encoding_are_fine() -> None:
    assert parse_xml(b'\xef\xbb\xbf<?xml version="1.0" encoding="utf-8"?><a/>').tag == "a"


def test_xxe_file_is_refused() -> None:
    doc = b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]><a>&e;</a>'
    assert code_of(doc) == "xml.entity_forbidden"


def test_xxe_http_is_refused_without_network() -> None:
    doc = b'<!DOCTYPE a [<!ENTITY e SYSTEM "http://127.0.0.1:9/evil">]><a>&e;</a>'
    assert code_of(doc) == "xml.entity_forbidden"


def test_parameter_entity_is_refused() -> None:
    doc = b'<!DOCTYPE a [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]><a/>'
    assert code_of(doc) == "xml.entity_forbidden"


def test_billion_laughs_is_refused() -> None:
    entities = b'<!ENTITY lol "lol">' + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
        for i in range(1, 10)
    )
    doc = b"<!DOCTYPE lolz [" + entities + b"]><lolz>&lol9;</lolz>"
    assert code_of(doc) == "xml.entity_forbidden"


def test_quadratic_blowup_is_refused() -> None:
    doc = b'<!DOCTYPE a [<!ENTITY x "' + b"x" * 50_000 + b'">]><a>' + b"&x;" * 20_000 + b"</a>"
    assert code_of(doc) == "xml.entity_forbidden"


def test_external_dtd_is_refused() -> None:
    assert code_of(b'<!DOCTYPE a SYSTEM "http://127.0.0.1:9/a.dtd"><a/>') == "xml.dtd_forbidden"


def test_internal_dtd_without_entities_is_refused() -> None:
    assert code_of(b"<!DOCTYPE a [<!ELEMENT a (#PCDATA)>]><a/>") == "xml.dtd_forbidden"


def test_doctype_after_comment_and_pi_still_found() -> None:
    assert code_of(b'<?xml version="1.0"?><!-- x --><!DOCTYPE a><a/>') == "xml.dtd_forbidden"


def test_undeclared_entity_reference_is_refused() -> None:
    assert code_of(b"<a>&e;</a>") == "xml.entity_forbidden"


def test_character_references_are_not_entities() -> None:
    assert parse_xml(b"<a>&#272;&amp;&lt;</a>").text == "Đ&<"


def test_xinclude_is_refused() -> None:
    doc = b'<a xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="/etc/passwd" parse="text"/></a>'
    assert code_of(doc) == "xml.xinclude_forbidden"


@pytest.mark.parametrize(
    "doc",
    [
        b'<?xml version="1.0"?><?xml-stylesheet href="x.xsl"?><a/>',
        b"<a><?php echo 1; ?></a>",
        b"<a/><?after?>",
    ],
)
def test_processing_instructions_are_refused(doc: bytes) -> None:
    assert code_of(doc) == "xml.processing_instruction"


def test_deep_nesting_10000_levels() -> None:
    doc = b"<a>" * 10_000 + b"</a>" * 10_000
    assert code_of(doc) == "xml.too_deep"


def test_depth_beyond_our_limit_but_within_libxml2() -> None:
    doc = b"<a>" * 65 + b"</a>" * 65
    assert code_of(doc) == "xml.too_deep"
    assert parse_xml(b"<a>" * 64 + b"</a>" * 64) is not None
    assert parse_xml(doc, limits=XmlLimits(max_depth=100)) is not None


def test_oversize_is_refused_before_parsing() -> None:
    limits = XmlLimits(max_bytes=1024)
    with pytest.raises(InputTooLarge) as info:
        parse_xml(b"<a>" + b"x" * 2000 + b"</a>", limits=limits)
    assert info.value.code == "input.too_large"
    assert info.value.status == 413


def test_oversize_check_does_not_read_the_input() -> None:
    """The length alone decides: a view over a buffer that is not even XML is refused as too large."""
    limits = XmlLimits(max_bytes=10 * 1024 * 1024)
    big = memoryview(bytearray(200 * 1024 * 1024))  # untouched zero pages; parse_xml copies nothing
    with pytest.raises(InputTooLarge) as info:
        parse_xml(big, limits=limits)  # type: ignore[arg-type]
    assert "209715200 bytes" in info.value.detail


def test_empty_input() -> None:
    assert code_of(b"") == "input.empty"
    assert code_of(b"  \n ") == "input.empty"
    assert code_of(b" " * 10_000) == "input.empty"
    assert parse_xml(b" " * 5000 + b"<a/>").tag == "a"  # leading blanks are not emptiness


def test_huge_text_over_a_small_limit() -> None:
    assert code_of(b"<a>" + b"A" * 5000 + b"</a>", XmlLimits(max_text_bytes=4096)) == "xml.text_too_large"


def test_text_limit_counts_utf8_bytes() -> None:
    text = "Đ".encode() * 1500  # 1,500 characters, 3,000 bytes
    assert code_of(b"<a>" + text + b"</a>", XmlLimits(max_text_bytes=2048)) == "xml.text_too_large"
    assert parse_xml(b"<a>" + text + b"</a>", limits=XmlLimits(max_text_bytes=3000)) is not None


def test_attribute_values_count_as_text() -> None:
    assert code_of(b'<a b="' + b"x" * 5000 + b'"/>', XmlLimits(max_text_bytes=4096)) == "xml.text_too_large"


@pytest.mark.parametrize(
    "doc",
    [
        b"<a>\xff\xfe</a>",
        b"<a>\xc0\xaf</a>",  # overlong
        b"<a>\xed\xa0\x80</a>",  # surrogate
        b'<a b="\xff"/>',
        b"<a><!-- \xff --></a>",
    ],
)
def test_invalid_utf8(doc: bytes) -> None:
    assert code_of(doc) == "xml.encoding"


@pytest.mark.parametrize(
    "doc",
    [
        b'<?xml version="1.0" encoding="ISO-8859-1"?><a>\xe9</a>',
        b'<?xml version="1.0" encoding="EBCDIC"?><a/>',
        '<?xml version="1.0" encoding="UTF-16"?><a/>'.encode("utf-16"),
        "<a/>".encode("utf-16-le"),
    ],
)
def test_other_encodings_are_refused(doc: bytes) -> None:
    assert code_of(doc) == "xml.encoding"


@pytest.mark.parametrize(
    "doc",
    [b"<a>", b"<a></b>", b"1212<?xml version='1.0'?><a/>", b"<a>\x01</a>", b"<a/><b/>", b"not xml"],
)
def test_malformed(doc: bytes) -> None:
    with pytest.raises(InputError) as info:
        parse_xml(doc)
    assert info.value.code == "xml.malformed"
    assert info.value.detail  # lxml's message, for the operator
    assert isinstance(info.value.__cause__, etree.XMLSyntaxError)


def test_undeclared_attribute_prefix_is_tolerated() -> None:
    """Real manifests write ``xlink:href`` without declaring xlink; that must not cost the package."""
    root = parse_xml(b'<a xmlns="urn:x"><b xlink:href="">t</b></a>')
    assert root[0].get("xlink:href") == ""


def test_undeclared_prefix_plus_real_error_is_still_malformed() -> None:
    assert code_of(b'<a><b xlink:href="">t</c></a>') == "xml.malformed"


def test_make_parser_is_strict_and_hardened() -> None:
    parser = make_parser()
    doc = b'<!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]><a>&e;</a>'
    root = etree.fromstring(doc, parser)
    assert "root:" not in etree.tostring(root).decode()  # not expanded
    with pytest.raises(InputError) as info:
        check_tree(root)
    assert info.value.code == "xml.dtd_forbidden"
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(b'<a><b xlink:href=""/></a>', make_parser())


def test_large_base64_text_node_parses() -> None:
    """20 MB in one text node (an inline attachment) parses with the default limits.

    libxml2 alone caps text nodes at 10 MB; linearity is measured in ``bench/``, not asserted here.
    """
    blob = pybase64.b64encode(bytes(range(256)) * 60_000)  # ≈ 20 MB of base64
    root = parse_xml(b'<?xml version="1.0" encoding="UTF-8"?><a><b>' + blob + b"</b></a>")
    assert len(blob) > 20_000_000
    assert len(root[0].text) == len(blob)


@pytest.mark.parametrize(
    ("doc", "code"),
    [
        (b"<a>" * 64 + b"<!-- deepest -->" + b"</a>" * 64, "xml.too_deep"),  # a comment counts as a level
        (b"<a>" * 63 + b"<!-- fits -->" + b"</a>" * 63, None),
        (b"<a>" * 10 + b"<?pi deep?>" + b"</a>" * 10, "xml.processing_instruction"),
        (b'<a><b><c xmlns="http://www.w3.org/2003/XInclude"/></b></a>', "xml.xinclude_forbidden"),
        (b"<a>" + b"<b>x</b>" * 500 + b"<c>" * 70 + b"</c>" * 70 + b"</a>", "xml.too_deep"),
    ],
)
def test_nodes_anywhere_in_the_tree(doc: bytes, code: str | None) -> None:
    if code is None:
        assert parse_xml(doc) is not None
    else:
        assert code_of(doc) == code


def test_depth_limit_of_zero_refuses_everything() -> None:
    assert code_of(b"<a/>", XmlLimits(max_depth=0)) == "xml.too_deep"
    assert parse_xml(b"<a/>", limits=XmlLimits(max_depth=1)) is not None
    assert code_of(b"<a><b/></a>", XmlLimits(max_depth=1)) == "xml.too_deep"


def test_check_tree_without_the_input_size_walks_every_text() -> None:
    """The text walk is skipped only when the caller says the whole input fits the limit."""
    limits = XmlLimits(max_text_bytes=4096)
    for doc in (
        b"<a><b/>" + b"x" * 5000 + b"</a>",
        b'<a><b c="' + b"y" * 5000 + b'"/></a>',
        b"<a>" + b"z" * 5000 + b"</a>",
    ):
        root = etree.fromstring(doc, make_parser())
        with pytest.raises(InputError) as info:
            check_tree(root, limits=limits)
        assert info.value.code == "xml.text_too_large"
        check_tree(root, limits=XmlLimits(max_text_bytes=5000))
        check_tree(root, limits=limits, source_size=4096)  # what the caller vouches for


def test_each_parse_judges_its_own_errors() -> None:
    """The parser is reused per thread: what an earlier input logged must not decide the next verdict."""
    tolerated = b'<a xmlns="urn:x"><b xlink:href="">t</b></a>'
    for _ in range(2):
        assert code_of(b'<a><b xlink:href="">t</c></a>') == "xml.malformed"
        assert parse_xml(tolerated)[0].get("xlink:href") == ""
        assert code_of(b"<a>&undefined;</a>") == "xml.entity_forbidden"
        assert parse_xml(b"<a><b/></a>")[0].tag == "b"


def test_parsing_in_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    inputs = [
        (b"<a><b/></a>", None),
        (b'<a xmlns="urn:x"><b xlink:href="">t</b></a>', None),
        (b'<a><b xlink:href="">t</c></a>', "xml.malformed"),
        (b"<a>&undefined;</a>", "xml.entity_forbidden"),
    ] * 200

    def verdict(case: tuple[bytes, str | None]) -> bool:
        doc, expected = case
        try:
            parse_xml(doc)
        except GatewayError as exc:
            return exc.code == expected
        return expected is None

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(verdict, inputs))
