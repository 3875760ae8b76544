#!/usr/bin/env python3
"""Converts a float32 ONNX model to a float16 one throughout (input, weights,
outputs) with onnxconverter-common, for tests/inference_fp16.rs's optional check of a
real fp16 model (CUDAINFER_FP16_MODEL) and manual runs; the result is not
kept in the repository. Needs: pip install onnx onnxconverter-common.

    python3 scripts/make-fp16-model.py IN.onnx OUT.onnx
"""
import sys

import onnx
from onnxconverter_common import float16

src, dst = sys.argv[1:3]
model = float16.convert_float_to_float16(onnx.load(src), keep_io_types=False)
onnx.save(model, dst)
print(f"{dst}: " + ", ".join(
    f"{v.name} {onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type)}"
    for v in list(model.graph.input) + list(model.graph.output)))
