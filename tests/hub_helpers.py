"""Helpers for the hub tests and benchmark: PKI files on disk, a hub config, signed packages, a hub process.

Everything is real: certificates from :mod:`pki_fixtures`, signatures by :mod:`gateway.signature`, TLS by
the standard library, the hub as ``python -m gateway.hub.server`` in its own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import datetime as dt
import http.client
import json
import mmap
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pki_fixtures import PkiSet

from gateway.edxml.model import (
    Attachment,
    Bussiness,
    Code,
    DocumentPackage,
    ManifestReference,
    MessageHeader,
    Organization,
    PromulgationInfo,
    ResponseFor,
    StatusHeader,
    StatusMessage,
    TraceHeaderList,
)
from gateway.hub.config import HubConfig
from gateway.signature.sign import sign_message
from gateway.trust.files import key_pem, pem_of
from gateway.trust.pki import Issued

VN = dt.timezone(dt.timedelta(hours=7))
PROVINCE = "000.00.00.H53"
DEPARTMENT = "000.00.02.H53"
FINANCE = "000.00.03.H53"
DISTRICT = "000.00.31.H53"
COMMUNE = "000.21.31.H53"
MINISTRY = "000.00.00.G12"
UNLISTED = "000.00.09.H53"
"""A well-formed agency code that is not in the test directory."""

DIRECTORY_TOML = f"""
[hub]
name = "LGSP Tây Ninh"

[[agencies]]
organ_id = "{MINISTRY}"
name = "Bộ Nội vụ"
level = "central"

[[agencies]]
organ_id = "{PROVINCE}"
name = "Ủy ban nhân dân tỉnh Tây Ninh"
level = "province"

[[agencies]]
organ_id = "{DEPARTMENT}"
name = "Sở Nội vụ"
level = "department"
parent = "{PROVINCE}"

[[agencies]]
organ_id = "{FINANCE}"
name = "Sở Tài chính"
level = "department"
parent = "{PROVINCE}"

[[agencies]]
organ_id = "{DISTRICT}"
name = "Ủy ban nhân dân huyện Tân Biên"
level = "district"
parent = "{PROVINCE}"

[[agencies]]
organ_id = "{COMMUNE}"
name = "Ủy ban nhân dân xã Tân Lập"
level = "commune"
parent = "{DISTRICT}"
"""


@dataclass
class HubFiles:
    """The files a hub and its clients need, written under ``root``."""

    root: Path
    trust_dir: Path
    hub_cert: Path
    hub_key: Path
    directory: Path
    ca_file: Path
    clients: dict[str, tuple[Path, Path]] = field(default_factory=dict)

    def client(self, name: str) -> tuple[Path, Path]:
        return self.clients[name]


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_identity(folder: Path, name: str, issued: Issued) -> tuple[Path, Path]:
    cert = _write(folder / f"{name}.crt", pem_of([issued.cert, *issued.chain[:-1]]))
    key = _write(folder / f"{name}.key", key_pem(issued.key))
    os.chmod(key, 0o600)
    return cert, key


def write_hub_files(pki: PkiSet, root: Path, *, extra: dict[str, Issued] | None = None) -> HubFiles:
    """Trust folder (root, issuing CA, CRLs), hub identity, directory and one client identity per agency."""
    trust = root / "trust"
    _write(trust / "root.pem", pem_of([pki.root.cert]))
    _write(trust / "issuing.pem", pem_of([pki.intermediate.cert]))
    _write(trust / "issuing.crl", pki.crl.public_bytes(_pem()))
    _write(trust / "root.crl", pki.root_crl.public_bytes(_pem()))
    hub_cert, hub_key = write_identity(root / "hub", "hub", pki.hub)
    files = HubFiles(
        root=root,
        trust_dir=trust,
        hub_cert=hub_cert,
        hub_key=hub_key,
        directory=_write(root / "directory.toml", DIRECTORY_TOML.encode()),
        ca_file=_write(root / "ca.pem", pem_of([pki.root.cert])),
    )
    clients = {organ_id: issued for organ_id, issued in pki.agencies.items()}
    clients["hub"] = pki.hub
    for name in ("revoked", "expired", "foreign", "no_agency"):
        clients[name] = pki.bad(name)
    clients.update(extra or {})
    for name, issued in clients.items():
        files.clients[name] = write_identity(root / "clients", name.replace(".", "_"), issued)
    return files


def _pem() -> Any:
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.PEM


def hub_config(files: HubFiles, database_url: str, **changes: Any) -> HubConfig:
    config = HubConfig(
        database_url=database_url,
        data_dir=files.root / "data",
        tls_cert=files.hub_cert,
        tls_key=files.hub_key,
        trust_dir=files.trust_dir,
        directory_file=files.directory,
        port=free_port(),
        verify_processes=2,
        reload_interval=0.5,
    )
    return config.with_(**changes)


SETTINGS_NAMES = {
    "max_body": "max_body_bytes",
    "idle_timeout": "idle_timeout_s",
    "tls_handshake_timeout": "tls_handshake_timeout_s",
    "read_timeout": "request_timeout_s",
}
"""HubConfig fields whose setting (gateway.settings.Settings) has another name."""


def write_config_toml(config: HubConfig, path: Path) -> Path:
    """The settings file (``gateway hub serve --config``) that gives ``config``."""
    lines = []
    for name in (
        "database_url",
        "data_dir",
        "tls_cert",
        "tls_key",
        "trust_dir",
        "directory_file",
        "holidays_file",
        "host",
        "port",
        "max_body",
        "lenient_legacy",
        "verify_processes",
        "reload_interval",
        "long_poll_max",
        "auto_migrate",
        "idle_timeout",
        "tls_handshake_timeout",
        "read_timeout",
        "xml_max_depth",
        "xml_max_text_bytes",
    ):
        value = getattr(config, name)
        if value is None:
            continue
        rendered = json.dumps(value if isinstance(value, bool | int | float) else str(value))
        lines.append(f"{SETTINGS_NAMES.get(name, name)} = {rendered}")
    # The settings default the web listener to 8444; a test hub has one only when its config asks.
    lines.append(f"web_port = {config.web_port or 0}")
    if config.admin_fingerprints:
        lines.append(f"admin_fingerprints = {json.dumps(list(config.admin_fingerprints))}")
    return _write(path, ("\n".join(lines) + "\n").encode())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def client_context(files: HubFiles, who: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(files.ca_file))
    if who is not None:
        cert, key = files.client(who)
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def raw_tls(files: HubFiles, port: int, who: str = PROVINCE, *, timeout: float = 10) -> ssl.SSLSocket:
    """An mTLS connection to a hub for requests written byte by byte (slow, cut or malformed bodies)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return client_context(files, who).wrap_socket(sock, server_hostname="127.0.0.1")


def request_head(path: str, content_type: str, length: int | None) -> bytes:
    """A POST's request line and headers; ``length`` None: a chunked body."""
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return f"POST {path} HTTP/1.1\r\nHost: hub\r\nContent-Type: {content_type}\r\n{framing}\r\n\r\n".encode()


def response_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status and headers (names in lower case) of a response head, without its blank line."""
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers


# --- packages ---------------------------------------------------------------------------------------


def today_vn() -> dt.date:
    return dt.datetime.now(VN).date()


def document(
    *,
    sender: str = PROVINCE,
    recipients: Iterable[str] = (DEPARTMENT,),
    number: str | None = None,
    subject: str = "Về việc triển khai liên thông văn bản điện tử",
    attachment: bytes | None = None,
    paper: int = 0,
    business_doc_type: int = 0,
    padding: int = 0,
) -> DocumentPackage:
    """A valid new document; ``number`` defaults to a fresh one so every call is a new DocumentId."""
    number = number or str(uuid.uuid4().int % 10**9)
    day = today_vn() - dt.timedelta(days=1)
    document_id = f"{sender},{day:%Y/%m/%d},{number}/UBND-VP"
    atts: tuple[Attachment, ...] = ()
    refs: tuple[ManifestReference, ...] = ()
    if attachment is not None or padding:
        data = attachment if attachment is not None else os.urandom(padding)
        atts = (
            Attachment(
                content_id="cid:att-1",
                attachment_name="van-ban.pdf",
                content_type="application/pdf",
                data=data,
            ),
        )
        refs = (
            ManifestReference(
                content_id="cid:att-1", content_type="application/pdf", attachment_name="van-ban.pdf"
            ),
        )
    return DocumentPackage(
        header=MessageHeader(
            from_=Organization(organ_id=sender, organ_name="Ủy ban nhân dân tỉnh Tây Ninh"),
            to=tuple(Organization(organ_id=r) for r in recipients),
            document_id=document_id,
            code=Code(code_number=number, code_notation="UBND-VP"),
            promulgation_info=PromulgationInfo(place="Tây Ninh", promulgation_date=day),
            subject=subject,
        ),
        trace=TraceHeaderList(
            bussiness=Bussiness(document_id=document_id, bussiness_doc_type=business_doc_type, paper=paper)
        ),
        manifest=refs,
        attachments=atts,
    )


def sign(message: DocumentPackage | StatusMessage, issued: Issued, *, reference: str = "document") -> bytes:
    return sign_message(
        message, key=issued.key, cert=issued.cert, chain=issued.chain[:-1], reference=reference
    )  # type: ignore[arg-type]


def status(*, sender: str, doc: DocumentPackage, code: str, description: str | None = None) -> StatusMessage:
    header = doc.header
    return StatusMessage(
        header=StatusHeader(
            from_=Organization(organ_id=sender),
            response_for=ResponseFor(
                organ_id=header.from_.organ_id,
                code=f"{header.code.code_number}/{header.code.code_notation}" if header.code else None,
                promulgation_date=header.promulgation_info.promulgation_date
                if header.promulgation_info
                else None,
                document_id=header.document_id,
            ),
            status_code=code,
            description=description or f"status {code}",
            timestamp=dt.datetime.now(VN).replace(tzinfo=None, microsecond=0),
        )
    )


# --- talking to a hub -------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def code(self) -> str | None:
        if self.headers.get("content-type", "").startswith("application/problem+json"):
            return self.json().get("code")
        return None


class Client:
    """A tiny synchronous HTTPS client holding one keep-alive connection with a client certificate."""

    def __init__(self, port: int, ctx: ssl.SSLContext, host: str = "127.0.0.1") -> None:
        self.port, self.ctx, self.host = port, ctx, host
        self.conn: http.client.HTTPSConnection | None = None

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Reply:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=60)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                data = resp.read()
                headers = {k.lower(): v for k, v in resp.getheaders()}
                cookies = resp.msg.get_all("Set-Cookie") or []
                if cookies:  # repeated: kept one per line
                    headers["set-cookie"] = "\n".join(cookies)
                reply = Reply(resp.status, headers, data)
                if resp.will_close:
                    self.close()
                return reply
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def post_package(self, data: bytes, content_type: str = "application/edxml+xml") -> Reply:
        return self.request("POST", "/v1/packages", data, {"Content-Type": content_type})

    def post_status(self, data: bytes) -> Reply:
        return self.request("POST", "/v1/status", data, {"Content-Type": "application/edxml+xml"})

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post_json(self, path: str, payload: Any, method: str = "POST") -> Reply:
        return self.request(method, path, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def child_pids(pid: int) -> list[int]:
    """The child processes of ``pid``, whichever of its threads started them (the hub starts its
    verification workers from a helper thread, not to block the event loop); [] once it is gone."""
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                out += [int(c) for c in (task / "children").read_text().split()]
    return out


def kill_session(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a process started in its own session and everything in it (its pool), reap it, close its
    pipes. The leader is not reaped before the kill, so its id still names the session."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


class HubProcess:
    """``python -m gateway.hub.server`` started in its own process; waits for ``ready``."""

    def __init__(self, config_file: Path, *, workers: int = 1, log: Path | None = None) -> None:
        self.log = log or config_file.with_suffix(".log")
        self._fh = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway.hub.server",
                "--config",
                str(config_file),
                "--workers",
                str(workers),
            ],
            stdout=subprocess.PIPE,
            stderr=self._fh,
            cwd=Path(__file__).resolve().parents[1],
        )
        deadline = time.monotonic() + 60
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.strip() == b"ready":
                return
            if not line and self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"the hub did not start; see {self.log}:\n{self.log.read_text()[-3000:]}")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._fh.close()


# --- database state ---------------------------------------------------------------------------------

TABLES = (
    "package",
    "package_recipient",
    "package_attachment",
    "package_body",
    "exchange",
    "status_message",
    "status_event",
    "inbox_item",
    "paper_dispatch",
    "agency",
    "certificate_pin",
    "node_identity",
)


def snapshot(database_url: str, data_dir: Path) -> dict[str, Any]:
    """Row counts of the store's tables and the files under the blob folder: "nothing stored" is equality."""
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import create_async_engine

    async def counts() -> dict[str, int]:
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as conn:
                return {
                    t: int((await conn.execute(sa.text(f"SELECT count(*) FROM {t}"))).scalar_one())
                    for t in TABLES
                }
        finally:
            await engine.dispose()

    blobs = data_dir / "blobs"
    files = (
        sorted(str(p.relative_to(blobs)) for p in blobs.rglob("*") if p.is_file()) if blobs.exists() else []
    )
    tmp = data_dir / "tmp"
    leftovers = sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []
    return {"rows": asyncio.run(counts()), "blobs": files, "tmp": leftovers}


# --- the web listener ---------------------------------------------------------------------------------


def web_context(files: HubFiles) -> ssl.SSLContext:
    """What a browser has: the CA to check the hub's certificate, and no client certificate."""
    return ssl.create_default_context(cafile=str(files.ca_file))


class WebSession:
    """A browser-like session on the hub's web port: cookies kept, the sign-in form's CSRF token sent."""

    def __init__(self, port: int, files: HubFiles) -> None:
        self.client = Client(port, web_context(files))
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> Reply:
        import urllib.parse

        headers = {}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        return self.client.request(method, path, body, headers)

    def get(self, path: str) -> Reply:
        return self._keep(self.request("GET", path))

    def post(self, path: str, form: dict[str, str]) -> Reply:
        return self._keep(self.request("POST", path, form))

    def _keep(self, reply: Reply) -> Reply:
        for value in reply.headers.get("set-cookie", "").splitlines():
            name, _, rest = value.partition("=")
            if name.strip():
                self.cookies[name.strip()] = rest.split(";", 1)[0]
        return reply

    def sign_in(self, username: str, password: str) -> Reply:
        import re

        page = self.get("/ui/login")
        token = re.search(rb'name="csrf" value="([^"]+)"', page.body)
        assert token is not None, page.body[:500]
        form = {"csrf": token.group(1).decode(), "next": "", "username": username, "password": password}
        return self.post("/ui/login", form)

    def close(self) -> None:
        self.client.close()


def verify_hub_signed(data: bytes, *, trust: Any, at: dt.datetime) -> Any:
    """A hub-signed document checked as a node checks it: the core's enveloped signature, then the signer's
    chain in ``trust`` at ``at``. Read the document from the result's ``signed_root``."""
    from gateway.signature.enveloped import verify_enveloped

    verified = verify_enveloped(data)
    trust.validate(verified.signer, at=at, extra_intermediates=list(verified.extra_certs))
    return verified


def resident_pages(path: Path, length: int) -> int:
    """How many of the first ``length`` bytes' pages of ``path`` are in the page cache (``mincore``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    pages = -(-length // mmap.PAGESIZE)
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, length, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        try:
            vec = (ctypes.c_ubyte * pages)()
            assert libc.mincore(addr, length, vec) == 0, os.strerror(ctypes.get_errno())
            return sum(v & 1 for v in vec)
        finally:
            libc.munmap(addr, length)
    finally:
        os.close(fd)
