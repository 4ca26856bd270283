"""The OpenAPI 3.1 document of the hub, served at ``/openapi.json``.

Written by hand next to the routes (a test checks that every route is documented and every documented
path is routed). Every operation declares the problem responses it can give; every request body and
parameter has a schema tight enough for a property-based client (schemathesis) to explore.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from gateway import __version__
from gateway.errors import REASONS

PROBLEM = {"$ref": "#/components/responses/Problem"}
ORGAN_ID = {"type": "string", "pattern": r"^\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}$", "example": "000.00.31.H53"}
PACKAGE_ID = {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}
FINGERPRINT = {"type": "string", "pattern": "^[0-9a-fA-F:]{64,95}$"}
XML_RECEIPT = {"application/xml": {"schema": {"type": "string"}}}
EDXML_BODY = {
    "application/edxml+xml": {"schema": {"type": "string", "format": "binary"}},
    "application/xml": {"schema": {"type": "string", "format": "binary"}},
}


def _problems(*statuses: int) -> dict[str, Any]:
    return {str(s): PROBLEM for s in statuses}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _path_param(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


_AUTH = (401, 403)


def _paths() -> dict[str, Any]:
    agency_body = {
        "type": "object",
        "required": ["name", "level"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "level": {"enum": ["central", "province", "department", "district", "commune"]},
            "parent": {**ORGAN_ID, "type": ["string", "null"]},
        },
    }
    return {
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": _json({"type": "object"})}}},
        "/readyz": {
            "get": {
                "summary": "Readiness: database reachable, trust store loaded, CRLs not stale",
                "responses": {
                    "200": _json({"type": "object"}),
                    "503": _json({"type": "object"}, "Not ready"),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text exposition format 0.0.4)",
                "responses": {
                    "200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}
                },
            }
        },
        "/openapi.json": {
            "get": {"summary": "This document", "responses": {"200": _json({"type": "object"})}}
        },
        "/v1/packages": {
            "post": {
                "summary": "Send a signed edXML package (single file or multipart/related)",
                "description": (
                    "Streamed to disk while hashed; verified; the mTLS identity must be the From agency or "
                    "a node registered for it; every recipient must be in the directory. 202 with the "
                    "signed hub receipt once committed; the same bytes again: 200 with the same receipt."
                ),
                "requestBody": {
                    "required": True,
                    "content": {
                        **EDXML_BODY,
                        "multipart/related": {"schema": {"type": "string", "format": "binary"}},
                    },
                },
                "responses": {
                    "202": {
                        "description": "Stored; the body is the signed hub receipt",
                        "content": XML_RECEIPT,
                    },
                    "200": {
                        "description": "Already stored (same bytes): the same receipt",
                        "content": XML_RECEIPT,
                    },
                    **_problems(400, *_AUTH, 408, 409, 413, 415, 422),
                },
            }
        },
        "/v1/packages/{package_id}": {
            "get": {
                "summary": "The original bytes of a package (its sender and recipients only)",
                "parameters": [_path_param("package_id", PACKAGE_ID)],
                "responses": {
                    "200": {
                        "description": "The package as received",
                        "content": {
                            "application/edxml+xml": {"schema": {"type": "string", "format": "binary"}},
                            "multipart/related": {"schema": {"type": "string", "format": "binary"}},
                        },
                    },
                    **_problems(*_AUTH, 404),
                },
            }
        },
        "/v1/packages/{package_id}/receipt": {
            "get": {
                "summary": "The hub receipt of a package",
                "parameters": [_path_param("package_id", PACKAGE_ID)],
                "responses": {
                    "200": {"description": "The signed receipt", "content": XML_RECEIPT},
                    **_problems(*_AUTH, 404),
                },
            }
        },
        "/v1/packages/{package_id}/timeline": {
            "get": {
                "summary": "Per recipient: every status with times, and the overdue flag",
                "parameters": [_path_param("package_id", PACKAGE_ID)],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Timeline"}),
                    **_problems(*_AUTH, 404),
                },
            }
        },
        "/v1/inbox": {
            "get": {
                "summary": "Unacknowledged packages and status notices for the caller's agency, oldest first",
                "parameters": [
                    {"name": "agency", "in": "query", "schema": ORGAN_ID},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                    {
                        "name": "wait",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0, "maximum": 3600},
                    },
                ],
                "responses": {"200": _json({"$ref": "#/components/schemas/Inbox"}), **_problems(400, *_AUTH)},
            }
        },
        "/v1/inbox/ack": {
            "post": {
                "summary": "Acknowledge inbox items (they are not returned again)",
                "parameters": [{"name": "agency", "in": "query", "schema": ORGAN_ID}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["item_ids"],
                                "properties": {
                                    "item_ids": {
                                        "type": "array",
                                        "maxItems": 1000,
                                        "items": {"type": "integer"},
                                    }
                                },
                            }
                        }
                    },
                },
                "responses": {"200": _json({"type": "object"}), **_problems(400, *_AUTH, 413)},
            }
        },
        "/v1/status": {
            "post": {
                "summary": "Send a signed status message (01-06 by a recipient, 13 by the sender, 15/16)",
                "requestBody": {"required": True, "content": EDXML_BODY},
                "responses": {
                    "202": {"description": "Applied; the signed hub receipt", "content": XML_RECEIPT},
                    "200": {"description": "Already applied: the same receipt", "content": XML_RECEIPT},
                    **_problems(400, *_AUTH, 404, 408, 409, 413, 415, 422),
                },
            }
        },
        "/v1/agencies": {
            "get": {
                "summary": "The agency directory",
                "parameters": [
                    {
                        "name": "level",
                        "in": "query",
                        "schema": {"enum": ["central", "province", "department", "district", "commune"]},
                    }
                ],
                "responses": {"200": _json({"type": "object"}), **_problems(*_AUTH)},
            }
        },
        "/v1/paper-dispatches": {
            "post": {
                "summary": "Record a document sent on paper only (for the electronic-exchange rate)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/PaperDispatch"}}
                    },
                },
                "responses": {
                    "201": _json({"type": "object"}, "Recorded"),
                    **_problems(400, *_AUTH, 409, 413, 422),
                },
            }
        },
        "/v1/admin/agencies/{organ_id}": {
            "put": {
                "summary": "Add or change an agency (operator)",
                "parameters": [_path_param("organ_id", ORGAN_ID)],
                "requestBody": {"required": True, "content": {"application/json": {"schema": agency_body}}},
                "responses": {"200": _json({"type": "object"}), **_problems(400, *_AUTH, 413)},
            },
            "delete": {
                "summary": "Remove an agency added through the API (operator)",
                "parameters": [_path_param("organ_id", ORGAN_ID)],
                "responses": {"200": _json({"type": "object"}), **_problems(400, *_AUTH)},
            },
        },
        "/v1/admin/agencies/{organ_id}/pins": {
            "post": {
                "summary": "Pin a signing certificate (SHA-256) for an agency (operator)",
                "parameters": [_path_param("organ_id", ORGAN_ID)],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["fingerprint"],
                                "properties": {"fingerprint": FINGERPRINT},
                            }
                        }
                    },
                },
                "responses": {"200": _json({"type": "object"}), **_problems(400, *_AUTH, 413)},
            }
        },
        "/v1/admin/agencies/{organ_id}/pins/{fingerprint}": {
            "delete": {
                "summary": "Remove a pin (operator)",
                "parameters": [_path_param("organ_id", ORGAN_ID), _path_param("fingerprint", FINGERPRINT)],
                "responses": {"200": _json({"type": "object"}), **_problems(400, *_AUTH)},
            }
        },
        "/v1/admin/node-identities": {
            "get": {
                "summary": "Node identities: client certificates allowed to act for an agency (operator)",
                "responses": {"200": _json({"type": "object"}), **_problems(*_AUTH)},
            },
            "post": {
                "summary": "Register a node identity for an agency (operator)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["fingerprint", "organ_id"],
                                "properties": {"fingerprint": FINGERPRINT, "organ_id": ORGAN_ID},
                            }
                        }
                    },
                },
                "responses": {"201": _json({"type": "object"}, "Registered"), **_problems(400, *_AUTH, 413)},
            },
        },
        "/v1/admin/node-identities/{fingerprint}/{organ_id}": {
            "delete": {
                "summary": "Remove a node identity (operator)",
                "parameters": [_path_param("fingerprint", FINGERPRINT), _path_param("organ_id", ORGAN_ID)],
                "responses": {"200": _json({"type": "object"}), **_problems(400, *_AUTH)},
            }
        },
        "/v1/admin/reload": {
            "post": {
                "summary": "Reload trust anchors, CRLs and the directory now (operator)",
                "responses": {"200": _json({"type": "object"}), **_problems(*_AUTH)},
            }
        },
    }


def _components() -> dict[str, Any]:
    event = {
        "type": "object",
        "properties": {
            "code": {"type": "string"},
            "state": {"type": "string"},
            "at": {"type": "string", "format": "date-time"},
            "by": {"type": "string"},
            "description": {"type": ["string", "null"]},
        },
    }
    return {
        "responses": {
            "Problem": {
                "description": "A problem (RFC 9457); `code` is the stable reason",
                "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
            }
        },
        "schemas": {
            "Problem": {
                "type": "object",
                "required": ["type", "title", "status"],
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "code": {"enum": sorted(REASONS)},
                    "instance": {"type": "string"},
                },
            },
            "Inbox": {
                "type": "object",
                "required": ["agency", "items"],
                "properties": {
                    "agency": {"type": "string"},
                    "items": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": [
                                "item_id",
                                "kind",
                                "package_id",
                                "document_id",
                                "sender",
                                "created_at",
                            ],
                            "properties": {
                                "item_id": {"type": "integer"},
                                "kind": {"enum": ["package", "status"]},
                                "package_id": {"type": "string"},
                                "document_id": {"type": "string"},
                                "sender": {"type": "string"},
                                "created_at": {"type": "string", "format": "date-time"},
                                "href": {"type": "string"},
                                "status_code": {"type": ["string", "null"]},
                                "status_from": {"type": ["string", "null"]},
                                "notice": {"type": "string", "contentEncoding": "base64"},
                            },
                        },
                    },
                },
            },
            "Timeline": {
                "type": "object",
                "properties": {
                    "package_id": {"type": "string"},
                    "document_id": {"type": "string"},
                    "sender": {"type": "string"},
                    "received_at": {"type": "string", "format": "date-time"},
                    "electronic": {"type": "boolean"},
                    "reason": {"type": ["string", "null"]},
                    "recipients": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "organ_id": {"type": "string"},
                                "state": {"type": "string"},
                                "overdue": {"type": "boolean"},
                                "deadline": {"type": ["string", "null"]},
                                "events": {"type": "array", "items": event},
                            },
                        },
                    },
                },
            },
            "PaperDispatch": {
                "type": "object",
                "required": ["sender", "recipient", "document_id", "sent_on"],
                "properties": {
                    "sender": ORGAN_ID,
                    "recipient": ORGAN_ID,
                    "document_id": {"type": "string", "minLength": 1, "maxLength": 200},
                    "sent_on": {"type": "string", "format": "date"},
                    "subject": {"type": "string", "maxLength": 500},
                },
            },
        },
        "securitySchemes": {
            "mutualTLS": {"type": "mutualTLS", "description": "A client certificate from the trust store"}
        },
    }


@cache
def _document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "LGSP hub",
            "version": __version__,
            "description": "Inter-agency e-document exchange hub (edXML, QCVN 102:2016). See docs/api.md.",
        },
        "security": [{"mutualTLS": []}],
        "paths": _paths(),
        "components": _components(),
    }


def document() -> dict[str, Any]:
    """A fresh copy of the OpenAPI document (callers may modify it, e.g. to set ``servers``)."""
    return copy.deepcopy(_document())
