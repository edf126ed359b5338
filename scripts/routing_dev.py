"""Check the router's probes on development questions that no measured set asks.

    python scripts/routing_dev.py --index mmrag-data/eval-mixed/<fingerprint> \
        [--eval ../shared/eval] [--json routing-dev.json]

The probes' constants (``router/probe.py``) are checked here, never on the questions of
``mmrag eval mixed``. The index is the mixed set's (the user's material: documents,
photos, videos); the questions are disjoint from the mixed set's:

- ``coco``: COCO captions of the same photos that the mixed set does not ask, in five
  phrasings of our own ("Show me ...", "Is there an image of ...?", a bare caption...);
  right when the route searches ``image``;
- ``title``: the title line of every seventh Cranfield abstract (the abstract is in the
  index); right when the route searches text;
- ``bg``: router-set questions of every label that are neither in the mixed set nor in
  the background sample (``retrieval/data/background.txt``); their material is not in
  the index, so the probes should leave their routes alone: right when the route keeps
  the question's label.

Prints, per set, the share routed right by the router alone and with the probes, and
the corpora searched per question.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from app.pipeline import PipelineConfig, route_question
from app.settings import Settings
from evals.base import service_with
from retrieval.base import Corpus
from retrieval.calibration import background_questions
from router.base import NO_RETRIEVAL

ROOT = Path(__file__).resolve().parents[1]
PHRASINGS = (
    "{}",
    "Show me {}",
    "Is there an image of {}?",
    "picture: {}",
    "Do I have a photo with {}?",
)
PER_LABEL = 60


def dev_questions(eval_dir: Path) -> list[dict[str, str]]:
    """The three development sets (see the module docstring)."""
    mixed = [json.loads(x) for x in (eval_dir / "mixed" / "queries.jsonl").read_text().splitlines()]
    mixed_ids = {m["id"] for m in mixed}
    asked = [m["question"].lower() for m in mixed]
    background = set(background_questions())
    rows: list[dict[str, str]] = []
    labelled = [
        json.loads(x) for x in (eval_dir / "router" / "train.jsonl").read_text().splitlines()
    ]
    rng = random.Random(1)
    for label in ("paragraph", "document", "image", "clip", "video"):
        pool = [
            t
            for t in labelled
            if t["label"] == label
            and t["id"] not in mixed_ids
            and " ".join(t["query"].split()) not in background
        ]
        rng.shuffle(pool)
        rows += [{"set": "bg", "question": t["query"], "label": label} for t in pool[:PER_LABEL]]
    captions = (eval_dir / "images" / "coco" / "captions.jsonl").read_text().splitlines()
    for i, line in enumerate(captions):
        caption = json.loads(line)["caption"].rstrip(" .").lower()
        if any(caption[:40] in q for q in asked):
            continue  # the mixed set asks this caption
        rows.append(
            {
                "set": "coco",
                "question": PHRASINGS[i % len(PHRASINGS)].format(caption),
                "label": "image",
            }
        )
    abstracts = sorted((eval_dir / "text" / "cranfield" / "abstracts").glob("*.txt"))[::7]
    for path in abstracts:
        title = path.read_text(encoding="utf-8").split("\n")[0].strip(" .")
        if len(title.split()) >= 4:
            rows.append({"set": "title", "question": title, "label": "paragraph"})
    return rows


def right(row: dict[str, str], corpora: tuple[Corpus, ...]) -> bool:
    chosen = {c.value for c in corpora}
    if row["set"] == "title":
        return bool(chosen & {"paragraph", "document"})
    if row["label"] == NO_RETRIEVAL:
        return not chosen
    return row["label"] in chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--index", type=Path, required=True, help="an eval-mixed data folder")
    parser.add_argument("--eval", type=Path, default=ROOT.parent / "shared" / "eval")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    service = service_with(Settings(), data_dir=args.index, qdrant_url=None, qdrant_path=None)
    rows = dev_questions(args.eval)
    alone, probed = PipelineConfig(router_probes=False), PipelineConfig(router_probes=True)
    figures: dict[str, dict[str, float]] = {}
    for name in ("coco", "title", "bg"):
        subset = [r for r in rows if r["set"] == name]
        out = {"questions": float(len(subset))}
        for mode, config in (("alone", alone), ("probed", probed)):
            routes = [
                route_question(service.router, service.index, r["question"], config)[0]
                for r in subset
            ]
            out[f"{mode}_right"] = round(
                sum(right(r, x.corpora) for r, x in zip(subset, routes, strict=True)) / len(subset),
                4,
            )
            out[f"{mode}_corpora"] = round(sum(len(x.corpora) for x in routes) / len(subset), 3)
        figures[name] = out
        print(name, out)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    service.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
