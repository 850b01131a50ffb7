"""Measure a model's FLOPs on real inputs by walking its graph with the shapes ONNX Runtime produced.

This is the cross-check of the analytic counts in ``presets``: same convention
(2 FLOPs per multiply-accumulate of MatMul, Gemm, Conv and ConvTranspose).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

COUNTED_OPS = ("MatMul", "Gemm", "Conv", "ConvTranspose")


def graph_flops(model_path: Path, feeds: dict[str, np.ndarray]) -> int:
    """FLOPs of one unoptimised run of the model at ``model_path`` on ``feeds``."""
    import onnxruntime as ort

    model = onnx.load(str(model_path))
    counted = [n for n in model.graph.node if n.op_type in COUNTED_OPS]
    shapes: dict[str, tuple[int, ...]] = {t.name: tuple(t.dims) for t in model.graph.initializer}
    shapes.update({k: v.shape for k, v in feeds.items()})
    wanted = sorted({name for n in counted for name in (*n.input, *n.output) if name and name not in shapes})
    existing = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=name) for name in wanted if name not in existing)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"])
    values = sess.run(wanted, feeds)
    shapes.update({name: v.shape for name, v in zip(wanted, values)})
    total = 0
    for node in counted:
        a, b = shapes[node.input[0]], shapes[node.input[1]]
        out = shapes[node.output[0]]
        if node.op_type in ("MatMul", "Gemm"):
            total += 2 * int(np.prod(out)) * int(a[-1])  # Gemm here never transposes A
        elif node.op_type == "Conv":  # out [B, Cout, *S], weight [Cout, Cin/g, *K]
            total += 2 * int(np.prod(out)) * int(np.prod(b[1:]))
        else:  # ConvTranspose: in [B, Cin, *S], weight [Cin, Cout/g, *K]
            total += 2 * int(np.prod(a)) * int(np.prod(b[1:]))
    return total


def initializer_params(model_path: Path) -> int:
    from reference_server.models.graph import param_count

    return param_count(onnx.load(str(model_path)))

