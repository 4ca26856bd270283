"""The node's HTTPS client for the hub's public API (docs/api.md), over mutual TLS.

The client presents the agency certificate (with its intermediates) and accepts only a hub certificate
that chains to the configured CA and names the host it was asked for; TLS 1.2 is the floor and
verification is never disabled. Failures are split the way the outbox needs them:
:class:`HubUnavailable` (connection refused or reset, timeouts, 5xx, 408, 429: retry the same bytes later)
and :class:`HubRefused` (any other 4xx problem: the same bytes will always be refused).
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509

from gateway.errors import GatewayError
from gateway.trust.files import load_issued, pem_of

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class HubUnavailable(GatewayError):
    status = 503

    def __init__(self, detail: str) -> None:
        super().__init__("node.hub_unavailable", detail)


class HubRefused(GatewayError):
    """A problem document from the hub; ``problem_code`` is its stable code (e.g. ``signature.sha1``)."""

    status = 422

    def __init__(self, http_status: int, problem: dict[str, Any]) -> None:
        self.http_status = http_status
        self.problem = problem
        self.problem_code = str(problem.get("code") or f"http.{http_status}")
        super().__init__(
            "node.hub_refused",
            f"{http_status} {self.problem_code}: {problem.get('detail') or problem.get('title')}",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


def tls_context(*, cert_dir: Path, ca_files: list[Path], work_dir: Path) -> ssl.SSLContext:
    """Client TLS: the agency certificate and intermediates (written once to ``work_dir``) and the CAs."""
    issued = load_issued(cert_dir)
    intermediates = [c for c in issued.chain if c.subject != c.issuer]
    chain_file = work_dir / "client-chain.pem"
    chain_file.parent.mkdir(parents=True, exist_ok=True)
    chain_pem = pem_of([issued.cert, *intermediates])
    if not chain_file.exists() or chain_file.read_bytes() != chain_pem:
        chain_file.write_bytes(chain_pem)
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    cadata = b"".join(p.read_bytes() for p in ca_files)
    certs = x509.load_pem_x509_certificates(cadata) if cadata.strip() else []
    if not certs:
        raise GatewayError("config.invalid", "no CA certificate to check the hub's TLS certificate against")
    ctx.load_verify_locations(cadata=pem_of(certs).decode("ascii"))
    ctx.load_cert_chain(str(chain_file), str(cert_dir / "key.pem"))
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname
    return ctx


class HubClient:
    """One aiohttp session to one hub. Use as an async context manager."""

    def __init__(self, base_url: str, ssl_context: ssl.SSLContext, *, timeout: float = 120.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._ssl = ssl_context
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HubClient:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._ssl, limit=8),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=self._timeout),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        data: bytes | None = None,
        content_type: str | None = None,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        read_timeout: float | None = None,
    ) -> Reply:
        assert self._session is not None, "use HubClient as an async context manager"
        headers = {"Content-Type": content_type} if content_type else {}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=read_timeout or self._timeout)
        try:
            async with self._session.request(
                method,
                self.base_url + path,
                data=data,
                json=json_body,
                params=params,
                headers=headers,
                timeout=timeout,
            ) as resp:
                body = await resp.read()
                reply = Reply(
                    status=resp.status,
                    body=body,
                    content_type=resp.headers.get("Content-Type", ""),
                    headers={k.lower(): v for k, v in resp.headers.items()},
                )
        except aiohttp.ClientSSLError as exc:
            # A TLS failure is not a flaky network: the hub's identity or ours is wrong. Still retryable
            # (certificates get fixed), but reported precisely.
            raise HubUnavailable(f"TLS with the hub failed: {exc}") from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise HubUnavailable(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        if reply.status in RETRYABLE_STATUS:
            raise HubUnavailable(f"{method} {path}: HTTP {reply.status}")
        if reply.status >= 400:
            try:
                problem = reply.json()
                if not isinstance(problem, dict):
                    raise ValueError
            except ValueError:
                problem = {"detail": reply.body[:200].decode("utf-8", "replace")}
            raise HubRefused(reply.status, problem)
        return reply

    # --- the API --------------------------------------------------------------------------------------
    async def post_package(self, data: bytes, content_type: str) -> Reply:
        return await self.request("POST", "/v1/packages", data=data, content_type=content_type)

    async def post_status(self, data: bytes) -> Reply:
        return await self.request("POST", "/v1/status", data=data, content_type="application/edxml+xml")

    async def inbox(
        self, *, wait: int = 0, limit: int = 100, agency: str | None = None
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit, "wait": wait}
        if agency:
            params["agency"] = agency
        reply = await self.request("GET", "/v1/inbox", params=params, read_timeout=self._timeout + wait)
        items = reply.json().get("items", [])
        return list(items)

    async def ack(self, item_ids: list[int], *, agency: str | None = None) -> int:
        params = {"agency": agency} if agency else None
        reply = await self.request("POST", "/v1/inbox/ack", json_body={"item_ids": item_ids}, params=params)
        return int(reply.json().get("acknowledged", 0))

    async def package(self, package_id: str) -> Reply:
        return await self.request("GET", f"/v1/packages/{package_id}")

    async def receipt(self, package_id: str) -> bytes:
        return (await self.request("GET", f"/v1/packages/{package_id}/receipt")).body

    async def timeline(self, package_id: str) -> dict[str, Any]:
        return dict((await self.request("GET", f"/v1/packages/{package_id}/timeline")).json())
