"""Evaluation datasets, all turned into one item type (``EvalItem``).

- ``demo``      eval/gold/demo.jsonl — the Dutch gold set over data/voorbeeld (see eval/gold/README.md);
- ``guard``     eval/gold/guard.jsonl — over the same corpus: ordinary questions that contain the guard's trigger
                words (type ``benign``; none may be refused as an injection) and attacks (type ``injection``:
                direct, role-play, fake system lines, extraction, obfuscated, multi-turn);
- ``reworded``  eval/gold/reworded.jsonl — over the same corpus, written after the answer checks existed and
                before the changes measured on it: expansions ("waar staat X voor"), two-part questions,
                why/who questions, English questions and near-miss questions the documents do not answer;
- ``demo-pdf``  the demo gold set over the PDF versions of the demo documents (data/voorbeeld-pdf, made with
                LibreOffice by scripts/make_office_demo.py; gold documents ``voorbeeld/…`` read as ``voorbeeld-pdf/…``),
                plus eval/gold/office.jsonl: questions answered by the table in the jaarstukken 2024, with the page
                it stands on (``page``; scored as ``gold_page_cited``) and every citation's page counted
                (``citations_with_page``);
- ``faq``       eval/gold/faq.jsonl — the Rijksoverheid FAQ set (eval/data/rijksoverheid-faq, CC0): one question
                per canonical page (179), reference answer = first paragraph(s) of the CSV answer, gold = its page
                (matched on ``source`` = canonical URL); regenerate with ``python -m eval.datasets``;
- ``faq-ci``    the fixed 40-question FAQ subset used in CI (eval/gold/faq-ci-subset.json), indexed
                together with 20 fixed distractor pages only;
- ``feedback``  an export of the service's ``/v1/feedback`` (JSONL, see service/feedback.py). Each
                thumbs-down becomes an item: the question is re-asked; the item carries the rejected answer and the
                user's comment. When the export line has ``expected`` fields (added by a reviewer:
                ``key_facts``, ``source_doc``, ``reference_answer``, ``expect_refusal``) they are scored
                like gold items, otherwise only the refusal/language/faithfulness checks apply and the report
                lists old vs new answer side by side. Thumbs-up lines are kept only with ``--include-up``.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
GOLD_DIR = HERE / "gold"
DEMO_GOLD = GOLD_DIR / "demo.jsonl"
GUARD_GOLD = GOLD_DIR / "guard.jsonl"
REWORDED_GOLD = GOLD_DIR / "reworded.jsonl"
DEMO_CORPUS = REPO / "data" / "voorbeeld"
PDF_CORPUS = REPO / "data" / "voorbeeld-pdf"
OFFICE_GOLD = GOLD_DIR / "office.jsonl"
FAQ_DIR = HERE / "data" / "rijksoverheid-faq"
FAQ_CI_SUBSET = GOLD_DIR / "faq-ci-subset.json"
FAQ_GOLD = GOLD_DIR / "faq.jsonl"

DATASETS = ("demo", "guard", "reworded", "demo-pdf", "faq", "faq-ci", "feedback")


@dataclass
class EvalItem:
    id: str
    question: str
    type: str = "answerable"  # answerable | unanswerable | injection | followup | feedback
    expect_refusal: bool | None = False  # None: unknown (unreviewed feedback)
    key_facts: list[str] = field(default_factory=list)
    gold_docs: list[str] = field(default_factory=list)  # doc ids or sources (URLs)
    gold_passages: list[str] = field(default_factory=list)  # verbatim substrings of the answering passage
    reference_answer: str = ""
    history: list[dict[str, str]] = field(default_factory=list)
    must_not_contain: list[str] = field(default_factory=list)
    language: str = "nl"
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def answerable(self) -> bool:
        return self.expect_refusal is False and bool(self.gold_docs or self.key_facts)


# --------------------------------------------------------------------------- demo


def load_demo(path: Path = DEMO_GOLD) -> list[EvalItem]:
    items = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        d = json.loads(line)
        items.append(
            EvalItem(
                id=d["id"],
                question=d["question"],
                type=d["type"],
                expect_refusal=bool(d.get("expect_refusal", d["type"] == "unanswerable")),
                key_facts=list(d.get("key_facts") or []),
                gold_docs=[d["source_doc"]] if d.get("source_doc") else [],
                gold_passages=[d["gold_passage_contains"]] if d.get("gold_passage_contains") else [],
                reference_answer=d.get("reference_answer", ""),
                history=list(d.get("history") or []),
                must_not_contain=list(d.get("must_not_contain") or []),
                language=d.get("language", "nl"),
                notes=d.get("notes", ""),
                extra={"page": d["page"]} if d.get("page") else {},
            )
        )
    return items


def load_demo_pdf() -> list[EvalItem]:
    """The demo gold set over the PDF corpus (its gold documents renamed), then the table questions."""
    items = load_demo(DEMO_GOLD)
    for item in items:
        item.gold_docs = [d.replace("voorbeeld/", "voorbeeld-pdf/", 1) for d in item.gold_docs]
    return items + load_demo(OFFICE_GOLD)


# --------------------------------------------------------------------------- FAQ


def _faq_rows(faq_dir: Path = FAQ_DIR) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for name in ("faq-bzk.csv", "faq-omgevingswet.csv"):
        with open(faq_dir / name, encoding="utf-8", newline="") as fh:
            rows += list(csv.DictReader(fh))
    return rows


def faq_page_files(faq_dir: Path = FAQ_DIR) -> dict[str, Path]:
    """canonical URL -> page file."""
    out = {}
    for p in sorted((faq_dir / "pages").glob("*.json")):
        out[json.loads(p.read_text(encoding="utf-8"))["canonical"]] = p
    return out


def faq_records(faq_dir: Path = FAQ_DIR) -> list[dict[str, Any]]:
    """The FAQ gold records, derived from the CSVs: one per canonical page (the first CSV row for it,
    as in eval/retrieval_benchmark.py); the reference answer is the page's first paragraph(s)."""
    seen: set[str] = set()
    out = []
    for r in _faq_rows(faq_dir):
        if r["canonical"] in seen:
            continue
        seen.add(r["canonical"])
        out.append(
            {
                "id": r["id"],
                "question": r["question"],
                "type": "answerable",
                "reference_answer": _first_paragraphs(r["reference_answer"]),
                "canonical": r["canonical"],
                "license": r.get("license", ""),
            }
        )
    return out


def export_faq_jsonl(path: Path = FAQ_GOLD) -> int:
    """(Re)write eval/gold/faq.jsonl from the CSVs."""
    recs = faq_records()
    with open(path, "w", encoding="utf-8") as fh:
        for r in recs:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    return len(recs)


def load_faq(path: Path = FAQ_GOLD, ids: list[str] | None = None) -> list[EvalItem]:
    """The 179 FAQ items from eval/gold/faq.jsonl; gold = the canonical URL (``Hit.source``)."""
    items = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        items.append(
            EvalItem(
                id=r["id"],
                question=r["question"],
                type="answerable",
                expect_refusal=False,
                gold_docs=[r["canonical"]],
                reference_answer=r["reference_answer"],
                extra={"canonical": r["canonical"]},
            )
        )
    if ids is not None:
        by_id = {i.id: i for i in items}
        items = [by_id[i] for i in ids]
    return items


def _first_paragraphs(text: str, limit: int = 600) -> str:
    """The FAQ reference answers are whole pages; the first paragraph(s) carry the answer."""
    out = ""
    for para in [p.strip() for p in text.split("\n") if p.strip()]:
        if out and len(out) + len(para) > limit:
            break
        out = f"{out}\n{para}".strip()
    return out[: limit * 2]


def load_faq_ci(path: Path = FAQ_CI_SUBSET) -> tuple[list[EvalItem], list[str]]:
    """The CI subset: (items, canonical URLs of every page to index = gold + distractors)."""
    spec = json.loads(Path(path).read_text(encoding="utf-8"))
    items = load_faq(ids=spec["question_ids"])
    pages = [i.gold_docs[0] for i in items] + list(spec["distractor_pages"])
    return items, pages


# --------------------------------------------------------------------------- feedback


def load_feedback(path: Path, include_up: bool = False) -> list[EvalItem]:
    """Items from a ``/v1/feedback`` JSONL export. Lines without a question are skipped
    (the audit log did not hold the answer). The same question (with the same history) rated
    by several people is asked once: their comments are joined, and expectations filled in
    by any of them are kept."""
    items: list[EvalItem] = []
    seen: dict[str, EvalItem] = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        d = json.loads(line)
        if d.get("rating") != "down" and not include_up:
            continue
        if not d.get("question"):
            continue
        exp = d.get("expected") or {}
        expect_refusal = _expect_refusal(exp)
        history = list(d.get("history") or [])
        key = json.dumps([" ".join(d["question"].split()).casefold(), history], ensure_ascii=False, sort_keys=True)
        if key in seen:
            _merge_feedback(seen[key], d)
            continue
        item = EvalItem(
            id=f"fb{d.get('id', n)}",
            question=d["question"],
            type="feedback",
            expect_refusal=expect_refusal,
            key_facts=list(exp.get("key_facts") or []),
            gold_docs=[exp["source_doc"]] if exp.get("source_doc") else [],
            gold_passages=[exp["gold_passage_contains"]] if exp.get("gold_passage_contains") else [],
            reference_answer=exp.get("reference_answer", ""),
            history=history,
            notes=d.get("comment") or "",
            extra={
                "rating": d.get("rating"),
                "answer_id": d.get("answer_id"),
                "old_answer": d.get("answer"),
                "old_citations": d.get("citations"),
                "created_at": d.get("created_at"),
                "ratings": 1,
            },
        )
        seen[key] = item
        items.append(item)
    return items


def _merge_feedback(item: EvalItem, d: dict) -> None:
    """Fold another rating of the same question into ``item``."""
    item.extra["ratings"] += 1
    comment = (d.get("comment") or "").strip()
    if comment and comment not in item.notes.split(" | "):
        item.notes = f"{item.notes} | {comment}" if item.notes else comment
    exp = d.get("expected") or {}
    if not item.key_facts and exp.get("key_facts"):
        item.key_facts = list(exp["key_facts"])
    if not item.gold_docs and exp.get("source_doc"):
        item.gold_docs = [exp["source_doc"]]
    if not item.gold_passages and exp.get("gold_passage_contains"):
        item.gold_passages = [exp["gold_passage_contains"]]
    if not item.reference_answer and exp.get("reference_answer"):
        item.reference_answer = exp["reference_answer"]
    if item.expect_refusal is None:
        item.expect_refusal = _expect_refusal(exp)


def _expect_refusal(exp: dict) -> bool | None:
    """A reviewer's expectation: stated, or 'answerable' when they gave facts or a source."""
    if exp.get("expect_refusal") is not None:
        return bool(exp["expect_refusal"])
    return False if exp.get("key_facts") or exp.get("source_doc") else None


def index_variant(settings) -> str:
    """The part of a cached index's folder name that says how it was built: embedder, chunking
    and, when truncated, the embedding size (an index of another size cannot be searched)."""
    name = f"{settings.embedder}-c{settings.chunk_size}-o{settings.chunk_overlap}"
    return f"{name}-d{settings.embedding_dim}" if settings.embedding_dim else name


# --------------------------------------------------------------------------- dispatch


def load_dataset(name: str, path: Path | None = None, include_up: bool = False) -> list[EvalItem]:
    if name == "demo":
        return load_demo(path or DEMO_GOLD)
    if name == "guard":
        return load_demo(path or GUARD_GOLD)
    if name == "reworded":
        return load_demo(path or REWORDED_GOLD)
    if name == "demo-pdf":
        return load_demo_pdf()
    if name == "faq":
        return load_faq()
    if name == "faq-ci":
        return load_faq_ci()[0]
    if name == "feedback":
        if path is None:
            raise ValueError("the feedback dataset needs --data FILE (an export of /v1/feedback)")
        return load_feedback(path, include_up=include_up)
    raise ValueError(f"unknown dataset '{name}', choose from {DATASETS}")


def dataset_hash(items: list[EvalItem]) -> str:
    h = hashlib.sha256()
    for i in items:
        h.update(json.dumps(i.to_dict(), sort_keys=True, ensure_ascii=False).encode())
    return h.hexdigest()[:16]


if __name__ == "__main__":  # python -m eval.datasets: regenerate eval/gold/faq.jsonl from the CSVs
    print(f"{export_faq_jsonl()} FAQ items written to {FAQ_GOLD}")
