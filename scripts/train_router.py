"""Fit the trained router on the labelled questions and write the shipped weights.

    python scripts/train_router.py [--data ../shared/eval/router/train.jsonl]
        [--phrasings scripts/router_phrasings.jsonl | --no-phrasings]
        [--out router/model] [--seed 0] [--cv 5]

The labelled questions come from benchmarks (MMLU, SQuAD/NQ, HotpotQA, WebQA, LVBench,
VideoRAG), so they are all phrased as exam or trivia questions: none of them says
"show me a picture of ...", "how do I ...", "summarise the video" or "hello". A model
fitted on them alone sends such requests to ``paragraph`` or ``no``. The 145 hand-written
phrasings in ``scripts/router_phrasings.jsonl`` (written for this purpose, not drawn from
any evaluation data: 15 per label first, then 55 requests that name their modality,
"a photo of ...", "the part of the recording where ...", and subject questions from
several fields, because a question that says "photo" means a photo whatever the
benchmarks' labels did) teach those forms; they join every training fold of
the cross-validation and are never scored, so the figures printed are on the
benchmark questions alone.

Deterministic: the same data and seed give the same weights (scikit-learn's lbfgs
logistic regression and seeded stratified folds). Prints the k-fold cross-validation of
the recipe and of the TF-IDF + logistic regression baseline first (``--cv 0`` skips it),
then fits on all rows and records the scores, the data's sha256 and the seed in
``router/model/router.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

from evals.router import LabelledQuestion, cross_validate, load_labelled
from retrieval.encoders import SentenceTransformerEncoder
from router.trained import embed_questions, fit

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "eval" / "router" / "train.jsonl"
DEFAULT_PHRASINGS = ROOT / "scripts" / "router_phrasings.jsonl"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--phrasings", type=Path, default=DEFAULT_PHRASINGS)
    parser.add_argument("--no-phrasings", action="store_true", help="benchmark rows only")
    parser.add_argument("--out", type=Path, default=ROOT / "router" / "model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cv", type=int, default=5, help="folds; 0 skips cross-validation")
    args = parser.parse_args(argv)

    rows = load_labelled(args.data)
    extra: list[LabelledQuestion] = [] if args.no_phrasings else load_labelled(args.phrasings)
    encoder = SentenceTransformerEncoder()
    info: dict[str, object] = {
        "data": args.data.name,
        "data_sha256": _sha256(args.data),
        "rows": len(rows),
        "phrasings": 0 if args.no_phrasings else len(extra),
        "phrasings_sha256": None if args.no_phrasings else _sha256(args.phrasings),
        "seed": args.seed,
    }
    if args.cv:
        start = time.perf_counter()
        cv = cross_validate(rows, encoder, k=args.cv, seed=args.seed, extra=extra)
        took = time.perf_counter() - start
        print(
            f"{args.cv}-fold cross-validation on {len(rows)} rows, seed {args.seed} ({took:.0f} s)"
        )
        for name, m in cv.methods.items():
            print(f"  {name:<14} accuracy {m.accuracy:.4f}  macro-F1 {m.macro_f1:.4f}")
        print(
            f"  routes: true label included {cv.routes.hit_rate:.4f}, "
            f"{cv.routes.mean_corpora:.3f} corpora per question"
        )
        u = cv.unsure
        print(
            f"  unsure (top < {u.below}): {u.share:.1%} of questions, accuracy "
            f"{u.accuracy_unsure:.3f} there and {u.accuracy_sure:.3f} elsewhere"
        )
        trained = cv.methods["trained"]
        print("  confusion (rows true, columns predicted):", " ".join(trained.labels))
        for label, row in zip(trained.labels, trained.confusion, strict=True):
            print(f"    {label:<10}" + "".join(f"{v:>6}" for v in row))
        info["cv"] = cv.to_dict()
    questions = [r.query for r in rows] + [r.query for r in extra]
    weights = fit(
        questions,
        [r.label for r in rows] + [r.label for r in extra],
        embed_questions(encoder, questions),
        encoder_name=encoder.info.name,
        seed=args.seed,
        info=info,
    )
    files = weights.save(args.out)
    print("thresholds:", json.dumps(dict(weights.thresholds)))
    for path in files:
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
