"""glibc malloc thresholds: large buffers come from the heap once tuned, and the operator's own choice wins.

Each case runs in a fresh interpreter: the settings are process-wide and cannot be undone.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.hub.config import hub_config
from gateway.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")

PROBE = """
import ctypes, json, sys
from gateway.allocator import tune_malloc

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
        "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
tuned = None
if sys.argv[1] == "tune":
    tuned = tune_malloc()
elif sys.argv[1].startswith("hub"):  # what each hub process does at start, with tune_malloc on or off
    from gateway.hub.config import hub_config
    from gateway.hub.server import _prepare_process
    from gateway.settings import load_settings

    _prepare_process(hub_config(load_settings(data_dir=".", tune_malloc=sys.argv[1] == "hub-on")))
before = libc.mallinfo2().hblks
# one buffer the size of a decrypted TLS read or a joined body chunk, allocated the way CPython does
buffer = libc.malloc(1 << 20)
mapped = libc.mallinfo2().hblks - before
libc.free(buffer)
print(json.dumps({"tuned": tuned, "mapped": mapped}))
"""


def probe(mode: str, **env: str) -> dict[str, object]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**environ, **env},
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


@glibc_only
def test_untuned_a_one_mebibyte_buffer_is_its_own_mapping():
    assert probe("plain") == {"tuned": None, "mapped": 1}


@glibc_only
def test_tuned_it_comes_from_the_heap():
    assert probe("tune") == {"tuned": True, "mapped": 0}


@glibc_only
@pytest.mark.parametrize(
    "env",
    [{"MALLOC_MMAP_THRESHOLD_": "131072"}, {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=131072"}],
)
def test_the_operators_own_malloc_settings_are_left_alone(env):
    assert probe("tune", **env) == {"tuned": False, "mapped": 1}


@glibc_only
def test_a_hub_process_tunes_malloc_at_start_unless_told_not_to():
    assert probe("hub-on")["mapped"] == 0
    assert probe("hub-off")["mapped"] == 1


def test_the_hub_setting_reaches_the_hub_config(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert hub_config(load_settings(data_dir=str(tmp_path))).tune_malloc is True
    monkeypatch.setenv("GATEWAY_TUNE_MALLOC", "false")
    assert hub_config(load_settings(data_dir=str(tmp_path))).tune_malloc is False
