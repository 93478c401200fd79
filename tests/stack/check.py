#!/usr/bin/env python3
"""Protocol-level readiness checks for the local stack (standard library only).

    check.py mongo HOST PORT   MongoDB OP_MSG {ping: 1} on "admin"; exit 0 if ok == 1
    check.py smtp  HOST PORT   SMTP greeting + EHLO; exit 0 on a 250 reply

Used by tests/stack/stack so that `up` only returns once each server answers
its own protocol, not merely once its port is open.
"""
import smtplib
import socket
import struct
import sys

OP_MSG = 2013


def _cstring(s: str) -> bytes:
    return s.encode() + b"\x00"


def _bson(fields) -> bytes:
    body = b""
    for name, value in fields:
        if isinstance(value, bool):
            body += b"\x08" + _cstring(name) + (b"\x01" if value else b"\x00")
        elif isinstance(value, int):
            body += b"\x10" + _cstring(name) + struct.pack("<i", value)
        elif isinstance(value, str):
            raw = value.encode() + b"\x00"
            body += b"\x02" + _cstring(name) + struct.pack("<i", len(raw)) + raw
        else:
            raise TypeError(type(value))
    return struct.pack("<i", len(body) + 5) + body + b"\x00"


def _ok_field(doc: bytes) -> float:
    """Return the top-level numeric `ok` field of a BSON document."""
    pos, end = 4, struct.unpack_from("<i", doc)[0] - 1
    sizes = {0x01: 8, 0x10: 4, 0x12: 8, 0x11: 8, 0x09: 8, 0x07: 12, 0x08: 1, 0x0A: 0, 0x13: 16}
    while pos < end:
        kind = doc[pos]
        pos += 1
        zero = doc.index(b"\x00", pos)
        name = doc[pos:zero].decode()
        pos = zero + 1
        if name == "ok":
            if kind == 0x01:
                return struct.unpack_from("<d", doc, pos)[0]
            if kind == 0x10:
                return float(struct.unpack_from("<i", doc, pos)[0])
            if kind == 0x12:
                return float(struct.unpack_from("<q", doc, pos)[0])
            if kind == 0x08:
                return float(doc[pos])
        if kind in sizes:
            pos += sizes[kind]
        elif kind in (0x02, 0x0D, 0x0E):  # string-like: int32 length + bytes
            pos += 4 + struct.unpack_from("<i", doc, pos)[0]
        elif kind in (0x03, 0x04):  # document / array
            pos += struct.unpack_from("<i", doc, pos)[0]
        elif kind == 0x05:  # binary
            pos += 5 + struct.unpack_from("<i", doc, pos)[0]
        else:
            raise ValueError(f"unsupported BSON type 0x{kind:02x}")
    raise ValueError("no ok field in reply")


def _recv_exact(sock, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf


def mongo(host: str, port: int) -> None:
    doc = _bson([("ping", 1), ("$db", "admin")])
    payload = struct.pack("<I", 0) + b"\x00" + doc  # flagBits, section kind 0
    header = struct.pack("<iiii", 16 + len(payload), 1, 0, OP_MSG)
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(header + payload)
        length, _req, _resp, opcode = struct.unpack("<iiii", _recv_exact(s, 16))
        body = _recv_exact(s, length - 16)
    if opcode != OP_MSG or body[4] != 0:
        raise ValueError(f"unexpected reply opcode={opcode}")
    ok = _ok_field(body[5:])
    if ok != 1.0:
        raise ValueError(f"ping returned ok={ok}")
    print("mongo ping ok")


def smtp(host: str, port: int) -> None:
    with smtplib.SMTP(host, port, timeout=5) as s:
        code, msg = s.ehlo("stack-check.localhost")
        if code != 250:
            raise ValueError(f"EHLO answered {code} {msg!r}")
    print("smtp ehlo ok")


def main() -> int:
    if len(sys.argv) != 4 or sys.argv[1] not in ("mongo", "smtp"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        {"mongo": mongo, "smtp": smtp}[sys.argv[1]](sys.argv[2], int(sys.argv[3]))
    except Exception as e:  # noqa: BLE001 - any failure means "not ready"
        print(f"{sys.argv[1]} check failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
