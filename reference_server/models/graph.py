"""A small ONNX graph builder over ``onnx.helper``: named nodes, seeded weights, common blocks.

Weights are drawn from one seeded numpy Generator in build order, so the same
builder code with the same seed gives byte-identical models. Initializers whose
name starts with ``const/`` are fixed buffers (DFT kernels, mel matrix, ...) and
do not count as parameters.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
# onnx 1.23 writes IR 14 by default, which ORT 1.31 cannot read (it reads <= 13); opset 17 needs >= 8.
IR_VERSION = 10
CONST_PREFIX = "const/"


class GraphBuilder:
    def __init__(self, name: str, seed: int) -> None:
        self.name = name
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._used: set[str] = set()
        self._consts: dict[tuple, str] = {}

    # -- naming and raw nodes -------------------------------------------------------------
    def reserve(self, *names: str) -> None:
        """Keep graph input/output names free so nodes get exactly those names (or never clash)."""
        self._used.update(names)

    def uniq(self, base: str) -> str:
        name, i = base, 1
        while name in self._used:
            i += 1
            name = f"{base}_{i}"
        self._used.add(name)
        return name

    def op(self, op_type: str, inputs: list[str], name: str | None = None, n_out: int = 1, **attrs) -> str:
        outs = self.ops(op_type, inputs, name, n_out, **attrs)
        return outs[0]

    def ops(self, op_type: str, inputs: list[str], name: str | None = None, n_out: int = 1, **attrs) -> list[str]:
        node_name = self.uniq(name or op_type.lower())
        outs = [node_name if n_out == 1 else self.uniq(f"{node_name}:{i}") for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=node_name, **attrs))
        return outs

    # -- tensors ----------------------------------------------------------------------------
    def const(self, value: np.ndarray | float | int | list, dtype: type = np.float32, name: str | None = None) -> str:
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes()) if arr.size <= 16 and name is None else None
        if key is not None and key in self._consts:
            return self._consts[key]
        tname = self.uniq(CONST_PREFIX + (name or "c"))
        self.initializers.append(numpy_helper.from_array(arr, tname))
        if key is not None:
            self._consts[key] = tname
        return tname

    def param(self, name: str, value: np.ndarray) -> str:
        tname = self.uniq(name)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), tname))
        return tname

    def weight(self, name: str, shape: tuple[int, ...], std: float) -> str:
        return self.param(name, self.rng.standard_normal(shape, dtype=np.float32) * np.float32(std))

    # -- blocks -----------------------------------------------------------------------------
    def linear(self, x: str, d_in: int, d_out: int, name: str, bias: bool = True, std: float | None = None) -> str:
        w = self.weight(f"{name}.weight", (d_in, d_out), std if std is not None else 1.0 / math.sqrt(d_in))
        y = self.op("MatMul", [x, w], f"{name}.matmul")
        if bias:
            b = self.param(f"{name}.bias", np.zeros(d_out, dtype=np.float32))
            y = self.op("Add", [y, b], f"{name}.add")
        return y

    def layer_norm(self, x: str, d: int, name: str) -> str:
        scale = self.param(f"{name}.weight", np.ones(d, dtype=np.float32))
        bias = self.param(f"{name}.bias", np.zeros(d, dtype=np.float32))
        return self.op("LayerNormalization", [x, scale, bias], name, axis=-1, epsilon=1e-5)

    def conv(self, x: str, c_in: int, c_out: int, kernel: int | tuple[int, int], name: str, stride: int = 1,
             pads: list[int] | None = None, dilation: int = 1, gain: float = 1.0) -> str:
        ks = (kernel,) if isinstance(kernel, int) else tuple(kernel)
        fan_in = c_in * int(np.prod(ks))
        w = self.weight(f"{name}.weight", (c_out, c_in, *ks), gain / math.sqrt(fan_in))
        b = self.param(f"{name}.bias", np.zeros(c_out, dtype=np.float32))
        attrs: dict = {"strides": [stride] * len(ks), "dilations": [dilation] * len(ks)}
        attrs["pads"] = pads if pads is not None else [0] * (2 * len(ks))
        return self.op("Conv", [x, w, b], name, **attrs)

    def dim(self, x: str, axis: int) -> str:
        """Scalar int64 holding x.shape[axis]."""
        shape = self.op("Shape", [x], "shape")
        return self.op("Gather", [shape, self.const(axis, np.int64)], "dim", axis=0)

    def length_mask(self, lengths: str, like: str, axis: int = 1) -> str:
        """Boolean [B, T]: position t < lengths[b], T = like.shape[axis]."""
        t = self.dim(like, axis)
        rng = self.op("Range", [self.const(0, np.int64), t, self.const(1, np.int64)], "positions")
        lens = self.op("Unsqueeze", [lengths, self.const([1], np.int64)], "lengths_col")
        return self.op("Less", [self.op("Unsqueeze", [rng, self.const([0], np.int64)], "positions_row"), lens], "mask")

    def sinusoids(self, like: str, d: int) -> str:
        """[T, d] sinusoidal positions for T = like.shape[1], computed in-graph (any length)."""
        t = self.dim(like, 1)
        pos = self.op("Range", [self.const(0, np.int64), t, self.const(1, np.int64)], "pos")
        pos = self.op("Cast", [pos], "pos_f", to=TensorProto.FLOAT)
        pos = self.op("Unsqueeze", [pos, self.const([1], np.int64)], "pos_col")
        inv = np.exp(-math.log(10000.0) * np.arange(0, d, 2, dtype=np.float64) / d).astype(np.float32)
        ang = self.op("Mul", [pos, self.const(inv[None, :], name="inv_freq")], "angles")
        return self.op("Concat", [self.op("Sin", [ang], "sin"), self.op("Cos", [ang], "cos")], "sinusoids", axis=-1)

    def attention_bias(self, mask: str) -> str:
        """Additive key-padding bias [B, 1, 1, T] from a boolean [B, T] mask."""
        bias = self.op("Where", [mask, self.const(0.0), self.const(-1e9)], "key_bias")
        return self.op("Unsqueeze", [bias, self.const([1, 2], np.int64)], "key_bias_4d")

    def mha(self, x: str, d: int, heads: int, bias: str, name: str) -> str:
        dh = d // heads
        split = self.const([0, 0, heads, dh], np.int64)

        def proj(tag: str, perm: list[int]) -> str:
            y = self.linear(x, d, d, f"{name}.{tag}")
            y = self.op("Reshape", [y, split], f"{name}.{tag}.split")
            return self.op("Transpose", [y], f"{name}.{tag}.t", perm=perm)

        q = proj("q", [0, 2, 1, 3])  # [B, H, T, dh]
        k = proj("k", [0, 2, 3, 1])  # [B, H, dh, T]
        v = proj("v", [0, 2, 1, 3])
        q = self.op("Mul", [q, self.const(1.0 / math.sqrt(dh))], f"{name}.scale")
        scores = self.op("Add", [self.op("MatMul", [q, k], f"{name}.qk"), bias], f"{name}.masked")
        probs = self.op("Softmax", [scores], f"{name}.softmax", axis=-1)
        ctx = self.op("MatMul", [probs, v], f"{name}.ctx")
        ctx = self.op("Transpose", [ctx], f"{name}.ctx.t", perm=[0, 2, 1, 3])
        ctx = self.op("Reshape", [ctx, self.const([0, 0, d], np.int64)], f"{name}.ctx.merge")
        return self.linear(ctx, d, d, f"{name}.out")

    def encoder_layer(self, x: str, d: int, heads: int, ffn: int, bias: str, name: str) -> str:
        """Pre-LN transformer encoder layer: x + MHA(LN(x)); x + FFN(LN(x))."""
        a = self.mha(self.layer_norm(x, d, f"{name}.ln1"), d, heads, bias, f"{name}.attn")
        x = self.op("Add", [x, a], f"{name}.res1")
        h = self.linear(self.layer_norm(x, d, f"{name}.ln2"), d, ffn, f"{name}.ffn1", std=math.sqrt(2.0 / d))
        h = self.op("Relu", [h], f"{name}.relu")
        h = self.linear(h, ffn, d, f"{name}.ffn2")
        return self.op("Add", [x, h], f"{name}.res2")

    # -- finish -----------------------------------------------------------------------------
    def build(self, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto],
              metadata: dict[str, str] | None = None) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, inputs, outputs, initializer=self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="asrtk")
        model.ir_version = IR_VERSION
        for key, value in (metadata or {}).items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(model)
        return model


def param_count(model: onnx.ModelProto) -> int:
    """Learned parameters: every initializer except fixed ``const/`` buffers."""
    return sum(int(np.prod(t.dims)) for t in model.graph.initializer if not t.name.startswith(CONST_PREFIX))
