"""Export a sentence-transformers BERT encoder (e.g. the bundled all-MiniLM-L6-v2) to ONNX, optionally int8.

    python -m summarizer.onnx_export [--model DIR] --out FILE.onnx [--int8]

Needs torch (it traces the model once); the exported file is then run by onnxruntime without torch. The
service runs this in a child process the first time it needs the file (`make setup` does it ahead of time), so
torch is never imported into the long-running process. The graph returns the last hidden state; mean pooling
and normalisation happen in `summarizer.embedding`, as sentence-transformers does them.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

OPSET = 17


def export(model_dir: str | Path, out: str | Path, *, int8: bool = False) -> Path:
    """Write the ONNX graph of `model_dir`'s transformer to `out` (atomically); int8: dynamic per-channel
    quantization of the MatMul weights."""
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # transformers leaves it unannotated
    base = AutoModel.from_pretrained(str(model_dir), local_files_only=True).eval()

    class HiddenStates(torch.nn.Module):
        """Keyword call: transformers' positional forward arguments change between versions."""

        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor) -> torch.Tensor:
            hidden: torch.Tensor = self.model(input_ids=input_ids, attention_mask=attention_mask,
                                              token_type_ids=token_type_ids).last_hidden_state
            return hidden

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    names = ["input_ids", "attention_mask", "token_type_ids"]
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
        if int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            result = Path(tmp) / "model.int8.onnx"
            # Per-channel MatMul weights only: per-tensor or all-op quantization moved embeddings to cosine ~0.96.
            quantize_dynamic(str(plain), str(result), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul"])
        os.replace(result, out)  # several workers may export at once: the last complete file wins
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; prints the written path."""
    from summarizer.embedding import default_model_path, onnx_file

    parser = argparse.ArgumentParser(prog="python -m summarizer.onnx_export", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="sentence-transformers model directory (default: bundled)")
    parser.add_argument("--out", default=None, help="output file (default: the embedder's cache location)")
    parser.add_argument("--int8", action="store_true", help="dynamic int8 quantization")
    args = parser.parse_args(argv)
    model = Path(args.model) if args.model else default_model_path()
    out = Path(args.out) if args.out else onnx_file(model, "int8" if args.int8 else "fp32")
    print(export(model, out, int8=args.int8))
    return 0


if __name__ == "__main__":
    sys.exit(main())
