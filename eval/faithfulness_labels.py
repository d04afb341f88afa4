"""Hand labels for the faithfulness metric: does the eval grade itself?

``eval/metrics.py`` scores faithfulness with token containment and the pipeline's number
normaliser — close to what the pipeline's own attribution uses to filter sentences, so a high
score could be the pipeline agreeing with itself. ``eval/gold/faithfulness-labels.jsonl`` holds
(answer sentence, cited passage) pairs from real runs, each read by a person and labelled
``supported`` (the passage states what the sentence says, same meaning, no added claim) or not.
This module extracts the pairs of a run and reports how far the metric agrees with the labels.

    python -m eval.faithfulness_labels extract eval/runs/<run> --out pairs.jsonl   # to label
    python -m eval.faithfulness_labels agreement                                   # the report
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import metrics as M

LABELS = Path(__file__).resolve().parent / "gold" / "faithfulness-labels.jsonl"


def shown_passage(citation: dict[str, Any]) -> str:
    """The passage as the model saw it and as ``eval/run.py`` scores it: title, section, text."""
    return "\n".join(x for x in (citation.get("title"), citation.get("section"), citation.get("snippet")) if x)


def pairs_from_run(run_dir: Path) -> list[dict[str, Any]]:
    """Every (sentence, cited passage) pair of the answered questions of a run."""
    out = []
    for line in (Path(run_dir) / "results.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        answer = row.get("answer") or {}
        if not answer or answer.get("refused"):
            continue
        cites = {c["marker"]: c for c in answer.get("citations", [])}
        for sentence in M.split_answer_sentences(answer["text"]):
            for marker in M.markers(sentence):
                if marker in cites:
                    out.append(
                        {
                            "run": Path(run_dir).name,
                            "id": row["id"],
                            "question": row["question"],
                            "sentence": M.strip_markers(sentence),
                            "marker": marker,
                            "passage": shown_passage(cites[marker]),
                        }
                    )
    return out


@dataclass
class Agreement:
    n: int
    agree: int
    labelled_unsupported: int
    metric_unsupported: int
    both_unsupported: int

    @property
    def rate(self) -> float:
        return self.agree / self.n if self.n else 0.0

    @property
    def kappa(self) -> float:
        """Cohen's kappa of the two raters (the metric and the person)."""
        if not self.n:
            return 0.0
        p_label = self.labelled_unsupported / self.n
        p_metric = self.metric_unsupported / self.n
        expected = p_label * p_metric + (1 - p_label) * (1 - p_metric)
        return (self.rate - expected) / (1 - expected) if expected < 1 else 1.0

    @property
    def recall_unsupported(self) -> float | None:
        """Of the sentences a person found unsupported, the share the metric flags."""
        return self.both_unsupported / self.labelled_unsupported if self.labelled_unsupported else None

    @property
    def precision_unsupported(self) -> float | None:
        """Of the sentences the metric flags, the share a person found unsupported."""
        return self.both_unsupported / self.metric_unsupported if self.metric_unsupported else None


def agreement(labels: Iterable[dict[str, Any]], threshold: float = 0.6) -> tuple[Agreement, list[dict[str, Any]]]:
    """The metric's verdict per labelled pair against the label; also the disagreements."""
    n = agree = lab_u = met_u = both_u = 0
    disagreements = []
    for pair in labels:
        supported, share, reason = M.sentence_support(pair["sentence"], pair["passage"], threshold)
        label = bool(pair["supported"])
        n += 1
        agree += supported == label
        lab_u += not label
        met_u += not supported
        both_u += (not label) and (not supported)
        if supported != label:
            disagreements.append({**pair, "metric": supported, "share": round(share, 3), "reason": reason})
    return Agreement(n, agree, lab_u, met_u, both_u), disagreements


def load_labels(path: Path = LABELS) -> list[dict[str, Any]]:
    return [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines() if x.strip()]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m eval.faithfulness_labels", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("extract", help="the (sentence, passage) pairs of a run, to label")
    ex.add_argument("run_dir", type=Path)
    ex.add_argument("--out", type=Path, required=True)
    ag = sub.add_parser("agreement", help="the metric against the hand labels")
    ag.add_argument("--labels", type=Path, default=LABELS)
    args = ap.parse_args(argv)
    if args.cmd == "extract":
        pairs = pairs_from_run(args.run_dir)
        with args.out.open("w", encoding="utf-8") as f:
            for p in pairs:
                f.write(json.dumps(p, ensure_ascii=False) + "\n")
        print(f"{len(pairs)} pairs written to {args.out}")
        return
    a, dis = agreement(load_labels(args.labels))
    print(f"pairs: {a.n}   labelled unsupported: {a.labelled_unsupported}   metric unsupported: {a.metric_unsupported}")
    print(f"agreement: {a.rate:.3f}   Cohen's kappa: {a.kappa:.3f}")
    print(f"metric recall of unsupported: {a.recall_unsupported}   precision: {a.precision_unsupported}")
    for d in dis:
        verdict = "metric: supported, label: not" if d["metric"] else "metric: not, label: supported"
        print(f"- {d['id']} ({verdict}, share {d['share']}): {d['sentence'][:140]}")


if __name__ == "__main__":
    main()
