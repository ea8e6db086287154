#!/usr/bin/env python3
"""Generates castgate's corpus of malformed inputs (Python 3, stdlib only).

    python3 tests/corpus/generate.py

writes every corpus file under tests/corpus/<category>/, the manifest
tests/corpus/MANIFEST.tsv that e2e/corpus.rs replays them from, and
tests/corpus/README.md (the file list with what each one is and what castgate
must do). Output is deterministic: running it again changes nothing.

Byte layout of a file, by category (see README.md):

- handshake/, chunk/, amf/: the whole byte stream a client sends, from its
  first byte (C0) on. Files that get past the handshake use the simple
  (zero-version) handshake: castgate skips C2 without checking it, so static
  bytes are a valid client.
- flv/, codec/: the chunk stream a publisher sends *after* a valid publish.
  The replayer makes that prefix itself (handshake, connect to `live`,
  createStream, publish of `live/<category>-<name>` on message stream 1)
  and waits for NetStream.Publish.Start, since media sent before the publish
  is accepted is not media of a published stream. The files use type-0
  chunk headers only, so they do not depend on the prefix's header
  compression, and the default chunk size (128).
- http/: one raw HTTP request, exactly as sent to the HTTP port.

Files whose outcome is `open` leave the chunk size at 6 bytes or more: the
replayer follows every RTMP file with a Ping Request on chunk stream 2 (a
type-0 chunk) and waits for castgate's Ping Response, proving the session
read everything before it and is still alive.
"""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# The stream published alongside the corpus in e2e/corpus.rs; HTTP files
# that need an existing stream name it.
LIVE = "live/alongside"

# --------------------------------------------------------------------------
# AMF0 / AMF3 encoders


def amf_num(x):
    return b"\x00" + struct.pack(">d", x)


def amf_bool(b):
    return b"\x01" + bytes([1 if b else 0])


def amf_str(s):
    b = s.encode() if isinstance(s, str) else s
    return b"\x02" + struct.pack(">H", len(b)) + b


def amf_key(k):
    b = k.encode() if isinstance(k, str) else k
    return struct.pack(">H", len(b)) + b


def amf_obj(pairs):
    out = b"\x03"
    for k, v in pairs:
        out += amf_key(k) + v
    return out + b"\x00\x00\x09"


NULL = b"\x05"
UNDEFINED = b"\x06"


def u29(n):
    """AMF3 variable-length 29-bit integer."""
    assert 0 <= n < (1 << 29)
    if n < 0x80:
        return bytes([n])
    if n < 0x4000:
        return bytes([(n >> 7) | 0x80, n & 0x7F])
    if n < 0x200000:
        return bytes([(n >> 14) | 0x80, ((n >> 7) & 0x7F) | 0x80, n & 0x7F])
    return bytes(
        [(n >> 22) | 0x80, ((n >> 15) & 0x7F) | 0x80, ((n >> 8) & 0x7F) | 0x80, n & 0xFF]
    )


# --------------------------------------------------------------------------
# RTMP chunks

C0C1 = b"\x03" + bytes(1536)  # simple handshake: time 0, zero version
C2 = bytes(1536)
HANDSHAKE = C0C1 + C2


def basic_header(fmt, csid):
    if 2 <= csid <= 63:
        return bytes([(fmt << 6) | csid])
    if 64 <= csid <= 319:
        return bytes([fmt << 6, csid - 64])
    return bytes([(fmt << 6) | 1]) + struct.pack("<H", csid - 64)


def chunks(csid, type_id, stream_id, payload, ts=0, chunk_size=128):
    """One message as a type-0 chunk and type-3 continuations."""
    ext = ts >= 0xFFFFFF
    field = 0xFFFFFF if ext else ts
    out = basic_header(0, csid)
    out += struct.pack(">I", field)[1:] + struct.pack(">I", len(payload))[1:]
    out += bytes([type_id]) + struct.pack("<I", stream_id)
    if ext:
        out += struct.pack(">I", ts)
    first = True
    pos = 0
    while first or pos < len(payload):
        if not first:
            out += basic_header(3, csid)
            if ext:
                out += struct.pack(">I", ts)
        out += payload[pos : pos + chunk_size]
        pos += chunk_size
        first = False
    return out


def first_chunk(csid, type_id, stream_id, payload, chunk_size=128):
    """Only the first chunk of a message (the rest never comes)."""
    whole = chunks(csid, type_id, stream_id, payload, chunk_size=chunk_size)
    return whole[: len(basic_header(0, csid)) + 11 + chunk_size]


def command(values, stream_id=0, csid=3, chunk_size=128):
    return chunks(csid, 20, stream_id, b"".join(values), chunk_size=chunk_size)


def control(type_id, payload):
    return chunks(2, type_id, 0, payload)


def connect(app="live", extra=(), tid=1.0, csid=3, chunk_size=128):
    obj = [
        ("app", amf_str(app)),
        ("flashVer", amf_str("FMLE/3.0 (compatible; corpus)")),
        ("tcUrl", amf_str("rtmp://127.0.0.1/" + app)),
    ]
    obj += list(extra)
    return command(
        [amf_str("connect"), amf_num(tid), amf_obj(obj)], csid=csid, chunk_size=chunk_size
    )


def create_stream(tid=2.0):
    return command([amf_str("createStream"), amf_num(tid), NULL])


def stream_command(name, args, stream_id=1, tid=0.0):
    return command([amf_str(name), amf_num(tid), NULL] + list(args), stream_id=stream_id)


def set_chunk_size(n):
    return control(1, struct.pack(">I", n))


# --------------------------------------------------------------------------
# FLV tag bodies

# A real High-profile SPS/PPS pair (from src/media/avc.rs's tests).
SPS = bytes.fromhex("6764001eacd940a02ff970110000030001000003003c0f162d96")
PPS = bytes.fromhex("68ebe3cb22c0")


def avc_record(sps_list=(SPS,), pps_list=(PPS,), version=1, length_size_minus_one=3):
    out = bytes([version, 0x64, 0x00, 0x1E, 0xFC | length_size_minus_one])
    out += bytes([0xE0 | len(sps_list)])
    for s in sps_list:
        out += struct.pack(">H", len(s)) + s
    out += bytes([len(pps_list)])
    for p in pps_list:
        out += struct.pack(">H", len(p)) + p
    return out


def avc_seq(record):
    return b"\x17\x00\x00\x00\x00" + record


def nal(body):
    return struct.pack(">I", len(body)) + body


def avc_frame(nals, key=True, cts=0):
    return bytes([0x17 if key else 0x27, 1]) + struct.pack(">i", cts)[1:] + b"".join(nals)


IDR = nal(b"\x65\x88\x84\x00\x33\xff" + bytes(range(40)))
INTER = nal(b"\x41\x9a\x02\x04" + bytes(range(20)))

ASC = bytes([0x11, 0x90])  # AAC-LC, 48 kHz, stereo


def aac_seq(asc):
    return b"\xaf\x00" + asc


def aac_frame(data=b"\x21\x10\x04\x60\x8c\x1c"):
    return b"\xaf\x01" + data


def video(body, ts=0):
    return chunks(6, 9, 1, body, ts=ts)


def audio(body, ts=0):
    return chunks(4, 8, 1, body, ts=ts)


def flv_tag(type_id, ts, body):
    """An FLV tag as carried in an aggregate message (with PreviousTagSize)."""
    head = bytes([type_id]) + struct.pack(">I", len(body))[1:]
    head += struct.pack(">I", ts & 0xFFFFFF)[1:] + bytes([(ts >> 24) & 0xFF]) + b"\x00\x00\x00"
    return head + body + struct.pack(">I", 11 + len(body))


VALID_VIDEO_START = video(avc_seq(avc_record())) + video(avc_frame([IDR]))
VALID_AUDIO_START = audio(aac_seq(ASC))

# --------------------------------------------------------------------------
# Bit writer for SPS / AudioSpecificConfig


class Bits:
    def __init__(self):
        self.bits = []

    def u(self, n, v):
        for i in range(n - 1, -1, -1):
            self.bits.append((v >> i) & 1)
        return self

    def ue(self, v):
        v += 1
        n = v.bit_length()
        self.u(n - 1, 0)
        return self.u(n, v)

    def se(self, v):
        return self.ue(2 * v - 1 if v > 0 else -2 * v)

    def bytes(self, pad_stop_bit=True):
        bits = list(self.bits)
        if pad_stop_bit:
            bits.append(1)
        while len(bits) % 8:
            bits.append(0)
        return bytes(
            int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8)
        )


def sps(width_mbs_minus1=19, height_mbs_minus1=14, crop=None, profile=66):
    """A Baseline SPS (no VUI) with chosen dimensions."""
    b = Bits()
    b.u(8, profile).u(8, 0).u(8, 30)
    b.ue(0)  # seq_parameter_set_id
    b.ue(0)  # log2_max_frame_num_minus4
    b.ue(0)  # pic_order_cnt_type
    b.ue(0)  # log2_max_pic_order_cnt_lsb_minus4
    b.ue(1)  # max_num_ref_frames
    b.u(1, 0)  # gaps
    b.ue(width_mbs_minus1)
    b.ue(height_mbs_minus1)
    b.u(1, 1)  # frame_mbs_only
    b.u(1, 1)  # direct_8x8
    if crop:
        b.u(1, 1)
        for c in crop:
            b.ue(c)
    else:
        b.u(1, 0)
    b.u(1, 0)  # no VUI
    return b"\x67" + b.bytes()


def sps_high_bad_scaling():
    """High profile SPS whose first scaling list has delta_scale 200 (> 127)."""
    b = Bits()
    b.u(8, 100).u(8, 0).u(8, 30)
    b.ue(0)  # sps id
    b.ue(1)  # chroma_format_idc
    b.ue(0).ue(0)  # bit depths
    b.u(1, 0)  # qpprime
    b.u(1, 1)  # seq_scaling_matrix_present
    b.u(1, 1)  # list 0 present
    b.se(200)
    return b"\x67" + b.bytes()


def asc_bytes(object_type, freq_index, channels, explicit_rate=None, ga=True, pce=None):
    """An AudioSpecificConfig; `ga` adds the three GASpecificConfig flags."""
    b = Bits()
    if object_type >= 31:
        b.u(5, 31).u(6, object_type - 32)
    else:
        b.u(5, object_type)
    b.u(4, freq_index)
    if freq_index == 15 and explicit_rate is not None:
        b.u(24, explicit_rate)
    b.u(4, channels)
    if ga:
        b.u(1, 0).u(1, 0).u(1, 0)  # frameLength, dependsOnCoreCoder, extension
    if pce is not None:
        pce(b)
    return b.bytes(pad_stop_bit=False)


# --------------------------------------------------------------------------
# The cases

CASES = []


def case(category, name, data, expect, log="", reply="", bad_tags="-", what="", ext="bin"):
    assert all(c.isalnum() or c == "-" for c in name), name
    assert "\t" not in log + reply + what
    CASES.append(
        dict(
            category=category,
            name=name,
            file=name + "." + ext,
            data=data,
            expect=expect,
            log=log,
            reply=reply,
            bad_tags=str(bad_tags),
            what=what,
        )
    )


TIMEOUT = "handshake and connect not finished"
CONNECTED = 'connected app="live"'

# ---- handshake/ ------------------------------------------------------------

H = "handshake"
case(H, "empty", b"", "close", TIMEOUT, what="connects and sends nothing")
case(H, "c0-only", b"\x03", "close", TIMEOUT, what="C0 and nothing more")
case(H, "c1-truncated", b"\x03" + bytes(1000), "close", TIMEOUT,
     what="C0 and 1000 of C1's 1536 bytes")
case(H, "no-c2", C0C1, "close", TIMEOUT, reply="",
     what="C0+C1, then silence: S0+S1+S2 come back, C2 never does")
case(H, "c2-truncated", C0C1 + bytes(700), "close", TIMEOUT,
     what="C0+C1 and 700 bytes of C2")
case(H, "version-0", b"\x00" + bytes(1536), "close",
     "unsupported RTMP version byte 0x00", what="version byte 0")
case(H, "version-ff", b"\xff" + bytes(1536), "close",
     "unsupported RTMP version byte 0xff", what="version byte 0xFF")
case(H, "rtmpe-06", b"\x06" + bytes(1536), "close", "RTMPE",
     what="RTMPE version byte 6 (encrypted RTMP, unsupported)")
case(H, "rtmpe-08", b"\x08" + bytes(1536), "close", "RTMPE",
     what="RTMPE version byte 8 (XTEA variant)")
case(H, "http-get", b"GET /live/x HTTP/1.1\r\nHost: x\r\n\r\n", "close",
     "looks like an HTTP request", what="an HTTP GET on the RTMP port")
case(H, "rtmpt-post", b"POST /open/1 HTTP/1.1\r\nContent-Length: 1\r\n\r\n\x00", "close",
     "unsupported RTMP version byte 0x50", what="an RTMPT open request on the plain RTMP port")
case(H, "tls-client-hello", bytes.fromhex("16030100c8010000c40303") + bytes(200), "close",
     "unsupported RTMP version byte 0x16", what="a TLS ClientHello (rtmps:// to the plain port)")
case(H, "proxy-protocol", b"PROXY TCP4 10.0.0.1 10.0.0.2 5555 1935\r\n" + C0C1, "close",
     "unsupported RTMP version byte 0x50", what="a PROXY protocol v1 header before C0")
fp9 = bytearray(C0C1)
fp9[5:9] = bytes([9, 0, 124, 2])  # a Flash Player version: the digest scheme is tried
for i in range(9, 1537):
    fp9[i] = (i * 37 + 11) & 0xFF
case(H, "fp9-no-digest", bytes(fp9) + C2, "close", TIMEOUT,
     what="a Flash-version C1 whose digest matches neither scheme (falls back to the echo), then no connect")
fp9max = bytearray(fp9)
fp9max[9:13] = b"\xff\xff\xff\xff"  # scheme 1 offset bytes
fp9max[773:777] = b"\xff\xff\xff\xff"  # scheme 2 offset bytes
case(H, "fp9-offsets-max", bytes(fp9max) + C2, "close", TIMEOUT,
     what="digest offset bytes all 0xFF (largest offsets both schemes can compute)")
case(H, "c0-twice", b"\x03" + C0C1 + C2, "close", TIMEOUT,
     what="C0 sent twice: C1 and C2 are shifted one byte, so C2's last byte starts a chunk header that never completes")

# ---- chunk/ ------------------------------------------------------------------

C = "chunk"
# A connect longer than one 128-byte chunk.
_long_connect = b"".join([amf_str("connect"), amf_num(1.0), amf_obj([
    ("app", amf_str("live")), ("tcUrl", amf_str("rtmp://127.0.0.1/live/" + "p" * 150))])])
case(C, "set-chunk-size-0", HANDSHAKE + set_chunk_size(0), "close", "chunk size 0 is invalid",
     what="Set Chunk Size 0")
case(C, "set-chunk-size-7fffffff", HANDSHAKE + set_chunk_size(0x7FFFFFFF), "close",
     "chunk size 2147483647 is invalid", what="Set Chunk Size 0x7FFFFFFF (protocol maximum, above the configured limit)")
case(C, "set-chunk-size-top-bit", HANDSHAKE + set_chunk_size(0x80000001), "close",
     "chunk size 2147483649 is invalid", what="Set Chunk Size with the reserved top bit set")
case(C, "set-chunk-size-short", HANDSHAKE + control(1, b"\x00\x80"), "close",
     "Set Chunk Size without a size", what="Set Chunk Size with a 2-byte payload")
case(C, "type3-first", HANDSHAKE + b"\xc3" + bytes(20), "close",
     "chunk stream 3 continues a message it never started",
     what="a type-3 chunk on a chunk stream with no prior header")
case(C, "type1-first", HANDSHAKE + b"\x43\x00\x00\x00\x00\x00\x10\x14" + bytes(16), "close",
     "chunk stream 3 continues a message it never started", what="a type-1 header as the first chunk")
case(C, "type2-first-csid-64", HANDSHAKE + b"\x80\x00\x00\x00\x00" + bytes(8), "close",
     "chunk stream 64 continues a message it never started",
     what="a type-2 header in the two-byte basic header form (csid 64) as the first chunk")
case(C, "type3-csid-65599", HANDSHAKE + b"\xc1\xff\xff" + bytes(8), "close",
     "chunk stream 65599 continues a message it never started",
     what="a type-3 chunk on the largest chunk stream id (three-byte form)")
case(C, "length-16m", HANDSHAKE + b"\x03\x00\x00\x00\xff\xff\xff\x14\x00\x00\x00\x00" + bytes(64),
     "close", "message of 16777215 bytes exceeds the limit",
     what="a message length of 16 MiB - 1, above max_message_size")
case(C, "length-contradiction", HANDSHAKE + chunks(3, 20, 0, _long_connect)[:12 + 128]
     + b"\x43\x00\x00\x00\xff\xff\xff\x14" + bytes(16), "close",
     "exceeds the limit",
     what="a connect whose message is re-declared mid-way by a type-1 header of 16 MiB")
case(C, "length-zero-command", HANDSHAKE + chunks(3, 20, 0, b""), "close",
     "command without a name: None", what="a zero-length AMF0 command")
case(C, "too-many-partial-streams",
     HANDSHAKE + b"".join(first_chunk(4 + i, 18, 0, bytes(200)) for i in range(65)),
     "close", "more than 4 chunk streams with partial messages",
     what="65 chunk streams each holding half a message (4 allowed before publish or play)")
case(C, "user-control-short", HANDSHAKE + control(4, b"\x00"), "close",
     "user control shorter than 2 bytes", what="a 1-byte User Control message")
case(C, "ping-without-value", HANDSHAKE + control(4, b"\x00\x06\x00"), "close",
     "user control event without its 4-byte value", what="a Ping Request without its timestamp")
case(C, "set-buffer-length-short", HANDSHAKE + control(4, b"\x00\x03\x00\x00\x00\x01"), "close",
     "SetBufferLength shorter than 8 bytes", what="SetBufferLength without its length")
case(C, "abort-short", HANDSHAKE + control(2, b"\x01"), "close",
     "Abort without a chunk stream id", what="an Abort message with a 1-byte payload")
case(C, "window-ack-short", HANDSHAKE + control(5, b""), "close",
     "Window Ack Size without a size", what="an empty Window Acknowledgement Size")
case(C, "aggregate-truncated", HANDSHAKE + chunks(5, 22, 1, flv_tag(9, 0, b"\x17\x01" + bytes(30))[:20]),
     "close", "malformed aggregate message: tag body runs past the message",
     what="an aggregate whose FLV tag claims more bytes than the message holds")
case(C, "aggregate-short-header", HANDSHAKE + chunks(5, 22, 1, b"\x09\x00\x00"), "close",
     "malformed aggregate message: tag header shorter than 11 bytes",
     what="an aggregate holding 3 bytes")
case(C, "header-truncated", HANDSHAKE + b"\x03\x00\x00", "close", TIMEOUT,
     what="a type-0 header cut after 3 bytes, then silence")
case(C, "extended-timestamp-truncated", HANDSHAKE + b"\x03\xff\xff\xff\x00\x00\x10\x14\x00\x00\x00\x00\xff\xff",
     "close", TIMEOUT, what="an extended timestamp cut after 2 of its 4 bytes, then silence")
case(C, "garbage", HANDSHAKE + bytes((i * 7919 + 13) & 0xFF for i in range(4096)), "close", "chunk stream",
     what="4 KiB of pseudo-random bytes after the handshake")
case(C, "zero-length-flood", HANDSHAKE + chunks(3, 0x30, 0, b"") * 2000, "close", TIMEOUT,
     what="2,000 zero-length messages of an unknown type and no connect")
# Accepted: legal but unusual chunk streams, after which the session works.
case(C, "extended-timestamp-connect", HANDSHAKE + chunks(3, 20, 0, _long_connect, ts=0xFFFFFFFF),
     "open", CONNECTED, reply="NetConnection.Connect.Success",
     what="connect with extended timestamp 0xFFFFFFFF repeated on its type-3 chunks")
_msg = _long_connect
_c = b"\x03\xff\xff\xff" + struct.pack(">I", len(_msg))[1:] + b"\x14\x00\x00\x00\x00" + b"\x00\x00\x01\x00"
_c += _msg[:128] + b"\xc3" + _msg[128:]
case(C, "extended-timestamp-not-repeated", HANDSHAKE + _c, "open", CONNECTED,
     reply="NetConnection.Connect.Success",
     what="extended timestamp on the first chunk only (continuations omit it, as some encoders do)")
case(C, "chunk-size-1", HANDSHAKE + set_chunk_size(1) + connect(chunk_size=1)
     + chunks(2, 1, 0, struct.pack(">I", 128), chunk_size=1), "open", CONNECTED,
     reply="NetConnection.Connect.Success",
     what="chunk size 1: connect in 1-byte chunks, then chunk size 128 again (sent in 1-byte chunks)")
case(C, "csid-65599-connect", HANDSHAKE + connect(csid=65599), "open", CONNECTED,
     reply="NetConnection.Connect.Success", what="connect on chunk stream 65599 (three-byte basic header)")
case(C, "abort-mid-message", HANDSHAKE + first_chunk(3, 20, 0, _long_connect) + control(2, struct.pack(">I", 3)) + connect(),
     "open", CONNECTED, reply="NetConnection.Connect.Success",
     what="half a connect, an Abort of its chunk stream, then a whole connect")
case(C, "abort-unknown-csid", HANDSHAKE + control(2, struct.pack(">I", 0xFFFFFFFF)) + connect(), "open",
     CONNECTED, what="an Abort of chunk stream 0xFFFFFFFF, then connect")
case(C, "window-ack-zero", HANDSHAKE + control(5, struct.pack(">I", 0)) + connect(), "open", CONNECTED,
     what="Window Acknowledgement Size 0, then connect")
case(C, "unknown-types", HANDSHAKE + b"".join(chunks(3, t, 0, b"\x01\x02\x03") for t in (0, 7, 10, 11, 16, 19, 23, 99, 255))
     + connect(), "open", CONNECTED,
     what="messages of unused and shared-object types (ignored), then connect")

# ---- amf/ ------------------------------------------------------------------

A = "amf"
CONN = HANDSHAKE + connect()
CS = CONN + create_stream()


def cmd(values, stream_id=0):
    return command(values, stream_id=stream_id)


_connect_head = [amf_str("connect"), amf_num(1.0)]
case(A, "strict-array-4g", HANDSHAKE + cmd(_connect_head + [b"\x0a\xff\xff\xff\xff"]), "close",
     "bad AMF in command: AMF length 4294967295 exceeds",
     what="connect whose object is a strict array claiming 2^32-1 items (25-byte message)")
case(A, "string-64k-short", HANDSHAKE + cmd([amf_str("connect"), amf_num(1.0), b"\x02\xff\xff" + b"live"]),
     "close", "AMF length 65535 exceeds", what="a string claiming 65535 bytes, 4 present")
case(A, "long-string-4g", HANDSHAKE + cmd(_connect_head + [b"\x0c\xff\xff\xff\xff" + b"x" * 16]), "close",
     "AMF length 4294967295 exceeds", what="a long string claiming 4 GiB")
case(A, "xml-4g", HANDSHAKE + cmd(_connect_head + [b"\x0f\xff\xff\xff\xf0"]), "close",
     "AMF length 4294967280 exceeds", what="an XML document claiming 4 GiB")
case(A, "ecma-count-4g", HANDSHAKE + cmd(_connect_head + [b"\x08\xff\xff\xff\xff" + amf_key("app") + amf_str("live") + b"\x00\x00\x09"]),
     "open", CONNECTED, reply="NetConnection.Connect.Success",
     what="connect object as an ECMA array whose count (a hint) says 2^32-1; its one property is read")
_deep = b""
for _ in range(5000):
    _deep += b"\x03" + amf_key("a")
case(A, "object-depth-bomb", HANDSHAKE + cmd(_connect_head + [_deep]), "close",
     "AMF nesting exceeds the depth limit", what="5000 nested objects")
case(A, "strict-array-depth-bomb", HANDSHAKE + cmd(_connect_head + [b"\x0a\x00\x00\x00\x01" * 5000]), "close",
     "AMF nesting exceeds the depth limit", what="5000 nested one-item strict arrays")
case(A, "amf3-depth-bomb", HANDSHAKE + chunks(3, 17, 0, b"\x00" + amf_str("connect") + amf_num(1.0)
     + b"\x11" + b"\x0a\x0b\x01\x03a" * 3000), "close", "AMF nesting exceeds the depth limit",
     what="AMF3 command (type 17) with 3000 nested AMF3 objects")
_items = b"\x0a" + struct.pack(">I", 70000) + b"\x05" * 70000
case(A, "items-bomb", HANDSHAKE + cmd(_connect_head + [_items]), "close",
     "exceeds the limit of 65536 bytes",
     what="a strict array of 70,000 nulls: a 70 KB command, over the 64 KiB a client may send "
          "before publish or play (the AMF item budget behind it is unit-tested)")
_laughs = b"\x11\x09" + u29((21 << 1) | 1) + b"\x01"  # outer array of 21
_laughs += b"\x09" + u29((10 << 1) | 1) + b"\x01" + b"\x01" * 10  # level 0: ten nulls
for _k in range(1, 21):
    _laughs += b"\x09" + u29((10 << 1) | 1) + b"\x01" + (b"\x09" + u29(_k << 1)) * 10
case(A, "amf3-billion-laughs", HANDSHAKE + cmd(_connect_head + [_laughs]), "close",
     "more values than the item limit",
     what="AMF3 arrays of ten references to the previous array, 20 levels deep (10^20 values if expanded)")
case(A, "amf3-string-u29-max", HANDSHAKE + cmd(_connect_head + [b"\x11\x06" + u29((1 << 29) - 1) + b"abc"]),
     "close", "AMF length 268435455 exceeds", what="AMF3 string claiming 2^28-1 bytes")
case(A, "amf3-bad-reference", HANDSHAKE + cmd(_connect_head + [b"\x11\x09" + u29(40 << 1)]), "close",
     "AMF3 reference 40 is out of range", what="AMF3 reference to object 40 of an empty table")
case(A, "amf3-self-reference", HANDSHAKE + cmd(_connect_head + [b"\x11\x09" + u29((1 << 1) | 1) + b"\x01" + b"\x09" + u29(0)]),
     "close", "AMF3 reference 0 is out of range or to an unfinished object",
     what="an AMF3 array containing a reference to itself (a cycle)")
case(A, "unknown-marker", HANDSHAKE + cmd(_connect_head + [b"\x42"]), "close",
     "unknown AMF type marker 0x42", what="AMF0 marker 0x42")
case(A, "reserved-marker", HANDSHAKE + cmd(_connect_head + [b"\x04"]), "close",
     "reserved AMF0 type marker 0x04", what="AMF0 MovieClip marker (reserved)")
case(A, "object-end-alone", HANDSHAKE + cmd(_connect_head + [b"\x09"]), "close",
     "object-end marker outside of an object", what="an object-end marker outside any object")
case(A, "truncated-number", HANDSHAKE + cmd([amf_str("connect"), b"\x00\x3f\xf0"]), "close",
     "unexpected end of AMF input", what="a number cut after 2 of its 8 bytes")
case(A, "data-message-bomb", HANDSHAKE + chunks(5, 18, 0, amf_str("@setDataFrame") + _deep), "close",
     "bad AMF in data message", what="a data message (type 18) with 5000 nested objects, before connect")
case(A, "amf3-empty-command", HANDSHAKE + chunks(3, 17, 0, b""), "close",
     "command without a name: None", what="an empty AMF3 command message")
case(A, "command-name-number", HANDSHAKE + cmd([amf_num(5.0)]), "close",
     "command without a name: Some(Number(5.0))", what="a command whose name is a number")
case(A, "command-name-null", HANDSHAKE + cmd([NULL, amf_num(1.0)]), "close",
     "command without a name: Some(Null)", what="a command whose name is null")
case(A, "connect-no-app", HANDSHAKE + cmd(_connect_head + [amf_obj([("tcUrl", amf_str("rtmp://x/"))])]),
     "close", "connect without an app", what="connect without an app property")
case(A, "connect-app-number", HANDSHAKE + cmd(_connect_head + [amf_obj([("app", amf_num(1e308))])]),
     "close", "connect without an app", what="connect whose app is the number 1e308")
case(A, "connect-object-is-string", HANDSHAKE + cmd(_connect_head + [amf_str("live")]), "close",
     "connect without an app", what="connect whose command object is a string")
case(A, "connect-twice", CONN + connect(), "close", "second connect", what="connect, then connect again")
case(A, "publish-before-connect", HANDSHAKE + cmd([amf_str("publish"), amf_num(0), NULL, amf_str("k")], stream_id=1),
     "close", "`publish` before connect", what="publish as the first command")
case(A, "createstream-before-connect", HANDSHAKE + create_stream(), "close", "`createStream` before connect",
     what="createStream before connect")
case(A, "createstream-flood", CONN + b"".join(create_stream(float(i)) for i in range(2, 12)), "close",
     "more than 8 streams on one connection", what="ten createStream calls on one connection")
case(A, "publish-unknown-stream", CONN + stream_command("publish", [amf_str("k")], stream_id=7), "close",
     "publish on unknown stream 7", what="publish on message stream 7, never created")
case(A, "play-unknown-stream", CONN + stream_command("play", [amf_str("k")], stream_id=0xFFFFFFFF), "close",
     "play on unknown stream 4294967295", what="play on message stream 0xFFFFFFFF")
# Accepted at the RTMP level, refused by name or ignored: the connection stays.
case(A, "play-dotdot", CS + stream_command("play", [amf_str("../../etc/passwd")]), "open",
     "play refused: stream name has an empty or dot path segment", reply="NetStream.Play.StreamNotFound",
     what="play of ../../etc/passwd")
case(A, "publish-dotdot", CS + stream_command("publish", [amf_str("a/../../b"), amf_str("live")]), "open",
     "publish refused: stream name has an empty or dot path segment", reply="NetStream.Publish.BadName",
     what="publish of a/../../b")
case(A, "publish-bad-chars", CS + stream_command("publish", [amf_str("k\nINJECTED \x1b[31mred\x1b[0m")]), "open",
     "publish refused: stream name has characters outside", reply="NetStream.Publish.BadName",
     what="publish of a name with a newline and ANSI escapes")
case(A, "publish-name-too-long", CS + stream_command("publish", [amf_str("k" * 300)]), "open",
     "publish refused: stream name too long", reply="NetStream.Publish.BadName",
     what="publish of a 300-byte name")
case(A, "publish-name-number", CS + stream_command("publish", [amf_num(1e308)]), "open", CONNECTED,
     reply="NetStream.Publish.BadName", what="publish whose name is a number (empty name)")
case(A, "play2-without-object", CS + stream_command("play2", []), "open", CONNECTED,
     reply="NetStream.Play.StreamNotFound", what="play2 without its parameters object")
case(A, "deletestream-nan", CS + cmd([amf_str("deleteStream"), amf_num(0), NULL, amf_num(float("nan"))]),
     "open", CONNECTED, what="deleteStream of stream NaN")
case(A, "deletestream-huge", CS + cmd([amf_str("deleteStream"), amf_num(0), NULL, amf_num(-1e300)]),
     "open", CONNECTED, what="deleteStream of stream -1e300")
case(A, "transaction-id-string", CONN + cmd([amf_str("createStream"), amf_str("two"), NULL]), "open", CONNECTED,
     reply="_result", what="createStream whose transaction id is a string")
case(A, "receive-video-number", CS + stream_command("receiveVideo", [amf_num(float("inf"))]), "open", CONNECTED,
     what="receiveVideo(Infinity) instead of a boolean")
case(A, "app-log-injection", HANDSHAKE + connect(app="live\nINJECTED-LOG-LINE \x1b[2J"), "open",
     'connected app="live\\nINJECTED-LOG-LINE', reply="NetConnection.Connect.Success",
     what="connect to an app with a newline and an ANSI clear-screen: logged escaped, on one line")
case(A, "app-invalid-utf8", HANDSHAKE + command([amf_str("connect"), amf_num(1.0),
     amf_obj([("app", amf_str(b"live\xff\xfe"))])]), "open", 'connected app="live\ufffd\ufffd"',
     what="connect to an app name that is not UTF-8 (replaced, not rejected)")
case(A, "every-type-in-connect", HANDSHAKE + command([amf_str("connect"), amf_num(1.0), amf_obj([
    ("app", amf_str("live")), ("n", amf_num(float("nan"))), ("u", UNDEFINED), ("r", b"\x07\x00\x05"),
    ("d", b"\x0b" + struct.pack(">d", -1e300) + b"\x80\x00"), ("x", b"\x0f\x00\x00\x00\x03<a>"),
    ("un", b"\x0d"), ("t", b"\x10" + amf_key("Cls") + amf_key("p") + NULL + b"\x00\x00\x09"),
    ("l", b"\x0c\x00\x00\x00\x02ab"), ("a3", b"\x11\x04\xff\xff\xff\xff")])]), "open", CONNECTED,
     reply="NetConnection.Connect.Success",
     what="connect object holding NaN, undefined, a reference, a date, XML, unsupported, a typed object, a long string and an AMF3 integer")

# ---- flv/ ------------------------------------------------------------------
# After the replayer's publish prefix. `bad_tags` is what "publish ended"
# must report for the connection.

F = "flv"
BAD_V = "dropped a bad Video tag"
BAD_A = "dropped a bad Audio tag"
case(F, "video-1-byte", video(b"\x17"), "open", BAD_V + ": AVC video tag header truncated", bad_tags=1,
     what="a video tag of one byte (H.264 frame type, nothing else)")
case(F, "video-packet-type-9", video(b"\x17\x09\x00\x00\x00" + IDR), "open",
     BAD_V + ": unknown AVC packet type 9", bad_tags=1, what="AVC packet type 9")
case(F, "video-empty-frame", VALID_VIDEO_START + video(b"\x27\x01\x00\x00\x00"), "open",
     BAD_V + ": empty H.264 frame", bad_tags=1, what="an AVC NALU packet with no data")
case(F, "video-codec-15", video(b"\x1f" + bytes(20)), "open", "unsupported video codec", bad_tags=0,
     what="legacy codec id 15 (undefined): not carried, said once")
case(F, "video-codec-sorenson", video(b"\x12" + bytes(20)) * 3, "open", "unsupported video codec", bad_tags=0,
     what="Sorenson H.263 (codec id 2), three tags: not carried, said once")
case(F, "video-before-sequence-header", video(avc_frame([IDR])) + video(avc_frame([INTER], key=False), ts=33),
     "open", BAD_V + ": H.264 frame before its sequence header", bad_tags=2,
     what="AVC NALU packets before any AVC sequence header")
case(F, "video-nal-length-past-end", VALID_VIDEO_START
     + video(avc_frame([struct.pack(">I", 5000) + b"\x41" + bytes(30)], key=False), ts=33), "open",
     BAD_V + ": bad NAL unit framing: NAL unit of 5000 bytes exceeds the 31 bytes left", bad_tags=1,
     what="a NAL length prefix of 5000 in a 35-byte frame")
case(F, "video-nal-length-cut", VALID_VIDEO_START + video(avc_frame([IDR]) + b"\x00\x00", ts=33), "open",
     BAD_V + ": bad NAL unit framing: NAL length prefix truncated", bad_tags=1,
     what="a valid NAL unit followed by half a length prefix")
case(F, "video-ex-truncated-fourcc", video(b"\x91av"), "open",
     BAD_V + ": Enhanced RTMP video FourCC truncated", bad_tags=1,
     what="Enhanced RTMP video header cut inside its FourCC")
case(F, "video-ex-unknown-fourcc", video(b"\x91zzzz" + bytes(12)), "open", "unsupported video codec",
     bad_tags=0, what="Enhanced RTMP with FourCC 'zzzz'")
case(F, "video-ex-hevc-zero-config", video(b"\x90hvc1" + bytes(30)) + video(b"\x91hvc1" + bytes(30), ts=33), "open",
     BAD_V + ": bad HEVC sequence header: unsupported HEVCDecoderConfigurationRecord version 0", bad_tags=2,
     what="Enhanced RTMP HEVC (hvc1): an all-zero sequence start, then a frame before any usable one")
case(F, "video-ex-avc1-packet-type-9", video(b"\x99avc1" + bytes(8)), "open",
     BAD_V + ": unknown Enhanced RTMP video packet type 9", bad_tags=1,
     what="Enhanced RTMP avc1 with packet type 9")
case(F, "video-command-frames", video(b"\x57\x00") * 3 + video(b"\x27"), "open",
     BAD_V + ": AVC video tag header truncated", bad_tags=1,
     what="three video info/command frames (frame type 5, ignored) then a 1-byte tag")
case(F, "audio-1-byte", audio(b"\xaf"), "open", BAD_A + ": AAC audio tag header truncated", bad_tags=1,
     what="an AAC tag of one byte")
case(F, "audio-packet-type-5", audio(b"\xaf\x05\x12\x10"), "open", BAD_A + ": unknown AAC packet type 5",
     bad_tags=1, what="AAC packet type 5")
case(F, "audio-empty-frame", VALID_AUDIO_START + audio(b"\xaf\x01"), "open", BAD_A + ": empty AAC frame",
     bad_tags=1, what="an AAC raw packet with no data")
case(F, "audio-before-sequence-header", audio(aac_frame()) * 3, "open",
     BAD_A + ": AAC frame before its sequence header", bad_tags=3,
     what="AAC raw frames before any AudioSpecificConfig")
case(F, "audio-ex-packet-type-15", audio(b"\x9f" + bytes(16)), "open",
     BAD_A + ": unknown Enhanced RTMP audio packet type 15", bad_tags=1,
     what="Enhanced RTMP audio (sound format 9) with the reserved packet type 15")
case(F, "audio-ex-unknown-fourcc", audio(b"\x91zzzz" + bytes(12)) * 2, "open",
     "unsupported audio codec FourCC 'zzzz'", bad_tags=0,
     what="Enhanced RTMP audio with FourCC 'zzzz', twice: not carried, said once")
case(F, "audio-speex", audio(b"\xb2" + bytes(16)) * 2, "open", "unsupported audio format", bad_tags=0,
     what="Speex (format 11), twice: not carried, said once")
case(F, "aggregate-truncated", chunks(5, 22, 1, flv_tag(9, 0, avc_seq(avc_record())) + flv_tag(8, 0, aac_seq(ASC) + bytes(20))[:15]),
     "close", "malformed aggregate message: tag body runs past the message", bad_tags=0,
     what="an aggregate message whose second FLV tag is cut short (a chunk-stream error: closed)")
case(F, "aggregate-bad-tags", chunks(5, 22, 1, flv_tag(9, 0, b"\x17") + flv_tag(8, 0, b"\xaf")), "open",
     BAD_A + ": AAC audio tag header truncated", bad_tags=2,
     what="an aggregate of a 1-byte video tag and a 1-byte audio tag")
_stuck = VALID_VIDEO_START + VALID_AUDIO_START
for _t in (33, 66, 100, 133):
    _stuck += video(avc_frame([INTER], key=False), ts=_t)
_stuck += audio(aac_frame()) * 11
case(F, "audio-timestamp-stuck", _stuck, "open", "publish started", bad_tags=0,
     what="video advancing to 133 ms while 11 AAC frames all carry timestamp 0 (the sample clock runs ahead, then re-anchors backwards)")
_leap = VALID_VIDEO_START + VALID_AUDIO_START
for _i in range(1, 700):
    _ts = (_i * 0x7FFFFFFF) & 0xFFFFFFFF
    _leap += video(avc_frame([IDR]), ts=_ts) + audio(aac_frame(), ts=_ts)
case(F, "timestamps-leap-forward", _leap, "open", "publish started", bad_tags=0,
     what="700 video+audio tags each 2^31-1 ms after the last (every step reads as forwards, 47,000 years in all)")
_back = VALID_VIDEO_START + VALID_AUDIO_START
for _i, _t in enumerate([1000, 5, 999999, 3, 0xFFFFFFFF, 0, 0x80000000, 7]):
    _back += video(avc_frame([IDR] if _i % 2 else [INTER], key=_i % 2 == 1), ts=_t) + audio(aac_frame(), ts=_t)
case(F, "timestamps-chaos", _back, "open", "publish started", bad_tags=0,
     what="timestamps jumping back and forth, across the 32-bit wrap and by exactly 2^31")
case(F, "cts-extremes", VALID_VIDEO_START + video(b"\x17\x01\x80\x00\x00" + IDR, ts=40)
     + video(b"\x27\x01\x7f\xff\xff" + INTER, ts=80), "open", "publish started", bad_tags=0,
     what="composition offsets of -2^23 and 2^23-1 ms")
case(F, "media-on-other-stream", chunks(6, 9, 5, b"\x17"), "open", "publish started", bad_tags=0,
     what="a bad video tag on message stream 5, which is not publishing (ignored)")
case(F, "empty-tags", video(b"") + audio(b"") + video(b"") * 5, "open", "publish started", bad_tags=0,
     what="empty audio and video messages (keep-alives some encoders send)")

# ---- codec/ ------------------------------------------------------------------

K = "codec"
BAD_AVC = BAD_V + ": bad AVC sequence header: "
NO_SIZE = "AVC sequence header taken without a picture size: "
BAD_AAC = BAD_A + ": bad AAC sequence header: "
case(K, "avc-version-0", video(avc_seq(avc_record(version=0))), "open",
     BAD_AVC + "unsupported AVCDecoderConfigurationRecord version 0", bad_tags=1,
     what="AVCDecoderConfigurationRecord version 0")
case(K, "avc-record-truncated", video(avc_seq(avc_record()[:4])), "open",
     BAD_AVC + "AVC decoder configuration truncated", bad_tags=1, what="a 4-byte record")
case(K, "avc-nal-length-size-3", video(avc_seq(avc_record(length_size_minus_one=2))), "open",
     BAD_AVC + "invalid NAL length size 3", bad_tags=1, what="lengthSizeMinusOne = 2 (forbidden)")
case(K, "avc-sps-length-past-end", video(avc_seq(avc_record()[:6] + b"\x7f\xff" + SPS)), "open",
     BAD_AVC + "SPS truncated", bad_tags=1, what="an SPS length of 32767 with 26 bytes present")
case(K, "avc-sps-count-31", video(avc_seq(b"\x01\x64\x00\x1e\xff\xff" + struct.pack(">H", len(SPS)) + SPS)),
     "open", BAD_AVC + "SPS truncated", bad_tags=1, what="numOfSequenceParameterSets = 31, one present")
case(K, "avc-pps-missing", video(avc_seq(avc_record()[:8 + len(SPS)])), "open",
     BAD_AVC + "PPS count truncated", bad_tags=1, what="a record that ends after its SPS")
case(K, "avc-pps-count-255", video(avc_seq(avc_record()[:8 + len(SPS)] + b"\xff" + b"\x00\x02\x68\xce")),
     "open", BAD_AVC + "PPS truncated", bad_tags=1, what="numOfPictureParameterSets = 255, one present")
case(K, "avc-no-parameter-sets", video(avc_seq(avc_record(sps_list=(), pps_list=()))), "open",
     NO_SIZE + "it holds no SPS", bad_tags=0,
     what="a record with no SPS and no PPS (taken: parameter sets may come in-band)")
case(K, "avc-sps-absurd-dimensions",
     video(avc_seq(avc_record(sps_list=(sps(width_mbs_minus1=(1 << 32) - 2, height_mbs_minus1=(1 << 32) - 2),)))),
     "open", NO_SIZE + "its SPS does not parse: SPS field width out of range", bad_tags=0,
     what="an SPS of 2^32-1 x 2^32-1 macroblocks")
case(K, "avc-sps-crop-exceeds", video(avc_seq(avc_record(sps_list=(sps(crop=(500, 500, 0, 0)),)))), "open",
     NO_SIZE + "its SPS does not parse: SPS field width out of range", bad_tags=0, what="an SPS whose cropping exceeds the picture")
case(K, "avc-sps-exp-golomb-33", video(avc_seq(avc_record(sps_list=(b"\x67\x42\x00\x1e" + bytes(8) + b"\x80",)))),
     "open", NO_SIZE + "its SPS does not parse: exp-Golomb code longer than 32 bits", bad_tags=0,
     what="an SPS with 64 leading zero bits in seq_parameter_set_id")
case(K, "avc-sps-truncated", video(avc_seq(avc_record(sps_list=(SPS[:6],)))), "open",
     NO_SIZE + "its SPS does not parse: SPS ends early", bad_tags=0, what="an SPS cut after 6 bytes")
case(K, "avc-sps-not-sps", video(avc_seq(avc_record(sps_list=(PPS,)))), "open",
     NO_SIZE + "its SPS does not parse: NAL unit type 8 is not a sequence parameter set", bad_tags=0,
     what="a PPS where the SPS belongs")
case(K, "avc-sps-bad-scaling-list", video(avc_seq(avc_record(sps_list=(sps_high_bad_scaling(),)))), "open",
     NO_SIZE + "its SPS does not parse: SPS field delta_scale out of range: 200", bad_tags=0,
     what="a High-profile SPS with a scaling-list delta of 200")
case(K, "avc-empty-record-then-avcc", video(b"\x17\x00\x00\x00\x00") + video(avc_frame([IDR]), ts=33), "open",
     BAD_V + ": H.264 frame before its sequence header", bad_tags=1,
     what="an empty sequence header (announces in-band parameter sets) then an AVCC frame without any")
_flip = b""
for _i in range(1000):
    _flip += audio(aac_seq(bytes([0x11, 0x90]) if _i % 2 else bytes([0x12, 0x10])))
    _flip += video(avc_seq(avc_record(sps_list=(sps(width_mbs_minus1=19 + _i % 2),))))
case(K, "config-flood", _flip, "open", "publish started", bad_tags=0,
     what="1000 alternating AAC and AVC sequence headers, no frames: every one is a new configuration")
case(K, "aac-asc-empty", audio(aac_seq(b"")), "open", BAD_AAC + "AudioSpecificConfig ends early", bad_tags=1,
     what="an empty AudioSpecificConfig")
case(K, "aac-object-type-0", audio(aac_seq(asc_bytes(0, 3, 2))), "open",
     BAD_AAC + "unsupported audio object type 0", bad_tags=1, what="audio object type 0 (null)")
case(K, "aac-object-type-escape-95", audio(aac_seq(asc_bytes(95, 3, 2))), "open",
     BAD_AAC + "unsupported audio object type 95", bad_tags=1, what="escaped audio object type 31+63")
case(K, "aac-frequency-15-no-rate", audio(aac_seq(b"\x17\x80")), "open",
     BAD_AAC + "AudioSpecificConfig ends early", bad_tags=1,
     what="sampling index 15 (explicit rate) with no rate present")
case(K, "aac-frequency-15-rate-0", audio(aac_seq(asc_bytes(2, 15, 2, explicit_rate=0))), "open",
     BAD_AAC + "sampling frequency 0", bad_tags=1, what="explicit sampling rate 0")
_fast = VALID_VIDEO_START + audio(aac_seq(asc_bytes(2, 15, 2, explicit_rate=0xFFFFFF)))
for _i in range(1, 40):
    _ts = (_i * 0x7FFFFFFF) & 0xFFFFFFFF
    _fast += video(avc_frame([IDR]), ts=_ts) + audio(aac_frame(), ts=_ts)
case(K, "aac-rate-16m-time-leaps", _fast, "open", "publish started", bad_tags=0,
     what="explicit AAC sampling rate 16,777,215 Hz (accepted: the largest the field holds), with video, and 39 timestamps each 2^31-1 ms after the last: timescale arithmetic must not overflow")
case(K, "aac-frequency-13", audio(aac_seq(asc_bytes(2, 13, 2))), "open",
     BAD_AAC + "reserved sampling frequency index 13", bad_tags=1, what="reserved sampling index 13")
case(K, "aac-channels-0-no-pce", audio(aac_seq(asc_bytes(2, 3, 0))), "open",
     BAD_AAC + "AudioSpecificConfig ends early", bad_tags=1,
     what="channel configuration 0 without its program config element")
case(K, "aac-channels-0-empty-pce", audio(aac_seq(asc_bytes(2, 3, 0, pce=lambda b: b.u(10, 0).u(4, 0).u(4, 0).u(4, 0).u(2, 0).u(7, 0).u(3, 0).u(8, 0)))),
     "open", BAD_AAC + "reserved channel configuration 0", bad_tags=1,
     what="channel configuration 0 with a PCE of zero channels")
case(K, "aac-channels-15", audio(aac_seq(asc_bytes(2, 3, 15))), "open",
     BAD_AAC + "reserved channel configuration 15", bad_tags=1, what="reserved channel configuration 15")
case(K, "aac-sbr-core-sbr", audio(aac_seq(Bits().u(5, 5).u(4, 3).u(4, 2).u(4, 3).u(5, 5).u(3, 0).bytes(False))), "open",
     BAD_AAC + "unsupported audio object type 5", bad_tags=1,
     what="SBR (type 5) whose core object type is SBR again")


# --------------------------------------------------------------------------
# http/

T = "http"


def req(line, headers=(("Host", "castgate"),), body=b""):
    out = line.encode() if isinstance(line, str) else line
    out += b"\r\n"
    for k, v in headers:
        k = k.encode() if isinstance(k, str) else k
        v = v.encode() if isinstance(v, str) else v
        out += k + b": " + v + b"\r\n"
    return out + b"\r\n" + body


case(T, "traversal-dotdot", req("GET /../../../etc/passwd HTTP/1.1"), "404", what="GET /../../../etc/passwd")
case(T, "traversal-in-key", req(f"GET /live/../{LIVE}/index.m3u8 HTTP/1.1"), "404",
     what="a playlist path with .. inside the stream key")
case(T, "traversal-encoded", req("GET /live/%2e%2e/%2e%2e/etc/passwd HTTP/1.1"), "404",
     what="percent-encoded ../ segments")
case(T, "traversal-encoded-slash", req("GET /live%2f..%2f..%2fetc%2fpasswd/index.m3u8 HTTP/1.1"), "404",
     what="percent-encoded slashes and dots")
case(T, "traversal-backslash", req("GET /live\\..\\..\\index.m3u8 HTTP/1.1"), "404",
     what="backslashes in the path (a plain character in a key, never a separator)")
case(T, "path-100k", req("GET /" + "a" * 100000 + " HTTP/1.1"), "414", what="a 100,000-byte path")
case(T, "path-many-segments", req("GET " + "/a" * 4000 + "/index.m3u8 HTTP/1.1"), "404",
     what="a playlist path 4000 segments deep")
case(T, "path-double-slashes", req(f"GET //live//alongside//index.m3u8 HTTP/1.1"), "404",
     what="empty path segments around the stream key")
case(T, "bad-percent-encoding", req("GET /live/%zz%/index.m3u8 HTTP/1.1"), "404", what="invalid %-escapes")
case(T, "percent-nul", req("GET /live/k%00/index.m3u8 HTTP/1.1"), "404", what="an encoded NUL in the key")
case(T, "raw-nul", req(b"GET /live/k\x00/index.m3u8 HTTP/1.1"), "400", what="a raw NUL byte in the path")
case(T, "non-utf8-path", req(b"GET /live/\xff\xfe/index.m3u8 HTTP/1.1"), "400", what="raw 0xFF 0xFE bytes in the path")
case(T, "query-68k", req(f"GET /{LIVE}/index.m3u8?" + "q=1&" * 17000 + " HTTP/1.1"), "414",
     what="a 68,000-byte query string on a real playlist")
case(T, "segment-number-overflow", req(f"GET /{LIVE}/video/seg-99999999999999999999999.m4s HTTP/1.1"), "404",
     what="a segment number beyond u64")
case(T, "segment-number-negative", req(f"GET /{LIVE}/video/seg--1.m4s HTTP/1.1"), "404",
     what="segment number -1")
case(T, "segment-number-max", req(f"GET /{LIVE}/video/seg-18446744073709551615.m4s HTTP/1.1"), "404",
     what="segment number 2^64-1")
case(T, "segment-number-hex", req(f"GET /{LIVE}/audio/seg-0x10.m4s HTTP/1.1"), "404", what="a hex segment number")
case(T, "segment-number-empty", req(f"GET /{LIVE}/video/seg-.m4s HTTP/1.1"), "404", what="an empty segment number")
case(T, "init-number-overflow", req(f"GET /{LIVE}/video/init-4294967296.mp4 HTTP/1.1"), "404",
     what="an init id beyond u32")
case(T, "unknown-track", req(f"GET /{LIVE}/subtitles/seg-1.m4s HTTP/1.1"), "404", what="a track that does not exist")
case(T, "method-brew", req(f"BREW /{LIVE}/index.m3u8 HTTP/1.1"), "405", what="unknown method BREW")
case(T, "method-lowercase", req(f"get /{LIVE}/index.m3u8 HTTP/1.1"), "405",
     what="lowercase get (methods are case-sensitive)")
case(T, "method-delete", req(f"DELETE /{LIVE}/index.m3u8 HTTP/1.1"), "405", what="DELETE of a playlist")
case(T, "method-put-body", req(f"PUT /{LIVE}/video/seg-1.m4s HTTP/1.1",
     (("Host", "castgate"), ("Content-Length", "11")), b"hello world"), "405", what="PUT of a segment, with a body")
case(T, "method-post-huge-length", req(f"POST /{LIVE}/index.m3u8 HTTP/1.1",
     (("Host", "castgate"), ("Content-Length", "10000000000"), ("Expect", "100-continue"))), "404",
     what="POST announcing a 10 GB body, expecting 100-continue (POST belongs to the RTMPT tunnel, which "
          "has no such path: 404 at once, without waiting for the body)")
case(T, "header-100k", req("GET /live/nope/index.m3u8 HTTP/1.1", (("Host", "castgate"), ("X-Big", "b" * 100000))),
     "404", what="a 100,000-byte header value (within hyper's 400 KB read buffer: read, then an ordinary 404)")
case(T, "header-count-200", req(f"GET /{LIVE}/index.m3u8 HTTP/1.1",
     [("Host", "castgate")] + [(f"X-H{i}", "v") for i in range(200)]), "431", what="200 headers")
case(T, "header-no-colon", req(f"GET /{LIVE}/index.m3u8 HTTP/1.1", (("Host", "castgate"), ("NoColonHere", ""))).replace(b"NoColonHere: ", b"NoColonHere"),
     "400", what="a header line without a colon")
case(T, "header-space-before-colon", req(f"GET /{LIVE}/index.m3u8 HTTP/1.1", (("Host ", "castgate"),)), "400",
     what="whitespace between a header name and its colon (smuggling vector)")
case(T, "header-obs-fold", req(f"GET /{LIVE}/index.m3u8 HTTP/1.1", (("Host", "castgate"), ("X-A", "a\r\n b"))),
     "400", what="an obsolete folded header line")
case(T, "content-length-and-chunked", req("GET /live/nope/index.m3u8 HTTP/1.1",
     (("Host", "castgate"), ("Content-Length", "4"), ("Transfer-Encoding", "chunked")), b"0\r\n\r\n"), "404",
     what="Content-Length and Transfer-Encoding together (request smuggling): the chunked framing wins and the connection is closed after the answer")
case(T, "content-length-negative", req(f"GET /{LIVE}/index.m3u8 HTTP/1.1",
     (("Host", "castgate"), ("Content-Length", "-1"))), "400", what="Content-Length -1")
case(T, "content-length-conflict", req(f"GET /{LIVE}/index.m3u8 HTTP/1.1",
     (("Host", "castgate"), ("Content-Length", "0"), ("Content-Length", "5"))), "400",
     what="two different Content-Length headers")
case(T, "chunked-bad-size", req("GET /nope/x/index.m3u8 HTTP/1.1",
     (("Host", "castgate"), ("Transfer-Encoding", "chunked")), b"zz\r\nhello\r\n0\r\n\r\n"), "404",
     what="a chunked GET body with a non-hex chunk size (the body is never read; the connection must not be reused)")
case(T, "version-http-9-9", req(f"GET /{LIVE}/index.m3u8 HTTP/9.9"), "400", what="HTTP/9.9")
case(T, "http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes(9), "close",
     what="an HTTP/2 prior-knowledge preface (h2c, which the HTTP port speaks) followed by a DATA frame on "
          "stream 0 instead of SETTINGS: a GOAWAY and a close, no HTTP/1 answer")
case(T, "request-line-garbage", bytes((i * 31 + 7) & 0xFF for i in range(300)) + b"\r\n\r\n", "400",
     what="300 bytes of binary garbage as a request line")
case(T, "unknown-stream", req("GET /live/never-published/index.m3u8 HTTP/1.1"), "404",
     what="the playlist of a stream that does not exist")
case(T, "absolute-form-unknown", req("GET http://evil.example/live/nope/manifest.mpd HTTP/1.1"), "404",
     what="an absolute-form request URI for an unknown stream")
case(T, "connect-method", req("CONNECT evil.example:443 HTTP/1.1"), "405",
     what="CONNECT (proxy tunnelling) to another host")


# --------------------------------------------------------------------------
# vod/: hostile media files under castgate's `[vod] dir`

V = "vod"
NOT_MEDIA = "neither an FLV nor an MP4 file"
NO_FRAMES = "no frame castgate can play"
NO_KEYFRAME = "no keyframe to start playing from"
FAILED = "NetStream.Play.Failed"


def bx(kind, body):
    return struct.pack(">I", len(body) + 8) + kind + body


def full(kind, version, flags, body):
    return bx(kind, struct.pack(">I", (version << 24) | flags) + body)


def words(*w):
    return b"".join(struct.pack(">I", x) for x in w)


def mp4a():
    """An AAC-LC 48 kHz stereo `mp4a` sample entry."""
    dsi = bytes([0x05, len(ASC)]) + ASC
    dcd = bytes([0x40, 0x15] + [0] * 11) + dsi
    es = bytes([0, 1, 0, 0x04, len(dcd)]) + dcd
    esds = full(b"esds", 0, 0, bytes([0x03, len(es)]) + es)
    body = bytes([0, 0, 0, 0, 0, 0, 0, 1]) + bytes(8) + bytes([0, 2, 0, 16, 0, 0, 0, 0])
    return bx(b"mp4a", body + struct.pack(">I", 48000 << 16) + esds)


def avc1():
    """An H.264 `avc1` sample entry (320x240) with its `avcC`."""
    body = bytes(6) + b"\x00\x01" + bytes(16) + struct.pack(">HH", 320, 240)
    body += struct.pack(">II", 0x480000, 0x480000) + bytes(4) + b"\x00\x01" + bytes(32)
    body += b"\x00\x18\xff\xff"
    return bx(b"avc1", body + bx(b"avcC", avc_record()))


def trak(track_id, handler, entry, tables, timescale=48000):
    tkhd = full(b"tkhd", 0, 3, bytes(8) + struct.pack(">I", track_id) + bytes(68))
    mdhd = full(b"mdhd", 0, 0, words(0, 0, timescale, 0, 0))
    hdlr = full(b"hdlr", 0, 0, words(0) + handler + bytes(13))
    stsd = full(b"stsd", 0, 0, words(1) + entry)
    stbl = bx(b"stbl", stsd + b"".join(tables))
    return bx(b"trak", tkhd + bx(b"mdia", mdhd + hdlr + bx(b"minf", stbl)))


def audio_tables(mdat_at):
    """Three AAC samples of 10, 20 and 30 bytes in two chunks."""
    return [
        full(b"stts", 0, 0, words(1, 3, 1024)),
        full(b"stsc", 0, 0, words(2, 1, 2, 1, 2, 1, 1)),
        full(b"stsz", 0, 0, words(0, 3, 10, 20, 30)),
        full(b"stco", 0, 0, words(2, mdat_at + 8, mdat_at + 38)),
    ]


def progressive(tables=audio_tables, traks=None, mdat=bytes(range(60))):
    """ftyp, moov (one AAC track by default), mdat: `tables` and `traks`
    are made of the mdat's file offset."""
    def build(at):
        ftyp = bx(b"ftyp", b"isom\0\0\0\0isom")
        if traks is None:
            body = trak(1, b"soun", mp4a(), tables(at))
        else:
            body = traks(at)
        return ftyp, bx(b"moov", body)
    ftyp, moov = build(0)
    ftyp, moov = build(len(ftyp) + len(moov))
    return ftyp + moov + bx(b"mdat", mdat)


def with_table(kind, body):
    """The valid audio tables with the `kind` table replaced by `body`."""
    def tables(at):
        return [full(kind, 0, 0, body(at)) if t[4:8] == kind else t for t in audio_tables(at)]
    return tables


VALID_MP4 = progressive()


def flv_file(tags, header=b"FLV\x01\x05\x00\x00\x00\x09"):
    return header + b"\x00\x00\x00\x00" + b"".join(tags)


def file_tag(type_id, ts, body, size=None):
    head = bytes([type_id]) + struct.pack(">I", len(body) if size is None else size)[1:]
    head += struct.pack(">I", ts & 0xFFFFFF)[1:] + bytes([(ts >> 24) & 0xFF]) + b"\x00\x00\x00"
    return head + body + struct.pack(">I", 11 + len(body))


def vod(name, ext, data, log, what, expect="415", reply=FAILED):
    case(V, name, data, expect, log, reply, what=what, ext=ext)


vod("zero-bytes", "mp4", b"", NOT_MEDIA, "an empty file named .mp4")
vod("text", "mp4", b"These are my holiday notes, not a video.\n" * 20, NOT_MEDIA,
    "a text file named .mp4")
vod("html", "flv", b"<!doctype html><html><body>404</body></html>\n", NOT_MEDIA,
    "an HTML page named .flv")
vod("truncated-moov", "mp4", VALID_MP4[:len(VALID_MP4) - 60 - 100], "MP4: box 'moov' at offset 20 declares 405 bytes, but only 313 are left",
    "a valid MP4 cut in the middle of its moov")
vod("truncated-ftyp", "mp4", VALID_MP4[:12], "MP4: box 'ftyp' at offset 0 declares 20 bytes, but only 12 are left", "only the first 12 bytes of a valid MP4 (an ftyp cut short)")
vod("no-moov", "mp4", bx(b"ftyp", b"isom\0\0\0\0isom") + bx(b"mdat", bytes(1000)), "MP4: no 'moov' box",
    "an ftyp and an mdat, no moov")
vod("truncated-mdat", "mp4", VALID_MP4[:-45], "MP4: box 'mdat' at offset 425 declares 68 bytes, but only 23 are left",
    "a valid MP4 whose mdat is cut: the last samples lie past the end of the file")
vod("sample-offset-past-end", "mp4",
    progressive(with_table(b"stco", lambda at: words(2, 0xFFFFFF00, 0xFFFFFFF0))), 'lies past the end of the file',
    "chunk offsets near 4 GiB in a 1 KB file")
vod("co64-offset-overflow", "mp4",
    progressive(lambda at: audio_tables(at)[:3] + [full(b"co64", 0, 0, words(2, 0xFFFFFFFF, 0xFFFFFFF0, 0xFFFFFFFF, 0xFFFFFFF0))]),
    'at offset 18446744073709551600) lies past the end of the file', "64-bit chunk offsets of 2^64-16: offset plus size overflows")
vod("stsz-count-4g", "mp4", progressive(with_table(b"stsz", lambda at: words(0, 0xFFFFFFFF, 10, 20, 30))), "MP4: 'stsz': 4294967295 entries, more than the 4000000 allowed",
    "a sample size table claiming 2^32-1 entries, 3 present")
vod("stsz-constant-4g", "mp4", progressive(with_table(b"stsz", lambda at: words(1, 0xFFFFFFFF))), "MP4: 'stsz': 4294967295 entries, more than the 4000000 allowed",
    "a constant sample size with 2^32-1 samples: 4 GiB of samples in a 1 KB file")
vod("stts-count-4g", "mp4", progressive(with_table(b"stts", lambda at: words(0xFFFFFFFF, 3, 1024))), "MP4: 'stts' truncated: need 34359738360 bytes, have 8",
    "a time-to-sample table claiming 2^32-1 entries")
vod("stsc-count-4g", "mp4", progressive(with_table(b"stsc", lambda at: words(0xFFFFFFFF, 1, 2, 1))), "MP4: 'stsc' truncated: need 51539607540 bytes, have 12",
    "a sample-to-chunk table claiming 2^32-1 entries")
vod("stco-count-4g", "mp4", progressive(with_table(b"stco", lambda at: words(0xFFFFFFFF, at + 8))), "MP4: 'stco' truncated: need 17179869180 bytes, have 4",
    "a chunk offset table claiming 2^32-1 entries")
vod("stsd-empty", "mp4",
    progressive(traks=lambda at: trak(1, b"soun", mp4a(), audio_tables(at)).replace(
        b"stsd\x00\x00\x00\x00\x00\x00\x00\x01", b"stsd\x00\x00\x00\x00\x00\x00\x00\x00")),
    "MP4: 'stsd' is invalid: no sample entry", "a sample description box with no entry")
vod("moov-past-end", "mp4", VALID_MP4[:20] + struct.pack(">I", 0x7FFFFFFF) + VALID_MP4[24:], "MP4: box 'moov' at offset 20 declares 2147483647 bytes, but only 473 are left",
    "a moov whose size runs 2 GiB past the end of the file")
vod("trak-past-moov", "mp4",
    progressive(traks=lambda at: (lambda t: struct.pack(">I", len(t) + 500) + t[4:])(trak(1, b"soun", mp4a(), audio_tables(at)))),
    "MP4: box 'trak' at offset 28 declares 897 bytes, but only 397 are left", "a trak box 500 bytes larger than the moov holding it")
vod("box-size-4", "mp4", bx(b"ftyp", b"isom\0\0\0\0isom") + struct.pack(">I", 4) + b"moov" + bytes(100), "MP4: box 'moov' at offset 20 declares 4 bytes, less than its header",
    "a moov box of size 4 (smaller than its own header)")
vod("box-largesize-huge", "mp4",
    bx(b"ftyp", b"isom\0\0\0\0isom") + struct.pack(">I", 1) + b"moov" + struct.pack(">Q", 0xFFFFFFFFFFFFFFFF) + bytes(100),
    "MP4: box 'moov' at offset 20 declares 18446744073709551615 bytes", "a moov with a 64-bit size of 2^64-1")
vod("nested-deep", "mp4",
    (lambda inner: bx(b"ftyp", b"isom\0\0\0\0isom") + inner)(
        __import__("functools").reduce(lambda acc, k: bx(k, acc), list(reversed([b"moov", b"trak", b"mdia", b"minf", b"stbl", b"udta", b"meta"] * 500)), b"")),
    "MP4: no 'tkhd' box", "3,500 boxes nested in each other (moov, trak, mdia, minf, stbl, udta, meta, moov again...): the reader descends only the boxes it knows, so the trak has no tkhd")
vod("no-tracks", "mp4", bx(b"ftyp", b"isom\0\0\0\0isom") + bx(b"moov", full(b"mvhd", 0, 0, bytes(96))), 'MP4: no H.264, HEVC or AV1 video track and no AAC or Opus audio track',
    "a moov with a movie header and no track")
vod("unknown-codec", "mp4",
    progressive(traks=lambda at: trak(1, b"soun", mp4a().replace(b"mp4a", b"zzzz", 1), audio_tables(at))),
    "sample entry 'zzzz' is not read", "one audio track of sample entry 'zzzz'")
vod("zero-timescale", "mp4",
    progressive(traks=lambda at: trak(1, b"soun", mp4a(), audio_tables(at), timescale=0)), "MP4: 'mdhd' is invalid: timescale is 0",
    "a media timescale of 0")
vod("moof-only", "mp4",
    bx(b"moof", full(b"mfhd", 0, 0, words(1)) + bx(b"traf", full(b"tfhd", 0, 0x20000, words(1))
       + full(b"trun", 0, 0x301, words(0xFFFFFFFF, 0, 1024, 10)))) + bx(b"mdat", bytes(40)),
    "MP4: no 'moov' box", "a fragment (moof, mdat) without the moov that declares its track; its trun claims 2^32-1 samples")
vod("video-no-keyframe", "mp4",
    progressive(traks=lambda at: trak(1, b"vide", avc1(), [
        full(b"stts", 0, 0, words(1, 3, 3000)),
        full(b"stss", 0, 0, words(1, 0xFFFFFF)),
        full(b"stsc", 0, 0, words(1, 1, 3, 1)),
        full(b"stsz", 0, 0, words(0, 3, 20, 20, 20)),
        full(b"stco", 0, 0, words(1, at + 8)),
    ], timescale=90000), mdat=(struct.pack(">I", 16) + bytes([0x41]) + bytes(15)) * 3),
    NO_KEYFRAME, "H.264 whose only sync sample is number 16,777,215 of 3: frames, none to start from")
vod("huge-tag-size", "flv", flv_file([file_tag(9, 0, avc_seq(avc_record()), size=0xFFFFFF)]), NO_FRAMES,
    "an FLV whose first tag claims 16 MiB of body in a 100-byte file")
vod("all-script-tags", "flv",
    flv_file([file_tag(18, i * 40, amf_str("onMetaData") + amf_obj([("duration", amf_num(1e308))])) for i in range(200)]),
    NO_FRAMES, "an FLV of 200 onMetaData script tags and nothing else")
vod("header-only", "flv", b"FLV\x01\x05\x00\x00\x00\x09", NO_FRAMES, "the 9-byte FLV header and nothing after it")
vod("header-offset-huge", "flv", b"FLV\x01\x05\xff\xff\xff\xff\x00\x00\x00\x00" + bytes(64), 'FLV: FLV header size 4294967295 is invalid',
    "an FLV header whose data offset is 4 GiB")
vod("bad-tags-only", "flv",
    flv_file([file_tag(9, 0, b"\x17"), file_tag(8, 0, b"\xaf"), file_tag(9, 40, b"\x27\x01\x00\x00\x00" + bytes(8)),
              file_tag(8, 40, bytes([0xB2]) + bytes(10)), file_tag(7, 80, bytes(30))]),
    NO_FRAMES, "an FLV of truncated tags, frames before their sequence headers, Speex and an unknown tag type")
vod("timestamps-4g", "flv",
    flv_file([file_tag(8, ts, b"\xaf\x01" + bytes(6)) for ts in (0, 0xFFFFFFFF, 0x7FFFFFFF, 0xFFFFFFFF)]),
    NO_FRAMES, "AAC frames with timestamps 0, 2^32-1, 2^31-1 and no AudioSpecificConfig")


# --------------------------------------------------------------------------
# Output


def main():
    seen = set()
    for c in CASES:
        key = (c["category"], c["name"])
        assert key not in seen, key
        seen.add(key)
    categories = ["handshake", "chunk", "amf", "flv", "codec", "http", "vod"]
    for cat in categories:
        d = os.path.join(HERE, cat)
        os.makedirs(d, exist_ok=True)
        wanted = {c["file"] for c in CASES if c["category"] == cat}
        for f in os.listdir(d):
            if f not in wanted:
                os.remove(os.path.join(d, f))
    for c in CASES:
        with open(os.path.join(HERE, c["category"], c["file"]), "wb") as f:
            f.write(c["data"])
    with open(os.path.join(HERE, "MANIFEST.tsv"), "w") as f:
        f.write("# Generated by generate.py; replayed by e2e/corpus.rs. Columns:\n")
        f.write("# file\texpect\tlog\treply\tbad_tags\twhat\n")
        for c in CASES:
            f.write("\t".join([c["category"] + "/" + c["file"], c["expect"], c["log"],
                               c["reply"], c["bad_tags"], c["what"]]) + "\n")
    write_readme(categories)


def md(s):
    return s.replace("|", "\\|").replace("`", "'")


def outcome(c):
    e = c["expect"]
    if c["category"] == "http":
        return "closed at once, no answer" if e == "close" else f"HTTP {e}"
    if c["category"] == "vod":
        log = "; log: `" + md(c["log"]) + "`"
        return f"HTTP {e}{log}; RTMP `" + md(c["reply"]) + "`"
    parts = []
    if e == "close":
        parts.append("closed; log: `" + md(c["log"]) + "`" if c["log"] else "closed")
    else:
        parts.append("stays open; log: `" + md(c["log"]) + "`")
    if c["reply"]:
        parts.append("reply holds `" + md(c["reply"]) + "`")
    if c["bad_tags"] != "-":
        parts.append("bad_tags=" + c["bad_tags"])
    return "; ".join(parts)


def write_readme(categories):
    counts = {cat: sum(1 for c in CASES if c["category"] == cat) for cat in categories}
    with open(os.path.join(HERE, "README.md"), "w") as f:
        f.write(README_HEAD.format(total=len(CASES), **counts))
        for cat in categories:
            f.write(f"\n### {cat}/ ({counts[cat]})\n\n| file | what | expected |\n|---|---|---|\n")
            for c in CASES:
                if c["category"] == cat:
                    f.write(f"| `{c['file']}` | {md(c['what'])} | {outcome(c)} |\n")


README_HEAD = """# Corpus of malformed inputs

{total} files, each the bytes a hostile or broken client sends to castgate
(or a hostile media file a client asks it to play),
replayed by `e2e/corpus.rs` (`cargo test --test e2e corpus`) against one
running castgate while ffmpeg publishes a real stream alongside. Generated by
`generate.py` (Python 3, standard library only), which also writes
`MANIFEST.tsv` (what the test replays and expects) and this file:

    python3 tests/corpus/generate.py

Edit the generator, never the files.

## What a file holds

| folder | bytes | sent to |
|---|---|---|
| `handshake/` ({handshake}) | the whole client byte stream from its first byte (C0) | RTMP port |
| `chunk/` ({chunk}) | the whole stream: a simple handshake (C0 + zero-version C1 + C2), then chunks | RTMP port |
| `amf/` ({amf}) | the whole stream: handshake, then commands (often a valid connect/createStream first) | RTMP port |
| `flv/` ({flv}) | the chunk stream sent **after** a valid publish | RTMP port |
| `codec/` ({codec}) | the chunk stream sent **after** a valid publish | RTMP port |
| `http/` ({http}) | one raw HTTP/1.1 request | HTTP port |
| `vod/` ({vod}) | a whole media file (named `.mp4` or `.flv`), put in castgate's `[vod] dir` | asked for over HTTP and RTMP |

castgate does not check C2 (clients fill it with junk), so static handshake
bytes are a valid client. For `flv/` and `codec/` the replayer makes the
valid prefix itself: handshake, `connect` to app `live`, `createStream`,
`publish` of `live/<folder>-<name>` on message stream 1, and it waits for
`NetStream.Publish.Start` (media sent before a publish is accepted is not yet
media of a published stream). These files use type-0 chunk headers only, so
they do not depend on the prefix's header compression, at the default chunk
size of 128 bytes; audio is on chunk stream 4, video on 6, all on message
stream 1.

After every RTMP file whose outcome is "stays open" the replayer sends a
Ping Request (a type-0 chunk on chunk stream 2) and waits for castgate's
Ping Response: the session read everything before it and is still alive.
Those files leave the chunk size at 6 bytes or more.

## Expected outcomes

- **closed**: castgate closes the connection (within the handshake timeout,
  2 s in the test, at the latest) and logs the warning
  `connection closed: <reason>` on a line naming the peer (`peer=IP:PORT`);
  the reason contains the quoted text. Protocol errors (handshake, chunk stream, AMF, commands out
  of order) end the connection: nothing after them can be trusted.
- **stays open**: castgate logs the quoted text on a line naming the peer,
  answers the Ping, and logs `peer closed the connection` when the replayer
  hangs up (it never closed first). A *reply* must appear in castgate's
  answer bytes (e.g. the `onStatus` code of a refused publish).
- Media-level errors (`flv/`, `codec/`) are not protocol errors: the bad
  tag is dropped and logged as a warning naming the stream and the peer
  (the first five, then every hundredth), the publisher stays connected, and
  `publish ended` reports `bad_tags=N`. A codec castgate does not carry
  (e.g. HEVC, Speex) is said once per publish and is not a bad tag. The
  stream's packager ends cleanly after the grace period.
- **HTTP NNN**: that 4xx status, never a 5xx and never a hang; afterwards the
  connection is either closed or still serves `GET /healthz`.
- Media files (`vod/`): `GET /vod/NAME/index.m3u8`, `manifest.mpd`,
  `video.m3u8` and `audio/seg-1.m4s` answer the stated status, never a 200
  nor a 5xx: **415**, the file does not play, with the warning
  `not playable on demand: <reason>` naming the file (`file=NAME`), the
  reason containing the quoted text (a 404 would be a file that reads but
  has nothing to serve: the replayer takes it, no file here is one). Then an RTMP client connects to app `vod` and plays
  `NAME`: castgate answers the stated `onStatus` code, logs
  `play refused` with the quoted text on a line naming the peer and the
  stream, and still answers a Ping (the connection is handled, not
  dropped) until the client hangs up. `src/vod/tests.rs` runs the same
  files through the library without a server.

For every file: castgate is still running, no panic is logged, and the
stream published alongside arrives whole (every frame, identical payloads,
over RTMP and in the HLS output, which decodes without an error).

## Files
"""

if __name__ == "__main__":
    main()
