"""Export a sentence-transformers encoder (the bundled all-MiniLM-L6-v2, all-mpnet-base-v2) to ONNX, optionally quantized.

    python -m summarizer.onnx_export [--model DIR] [--out FILE.onnx] [--precision w8|fp32|int8]

Precisions: `w8` (the default embedder's): the MatMul weights stored as 8-bit integers in blocks of 32 with one
fp32 scale each (onnxruntime's MatMulNBits) and the token-embedding table in fp16, the arithmetic in fp32: 36 MB
instead of 90, and vectors within cosine 0.9997 of `fp32`. `fp32`: the plain graph. `int8`: dynamic quantization
(weights and activations in int8): faster, but vectors only within cosine ~0.97.

Needs torch (it traces the model once); the exported file is then run by onnxruntime without torch. The
service runs this in a child process the first time it needs the file (`make setup` does it ahead of time), so
torch is never imported into the long-running process. The graph returns the last hidden state; mean pooling
and normalisation happen in `summarizer.embedding`, as sentence-transformers does them.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

OPSET = 17


PRECISIONS = ("w8", "fp32", "int8")
# Weight-only blocks: 32 values share a scale. Measured on 700 real news texts (titles with descriptions and
# full articles): block 32 keeps every vector within cosine 0.99977 of fp32, block 128 within 0.99962;
# MatMulNBits' int8 arithmetic (accuracy_level 4) is ~20% faster but only within 0.99938.
W8_BLOCK = 32


def export(model_dir: str | Path, out: str | Path, *, precision: str = "w8") -> Path:
    """Write the ONNX graph of `model_dir`'s transformer to `out` (atomically), in one of PRECISIONS."""
    if precision not in PRECISIONS:
        raise ValueError(f"export precision must be one of {PRECISIONS}, not {precision!r}")
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # transformers leaves it unannotated
    base = AutoModel.from_pretrained(str(model_dir), local_files_only=True).eval()

    # BERT takes segment ids; MPNet (all-mpnet-base-v2) has none, so its graph has two inputs.
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in inspect.signature(base.forward).parameters:
        names.append("token_type_ids")

    class HiddenStates(torch.nn.Module):
        """Keyword call: transformers' positional forward arguments change between versions."""

        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            hidden: torch.Tensor = self.model(**dict(zip(names, inputs, strict=True))).last_hidden_state
            return hidden

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    dummy = tuple(torch.ones(2, 8, dtype=torch.long) if n != "token_type_ids" else torch.zeros(2, 8, dtype=torch.long)
                  for n in names)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        plain = Path(tmp) / "model.onnx"
        # The tracer's warnings concern causal masks and cache lengths, which this encoder does not use.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(HiddenStates(base), dummy, str(plain), input_names=names,
                              output_names=["last_hidden_state"], opset_version=OPSET, dynamo=False,
                              dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]})
        result = plain
        if precision == "w8":
            import logging

            import onnx
            from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

            logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
            result = Path(tmp) / "model.w8.onnx"
            model = onnx.load(str(plain))
            fp16_lookup_tables(model)
            quantizer = MatMulNBitsQuantizer(model, bits=8, block_size=W8_BLOCK, is_symmetric=True,
                                             op_types_to_quantize=("MatMul",))
            quantizer.process()
            quantizer.model.save_model_to_file(str(result), False)
        elif precision == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            result = Path(tmp) / "model.int8.onnx"
            # Per-channel MatMul weights only: per-tensor or all-op quantization moved embeddings to cosine ~0.96.
            quantize_dynamic(str(plain), str(result), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul"])
        os.replace(result, out)  # several workers may export at once: the last complete file wins
    return out


def fp16_lookup_tables(model: Any, min_bytes: int = 1 << 20) -> list[str]:
    """Store each large fp32 table that a Gather reads rows from (the token embeddings: 30,522 x 384, 47 MB)
    in fp16, and cast the rows it looks up back to fp32; returns the tables' names.

    Weight-only int8 exists for Gather only as 4-bit blocks (GatherBlockQuantized), which moved vectors to
    cosine 0.988; fp16 rows move them by less than the 8-bit MatMul weights do (the minimum over 700 news
    texts stays 0.99977). onnxconverter-common's float16 converter would also round the graph's fp32
    constants to fp16 (it truncated 8e-09 to 1e-07), so only these tables are touched here.
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    tables = {init.name: init for init in graph.initializer
              if init.data_type == TensorProto.FLOAT and len(init.dims) == 2
              and int(np.prod(init.dims)) * 4 >= min_bytes}
    done: list[str] = []
    for node in list(graph.node):
        if node.op_type != "Gather" or node.input[0] not in tables:
            continue
        name = node.input[0]
        init = tables.pop(name)
        graph.initializer.remove(init)
        graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16),
                                                         f"{name}_fp16"))
        rows = node.output[0]
        node.input[0], node.output[0] = f"{name}_fp16", f"{rows}_fp16"
        index = list(graph.node).index(node)
        graph.node.insert(index + 1, helper.make_node("Cast", [f"{rows}_fp16"], [rows], to=TensorProto.FLOAT,
                                                      name=f"{node.name}_to_fp32"))
        done.append(name)
    return done


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; prints the written path."""
    from summarizer.embedding import default_model_path, onnx_file

    parser = argparse.ArgumentParser(prog="python -m summarizer.onnx_export", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="sentence-transformers model directory (default: bundled)")
    parser.add_argument("--out", default=None, help="output file (default: the embedder's cache location)")
    parser.add_argument("--precision", choices=PRECISIONS, default="w8",
                        help="w8: 8-bit weights, fp32 arithmetic (the default embedder's); fp32; int8: dynamic")
    parser.add_argument("--int8", action="store_true", help="the same as --precision int8")
    args = parser.parse_args(argv)
    precision = "int8" if args.int8 else args.precision
    model = Path(args.model) if args.model else default_model_path()
    out = Path(args.out) if args.out else onnx_file(model, precision)
    print(export(model, out, precision=precision))
    return 0


if __name__ == "__main__":
    sys.exit(main())
