"""Export graph rewrites: causal pads folded into convolutions, 1-D convolutions run as 2-D, outputs unchanged."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from idm.export.optimize import conv1d_as_2d, fold_pads, optimize_graph
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _graph(pad_mode: str = "constant", pad_value: float | None = None, second_reader: bool = False) -> onnx.ModelProto:
    """x [2, 4, 300] -> Pad(left 12) -> Conv(k 5, dilation 3) -> + pointwise Conv(x) (+ a second reader of the pad)."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 4, 5)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b"),
        numpy_helper.from_array(rng.standard_normal((4, 4, 1)).astype(np.float32), "w1"),
        numpy_helper.from_array(np.array([0, 0, 12, 0, 0, 0], np.int64), "pads"),
    ]
    pad_inputs = ["x", "pads"]
    if pad_value is not None:
        inits.append(numpy_helper.from_array(np.array(pad_value, np.float32), "value"))
        pad_inputs.append("value")
    nodes = [
        helper.make_node("Pad", pad_inputs, ["xp"], mode=pad_mode),
        helper.make_node("Conv", ["xp", "w", "b"], ["y"], kernel_shape=[5], dilations=[3], pads=[0, 0]),
        helper.make_node("Conv", ["x", "w1"], ["r"], kernel_shape=[1]),
        helper.make_node("Add", ["y", "r"], ["out"]),
    ]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2, 4, 300])]
    if second_reader:
        nodes.append(helper.make_node("Relu", ["xp"], ["xp_relu"]))
        outputs.append(helper.make_tensor_value_info("xp_relu", TensorProto.FLOAT, [2, 4, 312]))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 300])], outputs, inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model)
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(["out"], {"x": x})[0]


@pytest.fixture
def x() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((2, 4, 300)).astype(np.float32)


def test_causal_pad_folded_and_conv_2d_same_output(x):
    model = _graph()
    before = _run(model, x)
    assert fold_pads(model) == 1
    assert [n.op_type for n in model.graph.node].count("Pad") == 0
    conv = next(n for n in model.graph.node if n.op_type == "Conv" and n.input[1] == "w")
    assert list(next(a for a in conv.attribute if a.name == "pads").ints) == [12, 0]
    folded = _run(model, x)
    np.testing.assert_array_equal(folded, before)  # the same sums in the same order
    assert conv1d_as_2d(model) == 1  # the pointwise convolution stays 1-D
    onnx.checker.check_model(model)
    kernels = [list(next(a for a in n.attribute if a.name == "kernel_shape").ints) for n in model.graph.node
               if n.op_type == "Conv"]  # fmt: skip
    assert sorted(kernels) == [[1], [1, 5]]
    np.testing.assert_allclose(_run(model, x), before, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs", [{"pad_mode": "reflect"}, {"pad_value": 0.5}, {"second_reader": True}], ids=["reflect", "value", "shared"]
)
def test_pads_that_are_not_a_zero_conv_padding_stay(kwargs, x):
    model = _graph(**kwargs)
    before = _run(model, x)
    assert fold_pads(model) == 0
    assert [n.op_type for n in model.graph.node].count("Pad") == 1
    np.testing.assert_array_equal(_run(model, x), before)


def test_zero_pad_value_is_folded(x):
    model = _graph(pad_value=0.0)
    before = _run(model, x)
    assert fold_pads(model) == 1
    np.testing.assert_array_equal(_run(model, x), before)


def test_exported_synth_is_rewritten(tiny_bundle, tmp_path):
    """The bundle's synthesizer has no Pad left, its dilated convolutions are 2-D, and a second pass is a no-op."""
    model = onnx.load(str(tiny_bundle / "synth.onnx"))
    ops = [n.op_type for n in model.graph.node]
    assert "Pad" not in ops
    inits = {i.name: i for i in model.graph.initializer}
    dilated = [n for n in model.graph.node if n.op_type == "Conv" and inits[n.input[1]].dims[-1] > 1]
    assert dilated and all(len(inits[n.input[1]].dims) == 4 for n in dilated)
    copy = tmp_path / "synth.onnx"
    copy.write_bytes((tiny_bundle / "synth.onnx").read_bytes())
    report = optimize_graph(copy)
    assert (report.pads_folded, report.convs_2d) == (0, 0)
    assert copy.read_bytes() == (tiny_bundle / "synth.onnx").read_bytes()


def test_convolutions_sharing_a_weight_are_all_rewritten(x):
    """Two 1-D convolutions reading one weight (a batch split in two branches, say): both run as 2-D."""
    rng = np.random.default_rng(2)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 4, 5)).astype(np.float32), "w")]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["a"], kernel_shape=[5], dilations=[2], pads=[8, 0]),
        helper.make_node("Conv", ["a", "w"], ["out"], kernel_shape=[5], pads=[2, 2]),
    ]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 4, 300]) for n in ("x", "out")]
    model = helper.make_model(helper.make_graph(nodes, "g", io[:1], io[1:], inits),
                              opset_imports=[helper.make_opsetid("", OPSET)])  # fmt: skip
    before = _run(model, x)
    assert conv1d_as_2d(model) == 2
    onnx.checker.check_model(model)
    assert [len(next(a for a in n.attribute if a.name == "kernel_shape").ints) for n in model.graph.node
            if n.op_type == "Conv"] == [2, 2]  # fmt: skip
    np.testing.assert_allclose(_run(model, x), before, rtol=0, atol=1e-4)
