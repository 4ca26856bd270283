"""Sign and verify edXML packages in both carriage forms, beside floors measured in the same run (issue 2).

Per core (one process), for packages of 10 KB, 1 MB and 20 MB on the wire:

* **single file**: one inline attachment, whole-document signature (``Reference URI=""``); *sign* is
  :func:`sign_message` (build with base64, sign); *verify* is :func:`verify_package` on the bytes;
* **multipart**: the same kind of attachment as a raw part, envelope signature; *sign* hashes the part,
  signs the edXML part (manifest with size and SHA-256) and writes the body with :func:`iter_multipart`;
  *verify* is what the hub does: the body, in 1 MiB ``bytes`` chunks, through :class:`MultipartReader` into a
  :class:`DiscardSink`, then ``verify_package(edxml, attachments=digests)``.

Floors, in the same run: ``hashlib.sha256`` over the same 20 MB; RSA-2048 PKCS#1 v1.5 SHA-256 sign and
verify of 32 bytes (cryptography); python-xmlsec verifying the very same single-file packages
(:func:`bench.signature_verify.xmlsec_verifier`, allow-lists set, key pinned). The *crypto floor* of a row
is one RSA-2048 operation plus SHA-256 over the package's bytes: work no implementation can avoid.

Timing: one warm-up call, then batches of calls sized to about a tenth of the time box, repeated until the
box is spent (at least three batches); the figure is the median batch rate. A target's figure and its
floor are timed interleaved (batch of one, batch of the other, …) so both see the same machine.

Peak memory growth of the 20 MB multipart verify is measured in a fresh process (tracemalloc peak minus
baseline, and peak RSS minus baseline), the body read from a temp file in 1 MiB chunks, never held whole.

    .venv/bin/python -m bench.core [--quick] [--seconds 1.5]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1] / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding  # noqa: E402

from bench.signature_verify import signed_package, xmlsec_verifier  # noqa: E402
from gateway.edxml.model import DocumentPackage  # noqa: E402
from gateway.edxml.multipart import DiscardSink, MultipartReader, iter_multipart  # noqa: E402
from gateway.edxml.parse import parse  # noqa: E402
from gateway.signature.sign import sign_message  # noqa: E402
from gateway.verification import verify_package  # noqa: E402

SIZES: dict[str, int] = {"10 KB": 10_000, "1 MB": 1_000_000, "20 MB": 20_000_000}
CHUNK = 1 << 20
MB = 1_000_000
AT = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)  # tests' SIGNING_TIME: the packages are dated 2026-03-01

TARGET_MULTIPART_RATIO = 0.70
TARGET_MEMORY_MB = 16.0
TARGET_SINGLE_RATIO = 0.80
TARGET_SMALL_RATE = 1500.0


# --------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------


def rates(*fns: Callable[[], object], seconds: float) -> list[float]:
    """Calls per second of each function: the median of time-boxed batches, the functions interleaved.

    Each gets a warm-up call, then batches sized to about a tenth of the box; batches of the functions
    alternate until the box (per function) is spent, at least three each. Interleaving makes a figure and
    its floor share whatever else the machine is doing at the time, so their ratio stays honest.
    """
    batches = []
    for fn in fns:
        start = time.perf_counter()
        fn()
        batches.append(max(1, int(seconds / 10 / max(time.perf_counter() - start, 1e-7))))
    samples: list[list[float]] = [[] for _ in fns]
    box = time.perf_counter()
    while len(samples[0]) < 3 or time.perf_counter() - box < seconds * len(fns):
        for fn, batch, out in zip(fns, batches, samples, strict=True):
            t0 = time.perf_counter()
            for _ in range(batch):
                fn()
            out.append(batch / (time.perf_counter() - t0))
    return [statistics.median(s) for s in samples]


def rate(fn: Callable[[], object], *, seconds: float) -> float:
    """Calls per second of one function (see :func:`rates`)."""
    return rates(fn, seconds=seconds)[0]


# --------------------------------------------------------------------------------------------------
# Packages
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Multipart:
    """A signed multipart package: its Content-Type, body, and what signing it started from."""

    content_type: str
    body: bytes
    message: DocumentPackage  # unsigned, manifest without digests, no inline attachment
    attachment: bytes


def _signer() -> Any:
    from pki_fixtures import build_pki

    return build_pki().province_rsa


def _trust() -> Any:
    from pki_fixtures import build_pki

    return build_pki().store


def sign_multipart(message: DocumentPackage, attachment: bytes) -> tuple[str, Iterator[bytes]]:
    """What a sending node does: hash the part, sign the edXML part over the manifest, write the body."""
    signer = _signer()
    ref = dataclasses.replace(
        message.manifest[0], size=len(attachment), sha256=hashlib.sha256(attachment).hexdigest()
    )
    msg = dataclasses.replace(message, manifest=(ref,), attachments=())
    edxml = sign_message(msg, key=signer.key, cert=signer.cert, chain=signer.chain, reference="envelope")
    return iter_multipart(edxml, [(ref, attachment)], chunk_size=CHUNK)


def multipart_package(size: int) -> Multipart:
    """A multipart package of about ``size`` bytes on the wire (one random raw attachment)."""
    from signature_helpers import package

    message = package()
    message = dataclasses.replace(message, attachments=())

    def body_for(payload: int) -> tuple[str, bytes, bytes]:
        attachment = os.urandom(payload)
        content_type, chunks = sign_multipart(message, attachment)
        return content_type, b"".join(chunks), attachment

    _, probe, _ = body_for(1)
    content_type, body, attachment = body_for(max(1, size - len(probe) + 1))
    return Multipart(content_type=content_type, body=body, message=message, attachment=attachment)


def single_message(data: bytes) -> DocumentPackage:
    """The unsigned message a single-file package was signed from (to time signing it again)."""
    msg = parse(data)
    assert isinstance(msg, DocumentPackage)
    return msg


def pieces(body: bytes) -> list[bytes]:
    """The body as a network stream hands it over: 1 MiB ``bytes`` chunks."""
    return [body[i : i + CHUNK] for i in range(0, len(body), CHUNK)]


def verify_multipart(content_type: str, chunks: Iterator[bytes] | list[bytes], trust: Any = None) -> Any:
    """What the hub does with a multipart body: stream, hash, discard, then verify the edXML part."""
    trust = trust if trust is not None else _trust()
    reader = MultipartReader(content_type, sink_factory=DiscardSink)
    for chunk in chunks:
        reader.feed(chunk)
    result = reader.close()
    return verify_package(result.edxml, trust=trust, at=AT, attachments=result.digests())


# --------------------------------------------------------------------------------------------------
# Memory (a fresh process, so that peak RSS says something)
# --------------------------------------------------------------------------------------------------


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def memory_probe(path: str, content_type: str, trust_dir: str) -> dict[str, float]:
    """Peak memory growth of one streamed multipart verify (run after one warm-up verify of the same file)."""
    from gateway.trust.store import TrustStore

    trust = TrustStore.load(trust_dir)

    def from_file() -> Iterator[bytes]:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    verify_multipart(content_type, from_file(), trust)  # warm-up: imports, caches, certificate parsing
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
        rss_reset = True
    except OSError:
        rss_reset = False
    rss_base = _rss_kib("VmRSS")
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    verified = verify_multipart(content_type, from_file(), trust)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_peak = _rss_kib("VmHWM")
    assert verified.reference == "envelope"
    assert verified.message.manifest[0].size > 0.99 * os.path.getsize(path) - 20_000
    return {
        "tracemalloc_peak_growth_mb": (peak - base) / MB,
        "rss_peak_growth_mb": (rss_peak - rss_base) * 1024 / MB if rss_reset else float("nan"),
        "body_mb": os.path.getsize(path) / MB,
    }


def measure_memory(package: Multipart) -> dict[str, float]:
    """Run :func:`memory_probe` in a fresh process over a temp file of the body and a trust folder."""
    from cryptography.hazmat.primitives.serialization import Encoding
    from pki_fixtures import build_pki

    pki = build_pki()
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        trust_dir = Path(tmp, "trust")
        trust_dir.mkdir()
        Path(trust_dir, "root.pem").write_bytes(pki.root.cert.public_bytes(Encoding.PEM))
        Path(trust_dir, "issuing.pem").write_bytes(pki.intermediate.cert.public_bytes(Encoding.PEM))
        Path(trust_dir, "issuing.crl").write_bytes(pki.crl.public_bytes(Encoding.PEM))
        Path(trust_dir, "root.crl").write_bytes(pki.root_crl.public_bytes(Encoding.PEM))
        body = Path(tmp, "body.bin")
        body.write_bytes(package.body)
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.core",
                "--memory-probe",
                str(body),
                package.content_type,
                str(trust_dir),
            ],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
    if out.returncode != 0:
        raise RuntimeError(f"the memory probe failed:\n{out.stderr}")
    return json.loads(out.stdout)


# --------------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------------


def _row(
    op: str, form: str, label: str, size: int, ops: float, floor_name: str, floor_ops: float
) -> dict[str, Any]:
    return {
        "op": op,
        "form": form,
        "size": label,
        "bytes": size,
        "ops_per_s": ops,
        "mb_per_s": ops * size / MB,
        "floor": floor_name,
        "floor_ops_per_s": floor_ops,
        "floor_mb_per_s": floor_ops * size / MB,
        "ratio": ops / floor_ops,
    }


def run(*, quick: bool = False, seconds: float | None = None, log: Callable[[str], None] = print) -> dict:
    """Measure everything; returns the JSON-ready result (rows, floors, memory, targets)."""
    box = seconds if seconds is not None else (0.3 if quick else 1.5)
    signer = _signer()
    log(f"building packages ({', '.join(SIZES)}; both forms) …")
    singles = {label: signed_package(size) for label, size in SIZES.items()}
    multis = {label: multipart_package(size) for label, size in SIZES.items()}

    # Sanity: each package verifies, and the multipart one through the streamed path.
    for label in SIZES:
        assert verify_package(singles[label], trust=_trust(), at=AT).reference == "document"
        mp = multis[label]
        verified = verify_multipart(mp.content_type, pieces(mp.body))
        assert verified.reference == "envelope"
        assert verified.message.manifest[0].size == len(mp.attachment)

    log("floors …")
    digest = os.urandom(32)
    pad, sha = padding.PKCS1v15(), hashes.SHA256()
    sig = signer.key.sign(digest, pad, sha)
    pub = signer.key.public_key()
    rsa_verify = rate(lambda: pub.verify(sig, digest, pad, sha), seconds=box)
    rsa_sign = rate(lambda: signer.key.sign(digest, pad, sha), seconds=box)
    # The 20 MB multipart verify and SHA-256 over the same body, interleaved (target 1).
    mp20 = multis["20 MB"]
    chunks20 = pieces(mp20.body)
    mp20_verify, sha_calls = rates(
        lambda: verify_multipart(mp20.content_type, chunks20),
        lambda: hashlib.sha256(mp20.body).digest(),
        seconds=box,
    )
    sha_rate = sha_calls * len(mp20.body) / MB
    xmlsec: dict[str, float] = {}

    def crypto_floor(one_op: float, size: int) -> float:
        return 1 / (1 / one_op + size / (sha_rate * MB))

    rows: list[dict[str, Any]] = []
    for label in SIZES:
        data, mp = singles[label], multis[label]
        log(f"{label} …")
        msg = single_message(data)
        ops = rate(
            lambda msg=msg: sign_message(msg, key=signer.key, cert=signer.cert, chain=signer.chain),
            seconds=box,
        )
        floor = crypto_floor(rsa_sign, len(data))
        rows.append(_row("sign", "single", label, len(data), ops, "crypto", floor))
        verify = xmlsec_verifier(data)
        ops, xmlsec[label] = rates(
            lambda data=data: verify_package(data, trust=_trust(), at=AT),
            lambda data=data, verify=verify: verify(data),
            seconds=box,
        )
        rows.append(_row("verify", "single", label, len(data), ops, "python-xmlsec", xmlsec[label]))

        def sign_mp(mp: Multipart = mp) -> None:
            for _ in sign_multipart(mp.message, mp.attachment)[1]:
                pass

        ops = rate(sign_mp, seconds=box)
        size = len(mp.body)
        rows.append(_row("sign", "multipart", label, size, ops, "crypto", crypto_floor(rsa_sign, size)))
        if mp is mp20:
            ops = mp20_verify
        else:
            chunks = pieces(mp.body)
            ops = rate(lambda mp=mp, chunks=chunks: verify_multipart(mp.content_type, chunks), seconds=box)
        rows.append(_row("verify", "multipart", label, size, ops, "crypto", crypto_floor(rsa_verify, size)))

    log("10 KB stages …")
    stages = stages_10k(singles["10 KB"], seconds=box)
    log("memory (20 MB multipart verify, fresh process) …")
    memory = measure_memory(multis["20 MB"])
    result = {
        "name": "core",
        "quick": quick,
        "seconds_per_measurement": box,
        "floors": {
            "sha256_mb_per_s": sha_rate,
            "rsa2048_verify_per_s": rsa_verify,
            "rsa2048_sign_per_s": rsa_sign,
            "python_xmlsec_verify_per_s": xmlsec,
        },
        "rows": rows,
        "memory": memory,
        "stages_10k_single": stages,
    }
    result["targets"] = targets(result)
    return result


def stages_10k(data: bytes, *, seconds: float) -> dict[str, float]:
    """Where a 10 KB verify spends its time: microseconds per stage (the rest is model + field checks)."""
    from gateway.signature.verify import verify_signature

    signature = verify_signature(data)
    signer, extra = signature.signer, signature.extra_certs
    organ_id = verify_package(data, trust=_trust(), at=AT).organ_id
    total = 1e6 / rate(lambda: verify_package(data, trust=_trust(), at=AT), seconds=seconds)
    sig = 1e6 / rate(lambda: verify_signature(data), seconds=seconds)
    chain = 1e6 / rate(
        lambda: _trust().validate(signer, at=AT, extra_intermediates=extra, organ_id=organ_id),
        seconds=seconds,
    )
    return {
        "total_us": total,
        "signature_us": sig,
        "trust_chain_us": chain,
        "model_and_fields_us": total - sig - chain,
    }


def _find(rows: list[dict[str, Any]], op: str, form: str, size: str) -> dict[str, Any]:
    return next(r for r in rows if (r["op"], r["form"], r["size"]) == (op, form, size))


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The three targets of issue 2, each with what was measured and PASS/MISS."""
    rows, floors, memory = result["rows"], result["floors"], result["memory"]
    mp = _find(rows, "verify", "multipart", "20 MB")
    mp_ratio = mp["mb_per_s"] / floors["sha256_mb_per_s"]
    growth = memory["tracemalloc_peak_growth_mb"]
    single = _find(rows, "verify", "single", "20 MB")
    small = min(_find(rows, "verify", form, "10 KB")["ops_per_s"] for form in ("single", "multipart"))
    return [
        {
            "name": "multipart verify 20 MB",
            "target": f"≥ {TARGET_MULTIPART_RATIO:.0%} of SHA-256, peak growth < {TARGET_MEMORY_MB:.0f} MB",
            "measured": f"{mp['mb_per_s']:,.0f} MB/s = {mp_ratio:.0%} of {floors['sha256_mb_per_s']:,.0f}; "
            f"peak +{growth:.2f} MB (RSS +{memory['rss_peak_growth_mb']:.1f} MB)",
            "pass": mp_ratio >= TARGET_MULTIPART_RATIO and growth < TARGET_MEMORY_MB,
        },
        {
            "name": "single-file verify 20 MB",
            "target": f"≥ {TARGET_SINGLE_RATIO:.0%} of python-xmlsec",
            "measured": f"{single['mb_per_s']:,.0f} MB/s = {single['ratio']:.0%} of "
            f"{single['floor_mb_per_s']:,.0f}",
            "pass": single["ratio"] >= TARGET_SINGLE_RATIO,
        },
        {
            "name": "verify 10 KB (both forms)",
            "target": f"≥ {TARGET_SMALL_RATE:,.0f}/s",
            "measured": f"{small:,.0f}/s (slower form)",
            "pass": small >= TARGET_SMALL_RATE,
        },
    ]


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------


def _fmt_rate(ops: float) -> str:
    return f"{ops:,.0f}/s" if ops >= 10 else f"{ops:.2f}/s"


def print_table(result: dict[str, Any]) -> None:
    """The figures beside their floors (rich), then the floors and the targets."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 140))
    table = Table(title="edXML sign / verify, per core (one process)")
    for col in ("op", "form", "size", "ops/s", "MB/s", "floor", "floor ops/s", "floor MB/s", "ratio"):
        table.add_column(col, justify="left" if col in ("op", "form", "floor") else "right")
    for r in result["rows"]:
        table.add_row(
            r["op"],
            r["form"],
            r["size"],
            _fmt_rate(r["ops_per_s"]),
            f"{r['mb_per_s']:,.1f}",
            r["floor"],
            _fmt_rate(r["floor_ops_per_s"]),
            f"{r['floor_mb_per_s']:,.1f}",
            f"{r['ratio']:.0%}",
        )
    console.print(table)
    f = result["floors"]
    console.print(
        f"floors: SHA-256 {f['sha256_mb_per_s']:,.0f} MB/s"
        f" · RSA-2048 verify {f['rsa2048_verify_per_s']:,.0f}/s · sign {f['rsa2048_sign_per_s']:,.0f}/s"
        " · python-xmlsec verify "
        + ", ".join(f"{k} {_fmt_rate(v)}" for k, v in f["python_xmlsec_verify_per_s"].items())
    )
    console.print("crypto floor = one RSA-2048 operation + SHA-256 over the package bytes")
    st = result["stages_10k_single"]
    console.print(
        f"10 KB single-file verify, µs per stage: signature {st['signature_us']:.0f}"
        f" + trust chain {st['trust_chain_us']:.0f} + model and fields {st['model_and_fields_us']:.0f}"
        f" = {st['total_us']:.0f}"
    )
    targets_table = Table(title="targets")
    for col in ("target", "wanted", "measured", ""):
        targets_table.add_column(col)
    for t in result["targets"]:
        verdict = "[green]PASS[/green]" if t["pass"] else "[red]MISS[/red]"
        targets_table.add_row(t["name"], t["target"], t["measured"], verdict)
    console.print(targets_table)


def markdown(result: dict[str, Any]) -> list[str]:
    """A compact Markdown rendering for the README section."""
    lines = [
        "| op | form | size | rate | MB/s | floor | floor rate | ratio |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['op']} | {r['form']} | {r['size']} | {_fmt_rate(r['ops_per_s'])} | {r['mb_per_s']:,.1f} "
            f"| {r['floor']} | {_fmt_rate(r['floor_ops_per_s'])} | {r['ratio']:.0%} |"
        )
    f = result["floors"]
    lines += [
        "",
        f"Floors in the same run: SHA-256 {f['sha256_mb_per_s']:,.0f} MB/s; RSA-2048 verify "
        f"{f['rsa2048_verify_per_s']:,.0f}/s, sign {f['rsa2048_sign_per_s']:,.0f}/s; python-xmlsec verify of "
        "the same single-file packages. *crypto* = one RSA-2048 operation + SHA-256 over the package bytes.",
        "Large single-file figures depend on glibc malloc's state (its dynamic mmap threshold): in some "
        "processes both verifiers run slower, ours more so (20 MB: ≈ 78 % of python-xmlsec instead of "
        "≈ 93 %); `MALLOC_MMAP_THRESHOLD_=67108864` makes them stable.",
        "",
        "| target | wanted | measured | |",
        "| --- | --- | --- | --- |",
    ]
    for t in result["targets"]:
        lines.append(f"| {t['name']} | {t['target']} | {t['measured']} | {'PASS' if t['pass'] else 'MISS'} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="0.3 s per measurement instead of 1.5 s")
    parser.add_argument("--seconds", type=float, default=None, help="time box per measurement")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of tables")
    parser.add_argument("--memory-probe", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        print(json.dumps(memory_probe(*args.memory_probe)))
        return
    result = run(quick=args.quick, seconds=args.seconds, log=lambda m: print(m, file=sys.stderr))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)


if __name__ == "__main__":
    main()
