#!/usr/bin/env python3
"""An independent second implementation of the safetensors layout, for nextn's interop test.

Usage: safetensors_interop.py FROM_NEXTN TO_NEXTN

Reads FROM_NEXTN (written by nextn's C++ writer) with nothing but struct, json and
torch.frombuffer, checks the layout rules of the spec (huggingface/safetensors README, "Format")
and that every tensor equals expected_tensors(); then writes TO_NEXTN with its own writer, laying
the tensors out in a different order and without header padding, for the C++ side to read back.
Exit status 0 on success, 1 on a mismatch, 77 when torch is unavailable (the test is skipped).
"""
import ctypes
import json
import struct
import sys

try:
    import torch
except ImportError:
    sys.exit(77)

DTYPES = {
    "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool, "C64": torch.complex64,
}


def expected_tensors():
    """Must match interop_tensors() in python_interop_test.cpp."""
    base = torch.arange(-6, 6, dtype=torch.int64).reshape(3, 4)
    tensors = {}
    for name, dtype in DTYPES.items():
        if dtype == torch.bool:
            t = base.remainder(3).eq(0)
        elif dtype == torch.complex64:
            t = torch.complex(base.float(), base.float() * -0.25)
        elif dtype.is_floating_point:
            t = (base.double() * 0.5).to(dtype)
        elif dtype == torch.uint8:
            t = (base + 6).to(dtype)
        else:
            t = base.to(dtype)
        tensors["t." + name] = t
    tensors["scalar"] = torch.tensor(3.25, dtype=torch.float64)
    tensors["empty"] = torch.empty((2, 0), dtype=torch.int32)
    return tensors


def fail(message):
    print("interop: " + message, file=sys.stderr)
    sys.exit(1)


def no_duplicate_keys(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        fail("duplicate keys in header")
    return dict(pairs)


def read_file(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header_bytes = blob[8:8 + n]
    if not header_bytes.startswith(b"{"):
        fail("header does not start with '{'")
    if (8 + n) % 8 != 0:
        fail("data does not start 8-aligned: header length %d" % n)
    text = header_bytes.decode("utf-8")
    if text[len(text.rstrip(" ")):] != " " * (len(text) - len(text.rstrip(" "))):
        fail("padding is not spaces")
    header = json.loads(text, object_pairs_hook=no_duplicate_keys)
    metadata = header.pop("__metadata__", {})
    data = blob[8 + n:]
    expected_start = 0
    for name, info in sorted(header.items(), key=lambda kv: tuple(kv[1]["data_offsets"])):
        begin, end = info["data_offsets"]
        if begin != expected_start:
            fail("tensor %s starts at %d, expected %d" % (name, begin, expected_start))
        expected_start = end
    if expected_start != len(data):
        fail("tensors cover %d of %d data bytes" % (expected_start, len(data)))
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        dtype = DTYPES[info["dtype"]]
        if end > begin:
            t = torch.frombuffer(bytearray(data[begin:end]), dtype=dtype).reshape(info["shape"])
        else:
            t = torch.empty(info["shape"], dtype=dtype)
        tensors[name] = t
    return tensors, metadata


def raw_bytes(t):
    t = t.contiguous()
    return ctypes.string_at(t.data_ptr(), t.numel() * t.element_size()) if t.numel() else b""


def write_file(path, tensors, metadata):
    # Data in reverse name order, header keys in name order: offsets are not in header order.
    header = {"__metadata__": metadata}
    chunks, offset = [], 0
    for name in sorted(tensors, reverse=True):
        blob = raw_bytes(tensors[name])
        dtype_name = next(k for k, v in DTYPES.items() if v == tensors[name].dtype)
        header[name] = {"dtype": dtype_name, "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(blob)]}
        chunks.append(blob)
        offset += len(blob)
    text = json.dumps({k: header[k] for k in sorted(header)}, separators=(",", ":")).encode("utf-8")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def main():
    source, target = sys.argv[1], sys.argv[2]
    tensors, metadata = read_file(source)
    if metadata != {"writer": "nextn", "ünïcode": "✓"}:
        fail("metadata %r" % metadata)
    expected = expected_tensors()
    if sorted(tensors) != sorted(expected):
        fail("names %r" % sorted(tensors))
    for name, t in expected.items():
        got = tensors[name]
        if got.dtype != t.dtype or got.shape != t.shape or not torch.equal(got, t):
            fail("tensor %s: got %r, expected %r" % (name, got, t))
        if raw_bytes(got) != raw_bytes(t):
            fail("tensor %s: bytes differ" % name)
    write_file(target, expected, {"writer": "python"})


if __name__ == "__main__":
    main()
