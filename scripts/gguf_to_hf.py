"""Dequantise a GGUF chat model into a Hugging Face folder that vLLM can serve.

Run with the vLLM venv's python (scripts/vllm_cpu.sh setup does): transformers reads
the GGUF (``gguf_file=``), and the folder is written with ``save_pretrained``. The
quantisation note transformers leaves in the config is dropped: the weights are
already plain tensors, and vLLM would otherwise look for a GGUF quantisation method.

    python scripts/gguf_to_hf.py MODEL.gguf OUT_FOLDER
"""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit("usage: gguf_to_hf.py MODEL.gguf OUT_FOLDER")
    gguf, out = Path(sys.argv[1]), Path(sys.argv[2])
    if not gguf.is_file():
        raise SystemExit(f"no GGUF at {gguf}")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, torch_dtype=torch.bfloat16
    )
    # Dequantised on load: forget the GGUF quantiser so the tensors save as they are.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    partial = out.with_name(out.name + ".partial")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(out)  # only a complete folder ever sits at OUT_FOLDER
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
