"""What serves users loads nothing that only evaluation or training needs.

The import-linter contract in pyproject.toml (``lint-imports``) keeps ``evals`` out of
every runtime module by static analysis; this checks the same from the other side, in
a fresh interpreter, for the third-party parts too: scikit-learn (fitting the router),
trec_eval (checking the metrics).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EVALUATION_ONLY = ("evals", "sklearn", "pytrec_eval")


def test_serving_modules_import_no_evaluation_or_training_code() -> None:
    code = (
        "import json, sys\n"
        "import app.api, app.cli, app.pipeline, app.service, app.settings, app.ui\n"
        "import generation, ingest.pipeline, retrieval, router\n"
        f"top = {EVALUATION_ONLY!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in top)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
