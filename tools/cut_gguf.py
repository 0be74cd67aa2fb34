#!/usr/bin/env python3
"""Writes the first N layers of a GGUF model as a smaller GGUF: every metadata field copied
(block_count set to N), token embeddings, output norm and head kept, layers >= N dropped.
The GPU check ships the result (the default model cut to 4 layers is about 30 MB) to compare
the CUDA forward pass with the CPU one on real weights.

    tools/cut_gguf.py models/SmolLM2-135M-Instruct.Q4_1.gguf 4 models/smollm2-4l.gguf
"""
import re
import sys

import gguf


def field_value(f):
    t = f.types[0]
    if t == gguf.GGUFValueType.ARRAY:
        sub = f.types[1]
        if sub == gguf.GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data], t, sub
        return [f.parts[i].tolist()[0] for i in f.data], t, sub
    if t == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8"), t, None
    return f.parts[f.data[0]].tolist()[0], t, None


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    src, n_layers, dst = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    r = gguf.GGUFReader(src)
    arch = field_value(r.fields["general.architecture"])[0]
    w = gguf.GGUFWriter(dst, arch)
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        val, t, sub = field_value(f)
        if name == f"{arch}.block_count":
            val = n_layers
        w.add_key_value(name, val, t, sub)
    for t in r.tensors:
        m = re.match(r"blk\.(\d+)\.", t.name)
        if m and int(m.group(1)) >= n_layers:
            continue
        # the reader's data is shaped (rows, bytes per row) for quantised types, which is what
        # the writer expects of raw blocks
        w.add_tensor(t.name, t.data, raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
