"""LGSP gateway: the provincial e-document exchange hub and the agency-side node (edXML, QCVN 102:2016)."""

__version__ = "0.1.0"
