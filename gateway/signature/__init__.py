"""XML signatures of edXML packages (DESIGN §3): the profile, signing and verification. Pure: no I/O.

Signing imports the edXML builder; import :mod:`gateway.signature.sign` and
:mod:`gateway.signature.verify` directly.
"""
