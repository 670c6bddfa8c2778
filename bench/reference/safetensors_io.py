"""A small safetensors reader/writer on json + struct + torch.frombuffer.

The reference needs no `safetensors` package: the format is 8 bytes of little-endian header
length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {...}}, then the raw
little-endian bytes of every tensor (huggingface/safetensors README, "Format"). A model directory
holds model.safetensors, or shards listed in model.safetensors.index.json ("weight_map").
"""
import ctypes
import json
import os
import struct

import torch

DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}
NAMES = {dtype: name for name, dtype in DTYPES.items()}


def read_safetensors(path):
    """Every tensor of one file as {name: CPU tensor}, plus the metadata dict."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError("%s: too short to be a safetensors file" % path)
    (header_len,) = struct.unpack("<Q", blob[:8])
    if 8 + header_len > len(blob):
        raise ValueError("%s: header length %d runs past the end of the file" % (path, header_len))
    header = json.loads(blob[8:8 + header_len].decode("utf-8"))
    metadata = header.pop("__metadata__", {}) or {}
    data = memoryview(blob)[8 + header_len:]
    tensors = {}
    for name, info in header.items():
        if info["dtype"] not in DTYPES:
            raise ValueError("%s: tensor %s has dtype %s, which this reader does not handle"
                             % (path, name, info["dtype"]))
        begin, end = info["data_offsets"]
        dtype = DTYPES[info["dtype"]]
        if end > begin:
            # bytearray: frombuffer needs a writable buffer to hand out a writable tensor.
            t = torch.frombuffer(bytearray(data[begin:end]), dtype=dtype).reshape(info["shape"])
        else:
            t = torch.empty(info["shape"], dtype=dtype)
        tensors[name] = t
    return tensors, metadata


def write_safetensors(path, tensors, metadata=None):
    """Writes {name: tensor} (CPU, any dtype in DTYPES) with an 8-aligned data section."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    chunks, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        # The raw bytes straight from memory: no numpy needed, and bfloat16 works as well.
        raw = ctypes.string_at(t.data_ptr(), t.numel() * t.element_size()) if t.numel() else b""
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in chunks:
            f.write(raw)
    os.replace(tmp, path)


def read_model_dir(directory):
    """All weights of a model directory: model.safetensors or the shards of its index."""
    index_path = os.path.join(directory, "model.safetensors.index.json")
    if os.path.exists(index_path):
        with open(index_path) as f:
            weight_map = json.load(f)["weight_map"]
        tensors = {}
        for shard in sorted(set(weight_map.values())):
            part, _ = read_safetensors(os.path.join(directory, shard))
            for name, t in part.items():
                if weight_map.get(name) != shard:
                    raise ValueError("%s: tensor %s is not listed for this shard in the index" % (shard, name))
                tensors[name] = t
        missing = sorted(set(weight_map) - set(tensors))
        if missing:
            raise ValueError("%s: the index lists tensors no shard holds: %s" % (directory, missing[:5]))
        return tensors
    single = os.path.join(directory, "model.safetensors")
    if not os.path.exists(single):
        raise FileNotFoundError("%s has neither model.safetensors nor model.safetensors.index.json" % directory)
    return read_safetensors(single)[0]
