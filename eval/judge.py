"""Optional LLM-as-judge, through the same backend interface as the answers (rag.llm).

By default the answer model judges itself (weak: a 1.5B model); point it at a stronger model on
an OpenAI-compatible server with::

    python -m eval run --dataset demo --judge --judge-backend openai \
        --judge-base-url http://gpu-host:8000/v1 --judge-model Qwen2.5-32B-Instruct

(the API key, if any, comes from ``$VRAAGBAAK_JUDGE_API_KEY``). Judge scores are reported apart from
the deterministic metrics (``judge_correctness``, ``judge_groundedness``, each 0–1 = (score-1)/4).
"""

from __future__ import annotations

import os
import re
from typing import Any

from pydantic import SecretStr

JUDGE_PROMPT = """Je bent een strenge beoordelaar van antwoorden van een vraagbaak van de gemeente.

Vraag: {question}

Referentieantwoord: {reference}

Bronfragmenten die het antwoord citeert:
{sources}

Te beoordelen antwoord: {answer}

Beoordeel twee dingen met een cijfer van 1 (slecht) tot 5 (uitstekend):
- JUISTHEID: komt het antwoord inhoudelijk overeen met het referentieantwoord? (Als het referentieantwoord
  zegt dat de informatie ontbreekt, is een weigering juist.)
- ONDERBOUWING: staat alles wat het antwoord beweert in de bronfragmenten?

Antwoord precies in deze vorm en niets anders:
JUISTHEID: <1-5>
ONDERBOUWING: <1-5>
TOELICHTING: <één korte zin>"""

_SCORE = {
    "correctness": re.compile(r"JUISTHEID\s*[:=]\s*([1-5])", re.I),
    "groundedness": re.compile(r"ONDERBOUWING\s*[:=]\s*([1-5])", re.I),
}
_WHY = re.compile(r"TOELICHTING\s*[:=]\s*(.+)", re.I)


def build_prompt(question: str, reference: str, answer: str, sources: list[str]) -> str:
    src = "\n".join(f"[{i}] {s[:700]}" for i, s in enumerate(sources, start=1)) or "(geen)"
    return JUDGE_PROMPT.format(question=question, reference=reference or "(geen)", answer=answer, sources=src)


def parse_verdict(text: str) -> dict[str, Any]:
    """Scores normalised to 0–1 ((s-1)/4); None when the judge did not give one."""
    out: dict[str, Any] = {"raw": text.strip()[:500]}
    for k, rx in _SCORE.items():
        m = rx.search(text)
        out[k] = (int(m.group(1)) - 1) / 4 if m else None
    m = _WHY.search(text)
    out["why"] = m.group(1).strip()[:300] if m else ""
    return out


def judge_answer(llm, question: str, reference: str, answer, max_tokens: int = 80) -> dict[str, Any]:
    from rag.llm import GenerationParams, complete

    sources = [c.snippet for c in answer.citations]
    prompt = build_prompt(question, reference, answer.answer, sources)
    text = complete(
        llm, [{"role": "user", "content": prompt}], GenerationParams(max_tokens=max_tokens, temperature=0.0)
    )
    verdict = parse_verdict(text)
    verdict["judge_model"] = getattr(llm, "model_id", "?")
    return verdict


def make_judge(cfg, settings, answer_llm=None):
    """A callable (item, answer) -> verdict dict, using the configured judge backend."""
    if cfg.judge_backend or cfg.judge_base_url or cfg.judge_model:
        from rag.llm import load_llm

        update: dict[str, Any] = {}
        if cfg.judge_backend:
            update["llm_backend"] = cfg.judge_backend
        if cfg.judge_base_url:
            update["llm_base_url"] = cfg.judge_base_url
        if cfg.judge_model:
            update["llm_model_name"] = cfg.judge_model
            if (cfg.judge_backend or settings.llm_backend) != "openai":
                update["llm"] = cfg.judge_model
        key = os.environ.get(cfg.judge_api_key_env)
        if key:
            update["llm_api_key"] = SecretStr(key)  # model_copy does not validate
        llm = load_llm(settings.model_copy(update=update))
    else:
        llm = answer_llm
    if llm is None:
        raise ValueError("no judge model: give --judge-backend/--judge-base-url or run with answers")

    def judge(item, answer):
        return judge_answer(llm, item.question, item.reference_answer, answer)

    return judge
