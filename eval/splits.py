"""Frozen tune/test splits of the gold sets.

Every gold question belongs to one split, decided by a hash of its id (a third of the questions
are ``test``): fixed for ever, the same on every machine, and for a question added later too.
Rules, thresholds and prompts are tuned on ``tune`` only; ``test`` is reported beside it and
never looked at question by question while tuning (``eval run --split tune`` runs only the
tuning questions). ``eval/gold/splits.json`` records the test ids of each gold file as they are
today, so that a change of the rule cannot move a question silently (tests/test_eval_gold.py).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

SALT = "vraagbaak-split-v1"
SPLITS = ("tune", "test")
FROZEN_FILE = Path(__file__).resolve().parent / "gold" / "splits.json"


def split_of(item_id: str) -> str:
    digest = hashlib.sha256(f"{SALT}:{item_id}".encode()).hexdigest()
    return "test" if int(digest[:8], 16) % 3 == 0 else "tune"


def frozen_test_ids() -> dict[str, list[str]]:
    return json.loads(FROZEN_FILE.read_text(encoding="utf-8"))
