"""Exact rewrites of an exported graph for onnxruntime's fast CPU kernels (pads folded, 1-D convs as 2-D)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["RewriteReport", "conv1d_as_2d", "fold_pads", "optimize_graph"]


@dataclass
class RewriteReport:
    """What :func:`optimize_graph` changed."""

    pads_folded: int = 0
    convs_2d: int = 0


def _constant_value(model: onnx.ModelProto, name: str) -> np.ndarray | None:
    """The value of tensor ``name`` when it depends on no graph input (an initializer or a constant chain)."""
    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    producers = {out: node for node in model.graph.node for out in node.output}
    inputs = {i.name for i in model.graph.input}
    chain: list[onnx.NodeProto] = []
    todo, seen = [name], set()
    while todo:
        tensor = todo.pop()
        if tensor in seen or not tensor:
            continue
        seen.add(tensor)
        if tensor in inputs:
            return None
        node = producers.get(tensor)
        if node is None:  # an initializer
            continue
        if node.op_type in ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial"):
            return None
        chain.append(node)
        todo.extend(node.input)
    from onnx.reference import ReferenceEvaluator

    ids = {id(n) for n in chain}
    order = [n for n in model.graph.node if id(n) in ids]  # keep the graph's topological order
    used = {i for n in order for i in n.input}
    inits = [i for i in model.graph.initializer if i.name in used]
    graph = helper.make_graph(order, "const", [], [helper.make_tensor_value_info(name, 0, None)], inits)
    sub = helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
    (value,) = ReferenceEvaluator(sub).run(None, {})
    return np.asarray(value)


def _attr(node: onnx.NodeProto, name: str) -> onnx.AttributeProto | None:
    return next((a for a in node.attribute if a.name == name), None)


def fold_pads(model: onnx.ModelProto) -> int:
    """Fold each constant zero ``Pad`` of the spatial axes into the ``Conv`` that alone reads it; returns how many.

    A causal convolution exports as ``Pad(left) -> Conv(pads=0)``; ``Conv(pads=[left, 0])`` computes the same
    sums without writing a padded copy of the activations.
    """
    g = model.graph
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in g.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    graph_outputs = {o.name for o in g.output}
    folded = []
    for pad in g.node:
        if pad.op_type != "Pad" or len(pad.input) < 2:
            continue
        mode = _attr(pad, "mode")
        if mode is not None and mode.s not in (b"", b"constant"):
            continue
        if len(pad.input) > 2 and pad.input[2]:
            value = _constant_value(model, pad.input[2])
            if value is None or np.any(value != 0):
                continue
        if len(pad.input) > 3 and pad.input[3]:  # explicit axes: not produced by the exporters used here
            continue
        users = consumers.get(pad.output[0], [])
        if len(users) != 1 or users[0].op_type != "Conv" or pad.output[0] in graph_outputs:
            continue
        conv = users[0]
        auto_pad = _attr(conv, "auto_pad")
        if conv.input[0] != pad.output[0] or (auto_pad is not None and auto_pad.s not in (b"", b"NOTSET")):
            continue
        pads = _constant_value(model, pad.input[1])
        if pads is None:
            continue
        pads = pads.astype(np.int64).reshape(-1)
        rank = pads.size // 2
        if np.any(pads < 0) or np.any(pads[[0, 1, rank, rank + 1]] != 0):
            continue
        spatial = rank - 2
        conv_pads = _attr(conv, "pads")
        old = list(conv_pads.ints) if conv_pads is not None else [0] * (2 * spatial)
        new = [old[i] + int(pads[2 + i]) for i in range(spatial)]
        new += [old[spatial + i] + int(pads[rank + 2 + i]) for i in range(spatial)]
        if conv_pads is None:
            conv.attribute.append(helper.make_attribute("pads", new))
        else:
            conv_pads.ints[:] = new
        conv.input[0] = pad.input[0]
        folded.append(pad)
    for pad in folded:
        g.node.remove(pad)
    return len(folded)


def conv1d_as_2d(model: onnx.ModelProto, min_kernel: int = 2) -> int:
    """Run each 1-D ``Conv`` of kernel ``>= min_kernel`` as a 2-D ``[1, k]`` one; returns how many.

    onnxruntime's CPU provider runs 2-D convolutions in its blocked NCHWc layout (direct kernels, dilation
    included) and 1-D ones through im2col + GEMM; the sums are the same. ``Unsqueeze``/``Squeeze`` around
    each convolution keep the rest of the graph 1-D. Pointwise convolutions stay 1-D (a plain GEMM).
    """
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    weights_4d: set[str] = set()  # made 4-D here: every other convolution reading one is rewritten too
    axis = "conv1d_as_2d_axis"
    count = 0
    nodes: list[onnx.NodeProto] = []
    for node in g.node:
        w = inits.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        if w is None or (w.name not in weights_4d and (len(w.dims) != 3 or w.dims[2] < min_kernel)):
            nodes.append(node)
            continue
        if w.name not in weights_4d:
            w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w)[:, :, None, :], w.name))
            weights_4d.add(w.name)
        a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", b""):
            raise ValueError(f"{node.name}: auto_pad is not supported by conv1d_as_2d")
        x4, y4 = f"{node.output[0]}__4d_in", f"{node.output[0]}__4d_out"
        pads = list(a.get("pads", [0, 0]))
        nodes.append(helper.make_node("Unsqueeze", [node.input[0], axis], [x4], name=f"{node.output[0]}__unsqueeze"))
        nodes.append(
            helper.make_node(
                "Conv",
                [x4, *node.input[1:]],
                [y4],
                name=node.name,
                dilations=[1, int(a.get("dilations", [1])[0])],
                group=int(a.get("group", 1)),
                kernel_shape=[1, int(w.dims[3])],
                pads=[0, pads[0], 0, pads[1]],
                strides=[1, int(a.get("strides", [1])[0])],
            )
        )
        nodes.append(helper.make_node("Squeeze", [y4, axis], [node.output[0]], name=f"{node.output[0]}__squeeze"))
        count += 1
    if count:
        g.initializer.append(numpy_helper.from_array(np.array([2], np.int64), axis))
        del g.node[:]
        g.node.extend(nodes)
    return count


def optimize_graph(path: Path) -> RewriteReport:
    """Rewrite the graph at ``path`` in place (:func:`fold_pads`, then :func:`conv1d_as_2d`) and check it."""
    model = onnx.load(str(path))
    report = RewriteReport(pads_folded=fold_pads(model), convs_2d=conv1d_as_2d(model))
    if report.pads_folded or report.convs_2d:
        onnx.checker.check_model(model)
        onnx.save(model, str(path))
    return report
