"""Measuring mmrag: the ``mmrag eval`` and ``mmrag bench`` runs, one module per job.

- ``metrics``: every measure, defined once (nDCG, recall, MRR, success@k, nearest-rank
  percentiles, accuracy/F1/confusion);
- ``base``: :class:`~evals.base.Report`, what a run hands to the command line;
- ``retrieval``: text retrieval quality on Cranfield-style data (``eval text``);
- ``images``: text<->image retrieval by the text an image is indexed by (``eval images``);
- ``router``: routers scored and cross-validated against labelled questions (``eval router``);
- ``grounding``: answers over given clean, noisy and counterfactual passages (``eval grounding``);
- ``documents``: FinanceBench end to end, evidence pages and answers (``eval documents``);
- ``mixed``: one index of every kind of source, routed vs all corpora vs the oracle route
  (``eval mixed``);
- ``injection``: hostile documents in a fresh index, answers that obey (``eval injection``);
- ``bench``: ingest, retrieval, media and OCR speed (``bench ingest|retrieval|media|ocr``);
- ``crash``: ingests killed at seeded points, then healed (``bench crash``).

Evaluation sits above the app's composition root and below its surfaces: it may build a
:class:`app.service.Service`, and nothing that serves users imports it (the
import-linter contract in pyproject.toml). Heavy parts (scikit-learn, bm25s, models) are
imported inside the functions that need them.
"""
