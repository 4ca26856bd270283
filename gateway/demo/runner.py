"""``gateway demo``: a province's month of dispatches through a real hub and real agency nodes.

What runs, all inside the demo folder (wiped at start):

* the dev PKI (``gateway certs init``) and the directory of :mod:`gateway.demo.scenario`;
* a SQLite database migrated by ``gateway db upgrade``;
* the hub (``gateway hub serve``) and one ``gateway node run`` per connected agency — real processes,
  talking mutual TLS on free ports;
* the clerks' actions (send, 02/03/05/06, recall, 15) through the node library, in this process, against
  each node's own store — what ``gateway node send|status|recall`` do, without paying an interpreter
  start per click;
* the operator's and auditor's commands as real CLI calls: ``certs revoke``, ``paper import``,
  ``users add``, ``receipts``, ``report rate``.

**How the month is made realistic.** Documents carry the month: each dispatch is dated (PromulgationDate,
hence its DocumentId) on a working day of the 30 days before today and numbered in its sender's register;
the paper-only register is dated across the same days. The hub, though, stamps what it receives with its
own clock, and that clock is not faked while documents flow: every electronic exchange is received today,
as if the province's DMSs replayed the month through the hub. Being *overdue* needs time to pass after
receipt (the end of the next working day), so for the final review the hub is restarted with its clock a
couple of working days ahead (:mod:`gateway.demo.hubclock`); nothing stored changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import io
import json
import os
import secrets
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from gateway.calendar import VN_TZ, Holidays, deadline_for
from gateway.demo import scenario as sc
from gateway.demo.pdf import make_pdf
from gateway.demo.procs import Children, DemoError, run_cli

MARKER = ".gateway-demo"
"""A folder holding this file was made by the demo and may be wiped by it; no other folder is."""

CLERK = "vanthu.tanbien"
AUDITOR = "kiemtra.tinh"
ACCOUNTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (CLERK, ("--role", "clerk", "--organ-id", sc.TAN_BIEN)),
    (AUDITOR, ("--role", "auditor")),
)
STEP_TIMEOUT = 30.0
"""Seconds a node has to fetch, verify and confirm a document before the demo gives up."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoOptions:
    folder: Path
    port: int | None = None
    web_port: int | None = None
    serve: bool = False
    host: str = "127.0.0.1"


CASES = (
    "refused with a reason",
    "recalled",
    "tampered in transit",
    "signed with a revoked certificate",
    "unconfirmed and overdue",
)


@dataclass(slots=True)
class Outcome:
    """One line of the final summary: a special case, the dispatch, the route and what happened."""

    case: str
    dispatch: sc.Dated
    recipient: str
    result: str

    @property
    def route(self) -> str:
        return f"{sc.BY_ID[self.dispatch.plan.sender].short} → {self.recipient}"


@dataclass
class State:
    """What the run learnt, for the summary."""

    package_ids: dict[str, str] = field(default_factory=dict)
    """DocumentId → package id (SHA-256 of the bytes the sender sent)."""
    outcomes: list[Outcome] = field(default_factory=list)
    revoked_serial: str = ""
    passwords: dict[str, str] = field(default_factory=dict)
    clock_note: str = ""
    receipts_cmd: str = ""
    receipts_out: str = ""
    rate_cmd: str = ""
    rate_out: str = ""
    web_listening: bool = False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _listening(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


def _repo_config(name: str) -> Path | None:
    """A file of the repository's ``config/`` folder (the holiday calendar), if the code runs from a
    checkout; else from the working directory; else None."""
    for base in (Path(__file__).resolve().parents[2], Path.cwd()):
        path = base / "config" / name
        if path.is_file():
            return path
    return None


def _toml(values: dict[str, Any], table: str | None = None) -> str:
    head = [f"[{table}]"] if table else []
    return "\n".join(head + [f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in values.items()]) + "\n"


class Demo:
    """One run of the demo. :meth:`run` returns the process exit code."""

    def __init__(self, options: DemoOptions, console: Console | None = None) -> None:
        self.o = options
        self.console = console or Console()
        self.folder = options.folder.resolve()
        self.pki = self.folder / "pki"
        self.hub_dir = self.folder / "hub"
        self.hub_toml = self.folder / "hub.toml"
        self.nodes_dir = self.folder / "nodes"
        self.holidays_file = _repo_config("holidays.toml")
        self.holidays = Holidays.load(self.holidays_file) if self.holidays_file else Holidays()
        self.today = dt.datetime.now(VN_TZ).date()
        self.month = sc.plan_month(self.today, self.holidays)
        self.port = options.port or free_port(options.host)
        self.web_port = options.web_port or free_port(options.host)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        self.env["COLUMNS"] = str(self.console.width)  # the commands' tables fit the demo's output
        self.env["PYTHONUNBUFFERED"] = "1"
        self.children = Children(self.folder / "logs", env=self.env, stop_last=("hub",))
        self.state = State()
        self.nodes: dict[str, Any] = {}
        self._progress: Progress | None = None
        self._task: Any = None
        self.started = time.monotonic()

    # ================================================================================================
    # Entry point
    # ================================================================================================
    def run(self) -> int:
        """Play the month, print the results, stop everything (``--serve``: after Ctrl-C)."""
        previous = signal.signal(signal.SIGTERM, _terminate)
        # Ctrl-C must reach us even when a shell started us in the background with SIGINT ignored.
        previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            with self._progress_bar():
                self._prepare()
                asyncio.run(self._play())
                self._review()
                self._reports()
            self._print_results()
            if self.o.serve:
                self._serve_until_interrupted()
            return 0
        except KeyboardInterrupt:
            self.console.print("\n[yellow]interrupted[/]: stopping the hub and the nodes…")
            return 130
        finally:
            stopped = self.children.stop_all()
            if stopped:
                self.console.print(
                    f"stopped {stopped} process(es) the demo started (hub and nodes); "
                    f"state and logs stay in {self.folder}",
                    highlight=False,
                )
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)

    # ================================================================================================
    # Progress
    # ================================================================================================
    @contextlib.contextmanager
    def _progress_bar(self) -> Iterator[None]:
        weeks = len(self.month.weeks())
        total = 5 + weeks + 3
        columns = (
            SpinnerColumn(),
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.console, transient=True) as progress:
            self._progress = progress
            self._task = progress.add_task("starting", total=total)
            yield
            progress.update(self._task, completed=total, description="done")
        self._progress = None

    def step(self, description: str) -> None:
        """Start the next step: the bar shows it while it runs."""
        assert self._progress is not None
        task = self._progress.tasks[0]
        if task.description != "starting":
            self._progress.advance(self._task)
        self._progress.update(self._task, description=description)

    def say(self, text: str) -> None:
        """A line above the bar: what just happened."""
        self.console.print(Text.from_markup(f"  [green]✓[/] {text}"), highlight=False)

    # ================================================================================================
    # Setting up: folder, PKI, directory, database, hub, nodes
    # ================================================================================================
    def _prepare(self) -> None:
        self.step(f"preparing {self.folder}")
        self._wipe()
        (self.folder / "directory.toml").write_text(sc.directory_toml(), encoding="utf-8")
        self.step("dev PKI: gateway certs init")
        run_cli("certs", "init", "--dir", str(self.pki), "--directory", str(self.folder / "directory.toml"),
                "--crl-days", "60", env=self.env)  # fmt: skip
        self.say(
            f"dev PKI in {self.pki}: root and issuing CA, CRLs, the hub's and "
            f"{len(sc.AGENCIES)} agencies' certificates"
        )
        self._write_hub_config(self.port)
        self.step("database: gateway db upgrade")
        out = run_cli("db", "upgrade", "--config", str(self.hub_toml), env=self.env).stdout.strip()
        self.say(f"SQLite database {self.hub_dir / 'gateway.db'} ({out})")
        self.step("starting the hub")
        self.children.start("hub", _gateway("hub", "serve", "--config", str(self.hub_toml)))
        self.say(
            f"hub listening on https://{self.o.host}:{self.port} (mutual TLS), "
            f"pid {self.children['hub'].proc.pid}"
        )
        self.step(f"starting {len(sc.NODES)} agency nodes")
        for organ_id in [*sc.NODES, sc.FINANCE]:
            self._write_node_config(organ_id)
        self.children.start_all({f"node-{o}": self._node_argv(o) for o in sc.NODES})
        names = ", ".join(sc.BY_ID[o].short for o in sc.NODES)
        self.say(f"{len(sc.NODES)} nodes running `gateway node run`: {names}")

    def _wipe(self) -> None:
        if self.folder.exists():
            if any(self.folder.iterdir()) and not (self.folder / MARKER).exists():
                raise DemoError(
                    f"{self.folder} exists and was not made by the demo; choose another folder with --dir"
                )
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True)
        (self.folder / MARKER).write_text("made by `gateway demo`; wiped at its next run\n", encoding="utf-8")

    def _write_hub_config(self, port: int) -> None:
        from gateway.settings import Settings

        values: dict[str, Any] = {
            "data_dir": str(self.hub_dir),
            "database_url": f"sqlite+aiosqlite:///{self.hub_dir / 'gateway.db'}",
            "tls_cert": str(self.pki / "hub" / "cert.pem"),
            "tls_key": str(self.pki / "hub" / "key.pem"),
            "trust_dir": str(self.pki / "trust"),
            "directory_file": str(self.folder / "directory.toml"),
            "host": self.o.host,
            "port": port,
            "verify_processes": 1,
            "reload_interval": 1.0,
            "long_poll_max": 10.0,
        }
        if self.holidays_file is not None:
            values["holidays_file"] = str(self.holidays_file)
        if "web_port" in Settings.model_fields:  # the hub serves the web pages on a second listener
            values["web_port"] = self.web_port
        self.hub_toml.write_text("# Written by `gateway demo`.\n" + _toml(values), encoding="utf-8")

    def node_config(self, organ_id: str) -> Path:
        return self.nodes_dir / organ_id / "node.toml"

    def _write_node_config(self, organ_id: str) -> None:
        agency = sc.BY_ID[organ_id]
        folder = self.nodes_dir / organ_id
        folder.mkdir(parents=True, exist_ok=True)
        values: dict[str, Any] = {
            "organ_id": organ_id,
            "organ_name": agency.name,
            "cert_dir": str(self.pki / "agencies" / organ_id),
            "place": agency.place,
            "staff": f"Văn thư {agency.short}",
            "hub_url": f"https://{self.o.host}:{self.port}",
            "trust_dir": str(self.pki / "trust"),
            "data_dir": str(folder / "data"),
            "drop_dir": str(folder / "dms-drop"),
            "poll_wait": 3,  # short long-polls: a hub stopping waits for them
            "retry_base": 0.3,
            "retry_max": 2.0,
            "request_timeout": 30,
        }
        if self.holidays_file is not None:
            values["holidays_file"] = str(self.holidays_file)
        self.node_config(organ_id).write_text(
            "# Written by `gateway demo`.\n" + _toml(values, "node"), encoding="utf-8"
        )

    def _node_argv(self, organ_id: str) -> list[str]:
        return _gateway("node", "run", "--config", str(self.node_config(organ_id)), "-v")

    # ================================================================================================
    # The month
    # ================================================================================================
    async def _play(self) -> None:
        from gateway.node.config import load_node_settings
        from gateway.node.node import Node

        async with contextlib.AsyncExitStack() as stack:
            for organ_id in [*sc.NODES, sc.FINANCE]:
                settings = load_node_settings(self.node_config(organ_id))
                self.nodes[organ_id] = await stack.enter_async_context(Node.open(settings))
            for monday, friday, dispatches in self.month.weeks():
                self.step(f"week of {monday:%d/%m}–{friday:%d/%m}: {len(dispatches)} dispatches")
                await self._play_week(dispatches)
            self.step("paper-only register and web accounts: gateway paper import, gateway users add")
            await asyncio.gather(
                asyncio.to_thread(self._paper_import),
                *(asyncio.to_thread(self._add_user, name, options) for name, options in ACCOUNTS),
            )
            self.say(f"web accounts: {CLERK} (clerk, UBND huyện Tân Biên), {AUDITOR} (auditor)")
        self.nodes.clear()

    async def _play_week(self, dispatches: list[sc.Dated]) -> None:
        ordinary: list[sc.Dated] = []
        for d in dispatches:
            if d.plan.role == "tampered":
                await self._tampered(d)
            elif d.plan.role == "revoked":
                await self._revoked(d)
            else:
                await self._send(d)
                ordinary.append(d)
        # Each recipient's node fetches, verifies and answers 01 by itself; then the clerks work.
        for d in ordinary:
            await self._until_confirmed(d)
        for d in ordinary:
            await self._clerks(d)
            if d.plan.role == "recalled":
                await self._recall(d)
        sent = sum(len(d.plan.recipients) for d in dispatches if d.plan.role != "revoked")
        self.say(
            f"{dispatches[0].date:%d/%m}–{dispatches[-1].date:%d/%m}: {len(dispatches)} dispatches, "
            f"{sent} exchanges; the nodes verified and confirmed what reached them"
        )

    def _dispatch(self, d: sc.Dated) -> Any:
        from gateway.node.compose import Dispatch, FileSpec

        p = d.plan
        sender = sc.BY_ID[p.sender]
        body = [
            f"{sender.name}",
            f"Số: {d.code}    {sender.place}, ngày {d.date.day} tháng {d.date.month} năm {d.date.year}",
            f"Kính gửi: {', '.join(sc.BY_ID[r].name for r in p.recipients)}.",
            f"{p.subject}.",
            "Văn bản này được tạo bởi gateway demo để minh họa trao đổi văn bản điện tử qua trục LGSP.",
            f"{p.position}: {p.signer}",
        ]
        pdf = make_pdf(f"{p.type_name.upper()} {d.code}", body)
        return Dispatch(
            sender=p.sender,
            sender_name=sender.name,
            recipients=p.recipients,
            number=d.number,
            notation=p.notation,
            subject=p.subject,
            date=d.date,
            place=sender.place,
            doc_type=1,
            type_name=p.type_name,
            signer=p.signer,
            position=p.position,
            priority=p.priority,
            paper=p.paper,
            files=(FileSpec.of(f"{d.number}-{_slug(p.notation)}.pdf", pdf),),
        )

    async def _send(self, d: sc.Dated) -> Any:
        node = self.nodes[d.plan.sender]
        dispatch = self._dispatch(d)
        row = await node.send(node.sign_dispatch(dispatch), meta={"subject": d.plan.subject})
        if row.state != "sent":
            raise DemoError(f"sending {d.document_id}: {row.state} {row.error_code}: {row.last_error}")
        self.state.package_ids[d.document_id] = row.sha256
        return row

    async def timeline(self, d: sc.Dated) -> dict[str, dict[str, Any]]:
        """The hub's timeline of a dispatch, by recipient (as its sender's node sees it)."""
        data = await self.nodes[d.plan.sender].client.timeline(self.state.package_ids[d.document_id])
        return {r["organ_id"]: r for r in data["recipients"]}

    async def _until(
        self, d: sc.Dated, what: str, done: Callable[[dict[str, dict[str, Any]]], bool]
    ) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            rows = await self.timeline(d)
            if done(rows):
                return rows
            if time.monotonic() > deadline:
                states = {k: v["state"] for k, v in rows.items()}
                raise DemoError(
                    f"{d.document_id}: {what} did not happen within {STEP_TIMEOUT:.0f} s ({states}); "
                    f"see {self.folder / 'logs'}"
                )
            await asyncio.sleep(0.15)

    async def _until_confirmed(self, d: sc.Dated) -> None:
        running = [r for r in d.plan.recipients if r in sc.NODES]
        await self._until(d, "confirmation (01) by every running node",
                          lambda rows: all(rows[r]["state"] != "queued" for r in running))  # fmt: skip

    async def _clerks(self, d: sc.Dated) -> None:
        for recipient, codes in d.plan.answers.items():
            for code in codes:
                reason = d.plan.refusal if code == "02" else None
                row = await self.nodes[recipient].send_status(d.document_id, code, reason)
                if row.state != "sent":
                    raise DemoError(
                        f"status {code} on {d.document_id} by {recipient}: {row.state} {row.error_code}"
                    )

    async def _recall(self, d: sc.Dated) -> None:
        rows = await self.nodes[d.plan.sender].recall(d.document_id, sc.RECALL_REASON)
        if any(r.state != "sent" for r in rows):
            raise DemoError(f"recall of {d.document_id}: {[(r.state, r.error_code) for r in rows]}")
        for recipient in d.plan.recipients:
            row = await self.nodes[recipient].send_status(d.document_id, "15", sc.RECALL_ANSWER)
            if row.state != "sent":
                raise DemoError(f"15 on {d.document_id} by {recipient}: {row.state} {row.error_code}")
        await self._until(d, "recall agreed (15)",
                          lambda rows: all(r["state"] == "recalled" for r in rows.values()))  # fmt: skip
        self.say(f"{d.code} recalled (13 → 15): “{sc.RECALL_REASON}”")

    async def _tampered(self, d: sc.Dated) -> None:
        """The recipient's node is down for maintenance while the package waits on the hub; meanwhile
        someone with access to the hub's storage changes the amount in the subject. The node comes back,
        verifies the package itself and refuses it (02) with the signature's reason."""
        (recipient,) = d.plan.recipients
        self.children.stop(f"node-{recipient}")
        row = await self._send(d)
        await asyncio.to_thread(
            forge_hub_copy,
            self.hub_dir / "gateway.db",
            self.hub_dir,
            row.sha256,
            "1.200 triệu".encode(),
            "9.200 triệu".encode(),
        )
        self.children.start(f"node-{recipient}", self._node_argv(recipient))  # main thread: see Children
        rows = await self._until(d, "refusal (02) of the tampered package",
                                 lambda rows: rows[recipient]["state"] == "refused")  # fmt: skip
        reason = rows[recipient]["events"][-1].get("description") or ""
        self.say(
            f"{d.code}: its bytes altered in the hub's storage (1.200 → 9.200 triệu); "
            f"{sc.BY_ID[recipient].short}'s node refused it: {reason.split(':')[0]}"
        )

    async def _revoked(self, d: sc.Dated) -> None:
        """An old signing token of Sở Tài chính is reported lost: its certificate is revoked; a clerk
        still signs with it. The hub refuses the package (certificate.revoked) and stores nothing."""
        from gateway.node.compose import build_document, sign_document

        old = await asyncio.to_thread(self._issue_extra_certificate, d.plan.sender)
        await asyncio.to_thread(
            run_cli, "certs", "revoke", "--dir", str(self.pki), "--serial", self.state.revoked_serial,
            "--reason", "key-compromise", env=self.env,
        )  # fmt: skip
        await self._reload_hub_trust()
        node = self.nodes[d.plan.sender]
        threshold = node.settings.multipart_threshold
        signed = sign_document(build_document(self._dispatch(d)), old, multipart_threshold=threshold)
        row = await node.send(signed, meta={"subject": d.plan.subject, "signed_with": "revoked token"})
        if row.state != "refused" or row.error_code != "certificate.revoked":
            raise DemoError(
                f"{d.document_id} signed with a revoked certificate: {row.state} {row.error_code}"
            )
        self.say(
            f"{d.code}: signed with a revoked certificate (serial {self.state.revoked_serial[:16]}…); "
            f"the hub refused it: {row.error_code}"
        )
        self.state.outcomes.append(
            Outcome(
                case=CASES[3],
                dispatch=d,
                recipient="hub",
                result=f"rejected: {row.error_code}, nothing stored",
            )
        )

    def _issue_extra_certificate(self, organ_id: str) -> Any:
        """A second certificate for the agency (an old USB token), from the demo PKI's issuing CA."""
        from gateway.trust import files
        from gateway.trust.pki import Issued, issue_agency_cert

        root = files.load_cert(self.pki / "trust" / "root.pem")
        ca = Issued(
            key=files.load_key(self.pki / "ca" / "intermediate.key.pem"),
            cert=files.load_cert(self.pki / "trust" / "intermediate.pem"),
            chain=(root,),
        )
        issued = issue_agency_cert(ca, organ_id=organ_id, name=sc.BY_ID[organ_id].name)
        files.write_issued(self.folder / "revoked-token" / organ_id, issued)
        self.state.revoked_serial = f"{issued.cert.serial_number:x}"
        return issued

    async def _reload_hub_trust(self) -> None:
        """Make the hub read the new CRL now: the operator's ``POST /v1/admin/reload`` (SIGHUP or the
        ``reload_interval`` poll do the same, a moment later), with the hub's own certificate."""
        from gateway.node.client import HubClient, tls_context

        ctx = tls_context(
            cert_dir=self.pki / "hub",
            ca_files=sorted((self.pki / "trust").glob("*.pem")),
            work_dir=self.folder / "operator",
        )
        async with HubClient(f"https://{self.o.host}:{self.port}", ctx) as client:
            reply = await client.request("POST", "/v1/admin/reload", json_body={})
            if reply.json().get("error"):
                raise DemoError(f"the hub could not reload its trust folder: {reply.json()['error']}")

    # ================================================================================================
    # Paper register, accounts
    # ================================================================================================
    def _paper_import(self) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["sender", "recipient", "number", "notation", "date", "subject"])
        for r in self.month.paper:
            writer.writerow([r.sender, r.recipient, r.number, r.notation, r.date.isoformat(), r.subject])
        path = self.folder / "paper-only.csv"
        path.write_text(buffer.getvalue(), encoding="utf-8")
        run_cli("paper", "import", str(path), "--config", str(self.hub_toml), env=self.env)
        self.say(f"{len(self.month.paper)} paper-only dispatches registered from {path.name}")

    def _add_user(self, name: str, options: tuple[str, ...]) -> None:
        password = f"demo-{secrets.token_urlsafe(9)}"
        run_cli("users", "add", name, *options, "--password-stdin", "--config", str(self.hub_toml),
                env=self.env, stdin=password + "\n")  # fmt: skip
        self.state.passwords[name] = password

    # ================================================================================================
    # The review: two working days later
    # ================================================================================================
    def _review(self) -> None:
        self.step("two working days later: hub restarted with its clock ahead")
        now = dt.datetime.now(dt.UTC)
        due = deadline_for(now, self.holidays).astimezone(VN_TZ).date()
        review_day = self.holidays.next_working_day(due)
        review = dt.datetime.combine(review_day, dt.time(8, 30), tzinfo=VN_TZ)
        offset = (review - now).total_seconds()
        self.children.stop("hub")
        self.children.start(
            "hub",
            [sys.executable, "-m", "gateway.demo.hubclock", f"{offset:.0f}", "--config", str(self.hub_toml)],
        )
        self.state.clock_note = (
            f"hub clock moved to {review:%a %d/%m/%Y %H:%M} (Vietnam), the morning after the deadline "
            f"({due:%d/%m}) for confirming today's receipts"
        )
        self.say(self.state.clock_note)
        self.state.web_listening = _listening(self.o.host, self.web_port)
        asyncio.run(self._final_timelines())

    async def _final_timelines(self) -> None:
        from gateway.node.config import load_node_settings
        from gateway.node.node import Node

        async with contextlib.AsyncExitStack() as stack:
            for organ_id in [*sc.NODES, sc.FINANCE]:
                settings = load_node_settings(self.node_config(organ_id))
                self.nodes[organ_id] = await stack.enter_async_context(Node.open(settings))
            await self._collect_outcomes()
        self.nodes.clear()

    async def _collect_outcomes(self) -> None:
        """The special cases, read back from the hub's timelines (overdue only once the clock moved)."""
        for role, case in zip(("refused", "recalled", "tampered"), CASES, strict=False):
            d = self.month.by_role(role)
            for organ_id, r in (await self.timeline(d)).items():
                codes = " → ".join(e["code"] for e in r["events"])
                text = f"{r['state']} ({codes})"
                description = r["events"][-1].get("description") if r["events"] else None
                if description:
                    text += f": {description}"
                self.state.outcomes.append(
                    Outcome(case=case, dispatch=d, recipient=sc.BY_ID[organ_id].short, result=text)
                )
        for d in self.month.dispatches:
            if d.document_id not in self.state.package_ids:
                continue
            for organ_id, r in (await self.timeline(d)).items():
                if r["overdue"]:
                    due = dt.datetime.fromisoformat(r["deadline"]).astimezone(VN_TZ)
                    self.state.outcomes.append(
                        Outcome(case=CASES[4], dispatch=d, recipient=sc.BY_ID[organ_id].short,
                                result=f"no 01 yet ({r['state']}); deadline {due:%d/%m %H:%M} passed")
                    )  # fmt: skip
        if not any(o.case == CASES[4] for o in self.state.outcomes):
            raise DemoError("no exchange is overdue after the hub's clock moved; see the hub log")

    # ================================================================================================
    # Output
    # ================================================================================================
    def _reports(self) -> None:
        """What the clerk and the auditor would type, run as real commands (both at once)."""
        self.step("reports: gateway receipts, gateway report rate")
        showcase = self.month.by_role("showcase")
        receipts = ["receipts", showcase.document_id, "--config", str(self.node_config(sc.PROVINCE))]
        rate = ["report", "rate", "--from", self.month.first.isoformat(), "--to", self.today.isoformat(),
                "--by", "level-pair", "--lang", "en", "--config", str(self.hub_toml)]  # fmt: skip
        with ThreadPoolExecutor(2) as pool:
            done = [pool.submit(run_cli, *args, env=self.env) for args in (receipts, rate)]
            self.state.receipts_out, self.state.rate_out = (f.result().stdout for f in done)
        self.state.receipts_cmd = _shown(receipts)
        self.state.rate_cmd = _shown(rate)

    def _print_results(self) -> None:
        c = self.console
        showcase = self.month.by_role("showcase")
        c.rule(f"Receipts of one dispatch: {showcase.code} “{showcase.plan.subject}”")
        c.print(f"$ gateway {self.state.receipts_cmd}", highlight=False)
        self._print_cli(self.state.receipts_out)

        c.rule("What went wrong this month, and how the system caught it")
        table = Table("case", "dispatch", "from → to", "outcome")
        for o in sorted(self.state.outcomes, key=lambda o: CASES.index(o.case)):
            table.add_row(o.case, f"{o.dispatch.code} ({o.dispatch.date:%d/%m})", o.route, o.result)
        c.print(table)
        c.print(self.state.clock_note, highlight=False)

        c.rule("The electronic-exchange rate by level pair")
        c.print(f"$ gateway {self.state.rate_cmd}", highlight=False)
        self._print_cli(self.state.rate_out)

        c.rule("Web pages")
        url = f"https://{'localhost' if self.o.host == '127.0.0.1' else self.o.host}:{self.web_port}/ui/"
        c.print(
            f"URL: [bold]{url}[/] (the hub's web listener, no client certificate needed; the browser warns "
            "about the demo CA: accept, or trust pki/trust/root.pem)",
            highlight=False,
        )
        if not self.state.web_listening:
            c.print("[yellow]note[/]: this hub build does not serve the web pages on a second port yet; "
                    "the URL above is where they appear once it does", highlight=False)  # fmt: skip
        accounts = Table("sign in as", "password", "role", "sees")
        accounts.add_row(CLERK, self.state.passwords.get(CLERK, ""), "clerk (văn thư)",
                         "UBND huyện Tân Biên's dispatches, their timelines and overdue items")  # fmt: skip
        accounts.add_row(AUDITOR, self.state.passwords.get(AUDITOR, ""), "auditor",
                         "the rate dashboard and the exchanges behind each figure")  # fmt: skip
        c.print(accounts)
        elapsed = time.monotonic() - self.started
        c.print(f"Demo folder: {self.folder} (hub.toml, nodes/*/node.toml, logs/); took {elapsed:.0f} s.",
                highlight=False)  # fmt: skip
        if not self.o.serve:
            c.print("`gateway demo --serve` (`make demo DEMO_ARGS=--serve`) keeps the hub and the pages up.")

    def _print_cli(self, output: str) -> None:
        self.console.print(Text.from_ansi(output.rstrip()), soft_wrap=True)  # as the command laid it out

    def _serve_until_interrupted(self) -> None:
        self.console.print(
            f"[bold green]serving[/]: hub https://{self.o.host}:{self.port} and {len(sc.NODES)} nodes; "
            "Ctrl-C stops them all.",
            highlight=False,
        )
        child = self.children.wait_any()
        if child is not None:  # a crash, or someone stopped it: the demo cannot serve without it
            raise DemoError(
                f"{child.name} exited (code {child.proc.returncode}) while serving; stopping the others. "
                f"Its log {child.log} ends with:\n{child.tail(10)}"
            )


def _gateway(*args: str) -> list[str]:
    from gateway.demo.procs import gateway_argv

    return gateway_argv(*args)


def _shown(args: list[str]) -> str:
    """A command line as a user would type it: paths relative to the working directory, ids quoted."""
    out = []
    for a in args:
        if a.startswith("/"):
            with contextlib.suppress(ValueError):
                a = str(Path(a).relative_to(Path.cwd()))
        out.append(f"'{a}'" if "," in a else a)
    return " ".join(out)


def _slug(text: str) -> str:
    from gateway.demo.pdf import ascii_text

    return "".join(c if c.isalnum() else "-" for c in ascii_text(text)).strip("-").lower()


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM ends the demo like Ctrl-C does: the ``finally`` blocks stop every child."""
    raise KeyboardInterrupt


def run_demo(options: DemoOptions, console: Console | None = None) -> int:
    return Demo(options, console).run()


def forge_hub_copy(database: Path, data_dir: Path, package_id: str, old: bytes, new: bytes) -> None:
    """Replace ``old`` by ``new`` in a hub's stored copy of a package, where the hub keeps it: its SQLite
    ``database`` for a small body (``package_body``), else the blob file under ``data_dir``. What someone
    with access to the hub's storage could do; the recipient's own verification must catch it."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(database, timeout=30)) as conn, conn:
        row = conn.execute(
            "SELECT b.package_id, b.data FROM package_body b JOIN package p ON p.id = b.package_id"
            " WHERE p.sha256 = ?",
            (package_id,),
        ).fetchone()
        if row is not None:
            forged = bytes(row[1]).replace(old, new)
            if forged == row[1]:
                raise DemoError(f"{old.decode()!r} is not in the stored bytes of package {package_id}")
            conn.execute("UPDATE package_body SET data = ? WHERE package_id = ?", (forged, row[0]))
            return
    found = [p for p in data_dir.rglob(package_id) if p.is_file()]
    if not found:
        raise DemoError(f"the hub holds no copy of package {package_id} under {data_dir}")
    original = found[0].read_bytes()
    if old not in original:
        raise DemoError(f"{old.decode()!r} is not in the stored bytes {found[0]}")
    found[0].chmod(0o644)
    found[0].write_bytes(original.replace(old, new))
