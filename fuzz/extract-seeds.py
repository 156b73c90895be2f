#!/usr/bin/env python3
"""Cuts the fuzz seed corpora (fuzz/corpus/<target>/seed-*) out of real sessions.

Usage: fuzz/extract-seeds.py OUT_DIR [PYTHON_WITH_PYATV]

OUT_DIR is the --out folder of a run of the built-in scenarios
(`airtwin run scenarios/ --out OUT_DIR -j 2`). Messages come from each scenario's transcript.txt
(request and response heads, text bodies, hex dumps, binary plists shown as XML) and from the raw
bytes pyatv logs in client-*.log. DNS-SD queries are built by pyatv's own query builder when a
Python with pyatv is given (ci/install-peers installs one in target/peers/venv). RTP seeds wrap
the PCM of the captured session*.wav files in RTP packets as pyatv (L16) and PulseAudio
(verbatim ALAC) send them (docs/protocols/raop.md, docs/peers.md). Scenario YAML seeds are the
smallest built-in scenarios. Each corpus is capped at a few KB.
"""

import ast
import gzip
import hashlib
import os
import plistlib
import re
import shutil
import struct
import subprocess
import sys
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
BUDGET = 6 * 1024  # bytes per target
MAX_FILES = 24

HEAD = re.compile(r"^\s+[\d.]+ms \S+ \S+ (→|←) (.*)$")


def transcript_messages(path):
    """(direction, start line, headers, body bytes or None) of every message in a transcript."""
    msgs, cur, body_lines = [], None, []

    def finish():
        if cur is None:
            return
        msgs.append((cur[0], cur[1], cur[2], decode_body(body_lines)))

    for line in path.read_text(errors="replace").splitlines():
        m = HEAD.match(line)
        if m:
            finish()
            cur, body_lines = (m.group(1), m.group(2), []), []
            continue
        if cur is None:
            continue
        if line.startswith("        | "):
            body_lines.append(line[10:])
        elif line.startswith("        |"):
            body_lines.append("")
        elif line.startswith("        ") and not body_lines and ":" in line:
            name, value = line.strip().split(":", 1)
            cur[2].append((name, value.strip()))
        else:
            finish()
            cur, body_lines = None, []
    finish()
    return msgs


def decode_body(lines):
    if not lines:
        return None
    first = lines[0]
    if first.startswith("(DMAP,"):
        return None  # rendered; the raw bytes come from the DMAP rendering below
    if first.startswith("(binary plist"):
        try:
            return plistlib.dumps(plistlib.loads("\n".join(lines[1:]).encode()), fmt=plistlib.FMT_BINARY)
        except Exception:
            return None
    if re.match(r"^\(\d+ bytes", first):
        hexed = "".join(lines[1:])
        try:
            return bytes.fromhex(hexed)
        except ValueError:
            return None
    return ("\r\n".join(lines) + "\r\n").encode()


def dmap_from_rendering(lines):
    """DMAP bytes from the transcript's rendering (`tag: value  [name]`, two spaces a level)."""
    items = []
    for line in lines[1:]:
        m = re.match(r"^( *)(\w{4}):\s*(.*?)(\s+\[[\w.]+\])?$", line)
        if not m:
            return None
        items.append((len(m.group(1)) // 2, m.group(2).encode(), m.group(3)))

    def build(i, depth):
        out = b""
        while i < len(items) and items[i][0] == depth:
            _, tag, value = items[i]
            if i + 1 < len(items) and items[i + 1][0] > depth:
                inner, i = build(i + 1, depth + 1)
            else:
                i += 1
                if value.startswith('"'):
                    inner = ast.literal_eval(value) if value.endswith('"') else value[1:]
                    inner = inner.encode()
                elif value.startswith("0x"):
                    inner = bytes.fromhex(value.split()[0][2:])
                elif re.match(r"^-?\d+$", value):
                    inner = int(value).to_bytes(8, "big", signed=True)
                    inner = inner[-4:] if -(2**31) <= int(value) < 2**31 else inner
                else:
                    inner = b""
            out += tag + struct.pack(">I", len(inner)) + inner
        return out, i

    try:
        return build(0, 0)[0]
    except Exception:
        return None


def pyatv_raw(path):
    """Raw messages pyatv logged: ('→', bytes) sent, ('←', bytes) received."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        for marker, direction in (("message: b", "→"), ("Received: b", "←")):
            at = line.find(marker)
            if at >= 0:
                try:
                    out.append((direction, ast.literal_eval(line[at + len(marker) - 1 :])))
                except Exception:
                    pass
    return out


def wire(start, headers, body, protocol=None):
    text = start if protocol is None else f"{protocol} {start}"
    head = [text] + [f"{n}: {v}" for n, v in headers if n.lower() != "content-length"]
    body = body or b""
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def rtp_seeds(out_dir):
    """Datagram streams for the rtp_audio target: config byte, then (port, u16 len, bytes)…"""
    wavs = sorted(out_dir.glob("*/*session*.wav"))
    if not wavs:
        return []
    with wave.open(str(wavs[0])) as w:
        pcm = w.readframes(44)  # 44 stereo frames, little-endian
    samples = struct.unpack(f"<{len(pcm) // 2}h", pcm)
    l16 = struct.pack(f">{len(samples)}h", *samples)

    def rtp(seq, ts, payload, marker=False):
        return struct.pack(">BBHII", 0x80, 0x60 | (0x80 if marker else 0), seq, ts, 0x1234) + payload

    def verbatim(stereo):
        # tag CPE (1), instance 0, 12 zero bits, has-size 0, shift 0, escape 1, samples.
        bits = "001" + "0000" + "0" * 12 + "0" + "00" + "1"
        bits += "".join(format(s & 0xFFFF, "016b") for s in stereo)
        bits += "111"  # END
        bits += "0" * (-len(bits) % 8)
        return int(bits, 2).to_bytes(len(bits) // 8, "big")

    def dgram(port, b):
        return bytes([port]) + struct.pack(">H", len(b)) + b

    sync = struct.pack(">BBHIQI", 0x90, 0xD4, 0x0007, 1000, 0, 1352)
    timing = struct.pack(">BBHI", 0x80, 0xD2, 0x0007, 0) + b"\0" * 24
    l16_stream = b"\x08" + dgram(1, sync) + dgram(0, rtp(1, 1000, l16, True)) + dgram(0, rtp(3, 1088, l16)) + dgram(2, timing)
    alac_stream = b"\x00" + dgram(0, rtp(65535, 1000, verbatim(samples), True)) + dgram(0, rtp(0, 1044, verbatim(samples)))
    retransmit = b"\x08" + dgram(1, struct.pack(">BBH", 0x80, 0xD6, 2) + rtp(2, 1044, l16))
    return [l16_stream, alac_stream, retransmit]


def dns_seeds(python):
    if not python:
        return []
    code = (
        "import sys\n"
        "from pyatv.core.mdns import create_service_queries\n"
        "from pyatv.support.dns import QueryType\n"
        "services = ['_raop._tcp.local', '_airplay._tcp.local', '_touch-able._tcp.local', "
        "'_services._dns-sd._udp.local']\n"
        "for q in create_service_queries(services, QueryType.PTR) + "
        "create_service_queries(['001124004491@Kitchen._raop._tcp.local'], QueryType.ANY):\n"
        "    print(q.hex())\n"
    )
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout
    except Exception as e:
        print(f"no DNS-SD seeds: {e}", file=sys.stderr)
        return []
    return [bytes.fromhex(h) for h in out.split()]


def main():
    out_dir = Path(sys.argv[1])
    python = sys.argv[2] if len(sys.argv) > 2 else None
    seeds = {t: [] for t in [
        "framing_request", "framing_response", "sdp", "transport", "dmap", "info_body",
        "play_body", "fairplay", "rtp_audio", "dns_sd_query", "scenario_yaml",
    ]}
    for transcript in sorted(out_dir.glob("*/transcript.txt")):
        protocol, path = "RTSP/1.0", ""
        text = transcript.read_text(errors="replace").splitlines()
        for direction, start, headers, body in transcript_messages(transcript):
            ctype = next((v for n, v in headers if n.lower() == "content-type"), "")
            if direction == "→":
                protocol = start.rsplit(" ", 1)[-1]
                seeds["framing_request"].append(wire(start, headers, body))
                path = start.split(" ")[1] if " " in start else ""
                if path.startswith("/info") and body is not None:
                    seeds["info_body"].append(body)
                if path.startswith("/play") and body is not None:
                    seeds["play_body"].append(bytes([0 if "parameters" in ctype else 1]) + body)
                if path.startswith("/fp-setup") and body is not None:
                    seeds["fairplay"].append(body)
            else:
                seeds["framing_response"].append(wire(start, headers, body, protocol))
                if path.startswith("/fp-setup") and body is not None:
                    seeds["fairplay"].append(body)
            if "sdp" in ctype and body is not None:
                seeds["sdp"].append(body)
            for n, v in headers:
                if n.lower() == "transport":
                    seeds["transport"].append(v.encode())
        # DMAP renderings, wherever they are.
        block = None
        for line in text:
            if line.startswith("        | (DMAP,"):
                block = [line[10:]]
            elif block is not None and line.startswith("        | "):
                block.append(line[10:])
            elif block is not None:
                raw = dmap_from_rendering(block)
                if raw:
                    seeds["dmap"].append(raw)
                block = None
    for log in sorted(out_dir.glob("*/client-*.log")):
        for direction, raw in pyatv_raw(log):
            seeds["framing_request" if direction == "→" else "framing_response"].append(raw)
            head, _, body = raw.partition(b"\r\n\r\n")
            if head.startswith(b"POST /play "):
                seeds["play_body"].append(b"\x01" + body)
            if b"x-dmap-tagged" in head and body:
                try:
                    body = gzip.decompress(body) if b"gzip" in head else body
                    seeds["dmap"].append(body)
                except Exception:
                    pass
    seeds["rtp_audio"] = rtp_seeds(out_dir)
    seeds["dns_sd_query"] = dns_seeds(python)
    yamls = sorted((ROOT / "scenarios").rglob("*.yaml"), key=lambda p: p.stat().st_size)
    seeds["scenario_yaml"] = [p.read_bytes() for p in yamls[:4]]

    for target, found in seeds.items():
        unique = {}
        for s in found:
            unique.setdefault(hashlib.sha1(s).hexdigest()[:12], s)
        # Smallest first, one of each size class, within the budget.
        chosen, total, lengths = [], 0, set()
        for key, s in sorted(unique.items(), key=lambda kv: (len(kv[1]), kv[0])):
            if target.startswith("framing"):
                # One of each kind of message: method (or status) and protocol.
                words = s.split(b"\r\n", 1)[0].split(b" ")
                bucket = (words[0], words[-1] if target.endswith("request") else b" ".join(words[1:2]))
            elif len(unique) <= MAX_FILES:
                bucket = key
            else:
                bucket = len(s) // 4
            if bucket in lengths or total + len(s) > BUDGET or len(chosen) >= MAX_FILES:
                continue
            lengths.add(bucket)
            chosen.append((key, s))
            total += len(s)
        d = CORPUS / target
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        for key, s in chosen:
            (d / f"seed-{key}").write_bytes(s)
        print(f"{target}: {len(chosen)} seeds, {total} bytes (of {len(unique)} distinct)")


if __name__ == "__main__":
    main()
