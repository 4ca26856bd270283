"""Hand-off of received documents to the document-management system (DMS): a drop folder and/or an HTTP
callback. The contract is docs/node.md ("The DMS contract").

Drop folder: one folder per received package, ``<drop_dir>/<yyyymmdd>-<sender>-<sha256[:12]>/`` with the
attachments and ``document.json`` (metadata, verdict, file list with SHA-256), built in
``<drop_dir>/.incoming/`` and renamed into place, so a DMS that scans ``drop_dir`` never sees a half
folder. The same package delivered again (after a crash) lands in the same folder name, which already
exists: nothing is written twice.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import aiohttp

from gateway.node.compose import FileSpec
from gateway.node.store import _fsync_dir

SIDECAR = "document.json"
_UNSAFE = re.compile(r"[^\w.\- ()]+", re.UNICODE)


def safe_name(name: str, index: int) -> str:
    """A file name that cannot escape its folder (no separators, no dot-files, bounded length)."""
    base = _UNSAFE.sub("_", os.path.basename(name.replace("\\", "/"))).strip(" .")
    return (base or f"attachment-{index}")[:150]


def sidecar(*, meta: dict[str, Any], files: list[FileSpec]) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    named: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    entries = []
    for i, f in enumerate(files, 1):
        name = safe_name(f.name, i)
        while name in seen or name == SIDECAR:
            name = f"{i}-{name}"
        seen.add(name)
        named.append((name, f.data))
        entries.append(
            {
                "name": name,
                "original_name": f.name,
                "content_type": f.content_type,
                "size": len(f.data),
                "sha256": hashlib.sha256(f.data).hexdigest(),
            }
        )
    return {**meta, "files": entries}, named


def folder_name(meta: dict[str, Any]) -> str:
    day = str(meta.get("received_at", ""))[:10].replace("-", "")
    return f"{day}-{meta.get('sender', 'unknown')}-{str(meta.get('package_sha256', ''))[:12]}"


def _write_drop(drop_dir: Path, name: str, document: dict[str, Any], files: list[tuple[str, bytes]]) -> Path:
    final = drop_dir / name
    if final.exists():
        return final
    staging = drop_dir / ".incoming" / f"{name}.{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for fname, data in files:
        with open(staging / fname, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    with open(staging / SIDECAR, "w", encoding="utf-8") as fh:
        json.dump(document, fh, ensure_ascii=False, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    _fsync_dir(staging)
    os.rename(staging, final)
    _fsync_dir(drop_dir)
    return final


async def deliver(
    *,
    meta: dict[str, Any],
    files: list[FileSpec],
    drop_dir: Path | None,
    callback_url: str | None,
    callback_timeout: float = 10.0,
) -> Path | None:
    """Hand one document to the DMS. Raises ``OSError``/``aiohttp.ClientError`` on failure (retried later)."""
    document, named = sidecar(meta=meta, files=files)
    target = None
    if drop_dir is not None:
        target = await asyncio.to_thread(_write_drop, drop_dir, folder_name(meta), document, named)
    if callback_url:
        payload = dict(document)
        payload["folder"] = str(target) if target is not None else None
        payload["files"] = [
            {**entry, "content_base64": base64.b64encode(data).decode("ascii")}
            for entry, (_, data) in zip(document["files"], named, strict=True)
        ]
        timeout = aiohttp.ClientTimeout(total=callback_timeout)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(callback_url, json=payload) as resp,
        ):
            if resp.status >= 300:
                raise aiohttp.ClientResponseError(
                    resp.request_info, resp.history, status=resp.status, message="DMS callback refused"
                )
    return target
