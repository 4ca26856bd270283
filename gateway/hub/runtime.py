"""The hub's swappable state: trust store, directory and TLS context, reloaded without a restart.

Each is an immutable object held by one reference in :class:`Runtime`; :meth:`Runtime.reload` builds new
objects from the files and swaps the references, so a request in flight finishes with the objects it
started with and the next one sees the new ones. A reload that fails (a half-written CRL, a broken TOML)
keeps the old objects and reports the error: a hub never drops to an empty trust store.

Changes are noticed by SIGHUP (:mod:`gateway.hub.server`) and by polling the files' modification times
every ``reload_interval`` seconds (which also reaches every worker process without signalling each one).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path

from gateway.calendar import Holidays
from gateway.hub.config import HubConfig
from gateway.hub.tls import TlsContextHolder, server_context, web_server_context
from gateway.trust.directory import Agency, Directory
from gateway.trust.store import TrustStore

log = logging.getLogger("gateway.hub")


def _stamp(paths: list[Path]) -> tuple[tuple[str, int, int], ...]:
    out = []
    for base in paths:
        files = sorted(base.iterdir()) if base.is_dir() else [base]
        for f in files:
            try:
                st = f.stat()
            except FileNotFoundError:
                continue
            out.append((str(f), st.st_mtime_ns, st.st_size))
    return tuple(out)


class Runtime:
    """Current trust store, file directory, database agencies, holidays and TLS context of one hub process."""

    def __init__(self, config: HubConfig, *, clock: Callable[[], dt.datetime]) -> None:
        self.config = config
        self.clock = clock
        self.generation = 0
        self.trust: TrustStore = TrustStore.load(config.trust_dir)
        self.file_directory: Directory = (
            Directory.load(config.directory_file) if config.directory_file else Directory.of([])
        )
        self.holidays: Holidays = self._load_holidays()
        self.db_agencies: tuple[Agency, ...] = ()
        self.directory: Directory = self.file_directory
        self.tls: TlsContextHolder | None = None
        self.web_tls: TlsContextHolder | None = None
        self._stamp = self._current_stamp()
        self.last_error: str | None = None

    def _load_holidays(self) -> Holidays:
        """The overdue rule's calendar; without a file, weekends only (logged: the operator must keep it)."""
        path = self.config.holidays_file
        if path is None or not path.is_file():
            if path is not None:
                log.warning("no holiday calendar at %s: the overdue rule skips weekends only", path)
            return Holidays.of(None)
        return Holidays.load(path)

    def _watched(self) -> list[Path]:
        paths = [self.config.trust_dir]
        for extra in (
            self.config.tls_cert,
            self.config.tls_key,
            self.config.directory_file,
            self.config.holidays_file,
        ):
            if extra is not None:
                paths.append(extra)
        return paths

    def _current_stamp(self) -> tuple[tuple[str, int, int], ...]:
        return _stamp(self._watched())

    def build_tls(self) -> TlsContextHolder:
        """The server TLS holder (only the process that listens needs one)."""
        self.tls = TlsContextHolder(self._tls_context())
        return self.tls

    def build_web_tls(self) -> TlsContextHolder:
        """The web listener's TLS holder: the hub certificate, no client certificate asked for."""
        self.web_tls = TlsContextHolder(self._web_tls_context())
        return self.web_tls

    def _web_tls_context(self) -> object:
        cert_file, key_file = self.config.tls_identity()
        return web_server_context(cert_file=cert_file, key_file=key_file)

    def _tls_context(self, trust: TrustStore | None = None) -> object:
        store = trust or self.trust
        cert_file, key_file = self.config.tls_identity()
        return server_context(
            cert_file=cert_file,
            key_file=key_file,
            ca_certs=[*store.roots, *store.intermediates],
            crls=store.crls,
        )

    def set_db_agencies(self, agencies: tuple[Agency, ...]) -> None:
        """Merge the agencies the admin API stored (database) over the file directory."""
        if agencies == self.db_agencies:
            return
        self.db_agencies = agencies
        self._compose()

    def _compose(self) -> None:
        merged: dict[str, Agency] = {a.organ_id: a for a in self.file_directory}
        for agency in self.db_agencies:
            merged[agency.organ_id] = agency
        try:
            self.directory = Directory.of(list(merged.values()), hub=self.file_directory.hub)
        except Exception as exc:  # an admin-added agency whose parent vanished from the file, etc.
            log.error("directory merge failed, keeping the previous one: %s", exc)

    def reload(self, *, force: bool = False) -> bool:
        """Re-read changed files; ``True`` if anything was swapped. Errors keep the old state."""
        stamp = self._current_stamp()
        if not force and stamp == self._stamp:
            return False
        try:
            trust = TrustStore.load(self.config.trust_dir)
            directory = (
                Directory.load(self.config.directory_file) if self.config.directory_file else Directory.of([])
            )
            tls_ctx = self._tls_context(trust) if self.tls is not None else None
            web_ctx = self._web_tls_context() if self.web_tls is not None else None
            holidays = self._load_holidays()
        except Exception as exc:
            self.last_error = str(exc)
            log.error("reload failed, keeping the previous trust store and directory: %s", exc)
            self._stamp = stamp
            return False
        self.trust = trust
        self.holidays = holidays
        self.file_directory = directory
        self._compose()
        if self.tls is not None and tls_ctx is not None:
            self.tls.swap(tls_ctx)  # type: ignore[arg-type]
        if self.web_tls is not None and web_ctx is not None:
            self.web_tls.swap(web_ctx)  # type: ignore[arg-type]
        self.generation += 1
        self._stamp = stamp
        self.last_error = None
        log.info("reloaded trust store (%r) and directory (%d agencies)", trust, len(self.directory))
        return True
