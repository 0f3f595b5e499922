"""Reduced-precision variants of exported graphs: fp16 weight storage and int8 dynamic quantization."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["to_fp16", "to_int8"]


def to_fp16(path: Path, min_size: int = 16) -> None:
    """Store every float32 weight of ``min_size`` or more elements as fp16, cast back to float32 in the graph.

    Computation stays float32: the official encoder's activations exceed the fp16 range (its stage-3
    depthwise convolutions overflow to inf in fp16 compute), so fp16 here halves the weights, not the math.
    """
    model = onnx.load(str(path))
    g = model.graph
    casts = []
    for init in g.initializer:
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        arr = numpy_helper.to_array(init)
        if arr.size < min_size:
            continue
        name = init.name
        half = numpy_helper.from_array(arr.astype(np.float16), name + "_fp16")
        init.CopyFrom(half)
        casts.append(helper.make_node("Cast", [name + "_fp16"], [name], to=onnx.TensorProto.FLOAT, name=name + "_cast"))
    for node in reversed(casts):
        g.node.insert(0, node)
    onnx.save(model, str(path))


def to_int8(path: Path) -> None:
    """Dynamic int8 quantization (weights int8, activations quantized per call) of MatMul/Gemm, in place."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # quantize_dynamic warns about pre-processing on the root logger
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "q.onnx"
        quantize_dynamic(str(path), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
        path.write_bytes(out.read_bytes())
