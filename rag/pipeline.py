"""The answer pipeline: retrieve → build context → generate → attribute.

    pipeline = Pipeline.from_settings(Settings())
    for event in pipeline.stream("Hoeveel kost ...?"):   # SourcesEvent, TokenEvent…, DoneEvent
        ...
    answer = pipeline.ask("Hoeveel kost ...?")           # the same, collected

Each step is a small function with typed input and output; this module only wires them.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .checks import CheckedQuestion, Draft, Refuse, build_checks, expansion_in, run_checks
from .cite import annotate
from .evidence import (
    Evidence,
    SentenceScorer,
    best_quote,
    expected_kind,
    focus,
    part_evidence,
    rank_by_meaning,
    rank_evidence,
    weak_words,
)
from .guard import check_question, strip_instructions
from .language import detect_language
from .llm import GenerationParams, LLMBackend, complete, load_llm
from .prompts import PromptSet
from .recency import label_sources, order_by_year, reorders
from .retrieve import Filters, Retriever, SearchResult
from .schema import Answer, Citation, DoneEvent, Event, ModelInfo, SourcesEvent, Timings, TokenEvent, Turn
from .settings import Settings
from .text.acronyms import asked_abbreviation, expansion_sentence, find_expansion
from .text.idf import IdfFn, uniform_idf
from .text.names import names_in
from .text.sentences import split_sentences
from .types import Chunk, Hit, Passage, Question
from .units import expand_hits

_WORDS = re.compile(r"\w+", re.UNICODE)
log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- steps


@dataclass
class Context:
    """The passages given to the model, numbered from 1, and the chat messages.

    ``passages`` are the whole retrieved passages (what citations show and attribution
    checks against); the messages may hold them focused to their best sentences."""

    hits: list[Hit]
    passages: list[Passage]
    messages: list[dict[str, str]]
    question: Question = Question("")
    # the passages' sentences ranked against the question, once per question (focus and quote)
    evidence: list[Evidence] | None = None
    # each part of a two-part question with its best sentence, once per question (focus and checks)
    parts: list[tuple[str, Evidence]] | None = None


def build_context(
    question: Question | str,
    hits: Sequence[Hit],
    prompts: PromptSet,
    count_tokens: Callable[[str], int],
    budget_tokens: int,
) -> Context:
    """Number the passages and fit them into the token budget (best first; a passage that
    does not fit is cut at a sentence boundary, the rest is left out)."""
    question = Question.of(question)
    chosen: list[Hit] = []
    passages: list[Passage] = []
    used = 0
    for hit in hits:
        text = hit.text
        cost = count_tokens(text) + 12
        if used + cost > budget_tokens:
            room = budget_tokens - used - 12
            if room < 60 or passages:
                break
            text = _cut_to_tokens(text, room, count_tokens)
            cost = room + 12
        # a passage is data: a clause in it that addresses the assistant is not passed on
        # (rag/guard.py), nor in its title or headings (a PDF's metadata title, a heading)
        text = strip_instructions(text)
        title = strip_instructions(hit.title) or hit.doc_id.rsplit("/", 1)[-1]  # a title that was all instruction
        section = " › ".join(h for h in (strip_instructions(h) for h in hit.heading_path) if h)
        passages.append(Passage(marker=len(passages) + 1, text=text, title=title, section=section))
        chosen.append(hit)
        used += cost
    return Context(
        hits=chosen, passages=passages, messages=chat_messages(prompts, passages, question), question=question
    )


def chat_messages(prompts: PromptSet, passages: Sequence[Passage], question: Question | str) -> list[dict[str, str]]:
    """System prompt and few-shot examples first (fixed, so their KV cache is reused), then
    the numbered passages and the question (with the earlier one a follow-up leans on)."""
    question = Question.of(question)
    dutch = detect_language(question.text) in ("nl", None)
    user = prompts.context([p.__dict__ for p in passages], question.with_earlier, dutch=dutch)
    return [
        {"role": "system", "content": prompts.system()},
        *prompts.few_shot_messages(),
        {"role": "user", "content": user},
    ]


def focus_context(
    ctx: Context,
    prompts: PromptSet,
    idf: IdfFn,
    max_sentences: int,
    unit_chars: int = 0,
    meaning: SentenceScorer | None = None,
    meaning_below: float = 0.0,
) -> Context:
    """Context compression: each passage cut to the sentences that cover the question best
    (with the sentences that belong to the best one, up to ``unit_chars``). With ``meaning``, a
    question that is not in Dutch, or whose words no sentence covers ``meaning_below`` of, has
    the sentences ranked by meaning too (the embedder's similarity)."""
    evidence = rank_evidence(ctx.question.with_earlier, ctx.passages, idf)
    if meaning is not None and (
        weak_words(evidence, meaning_below) or detect_language(ctx.question.text) not in ("nl", None)
    ):
        evidence = rank_by_meaning(ctx.question.text, evidence, meaning)
    # a two-part question: the sentence that answers each part stays in view too
    parts = part_evidence(ctx.question.text, ctx.passages, idf)
    also: dict[int, list[int]] = {}
    for _, e in parts:
        also.setdefault(e.marker, []).append(e.position)
    shown = [focus(p, evidence, max_sentences, unit_chars, also.get(p.marker, ())) for p in ctx.passages]
    return Context(
        hits=ctx.hits,
        passages=ctx.passages,
        messages=chat_messages(prompts, shown, ctx.question),
        question=ctx.question,
        evidence=evidence,
        parts=parts,
    )


def _cut_to_tokens(text: str, room: int, count_tokens: Callable[[str], int]) -> str:
    out = ""
    for s in split_sentences(text):
        cand = f"{out} {s}".strip()
        if count_tokens(cand) > room:
            break
        out = cand
    return out or text[: room * 3]


def is_rewrite(text: str, question: str) -> bool:
    """Is ``text`` a usable standalone rewrite of ``question``: one question (it asks
    something), not the follow-up itself, not an essay?"""
    if not text or len(text) > 400 or text.count("?") != 1:
        return False  # none: an answer, not a question; two: the earlier question joined to it
    a = " ".join(_WORDS.findall(text.lower()))
    b = " ".join(_WORDS.findall(question.lower()))
    return a != b


def rewrite_follow_up(llm: LLMBackend, prompts: PromptSet, question: str, history: Sequence[Turn]) -> str | None:
    """The follow-up ``question`` rewritten to stand alone (prompts/condense*.md: the fixed
    instruction and worked examples, then the conversation), or None when the model's text is
    not a usable rewrite (``is_rewrite``)."""
    messages = prompts.condense_messages([t.model_dump() for t in history], question)
    params = GenerationParams(max_tokens=64, temperature=0.0, stop=["\n"])
    text = "".join(llm.stream_chat(messages, params)).strip().strip('"').strip()
    return text if is_rewrite(text, question) else None


def within_margin(hits: Sequence[Hit], margin: float) -> list[Hit]:
    """The hits whose dense score is within ``margin`` of the best, in their order, and those
    from the same documents; the first hit always (it may have been put first by a rule, as a
    defining passage or the named year's is). Hits without a dense score are kept."""
    scores = [h.dense_score for h in hits if h.dense_score is not None]
    if margin <= 0 or not scores:
        return list(hits)
    floor = max(scores) - margin
    near = [i == 0 or h.dense_score is None or h.dense_score >= floor for i, h in enumerate(hits)]
    docs = {h.doc_id for h, ok in zip(hits, near) if ok}
    return [h for h, ok in zip(hits, near) if ok or h.doc_id in docs]


def names_what_it_asks(question: Question, hits: Sequence[Hit]) -> bool:
    """Does one retrieved passage name what the question names: the abbreviation it asks about
    ("Waar staat SES voor?"), or every name in it ("Wat houdt Druk en Dwars in?")? A question
    of a few letters or about a project's name embeds poorly (its dense score stays under the
    refusal threshold, in English all the more), but a passage that names it may answer it;
    if none does, the model and the answer checks refuse all the same."""
    short = asked_abbreviation(question.text)
    if short is not None:
        return any(re.search(rf"\b{re.escape(short)}\b", h.text) for h in hits)
    names = names_in(question.text, all_caps=True)
    return bool(names) and any(all(re.search(rf"\b{re.escape(n)}\b", h.text, re.I) for n in names) for h in hits)


def cited_quote(text: str, marker: int = 1) -> str:
    """A quoted passage text with its marker after every sentence ("… plekken [1]. Hiermee …
    [1]."): each sentence of an answer shows where it stands. A question that opens a quote
    ("Bent u het niet eens …?") is no claim and gets none."""
    out = []
    for sentence in split_sentences(text):
        if sentence.endswith("?"):
            out.append(sentence)
            continue
        body, tail = (sentence[:-1], sentence[-1]) if sentence[-1:] in ".!:;" else (sentence, ".")
        out.append(f"{body.rstrip()} [{marker}]{tail}")
    return " ".join(out)


def quoted(event: DoneEvent, reason: str) -> DoneEvent:
    """Mark an answer as a literal passage text that stands in for a refused model answer."""
    event.answer.quoted = True
    event.answer.quote_reason = reason
    return event


def to_citation(marker: int, hit: Hit) -> Citation:
    return Citation(
        marker=marker,
        doc_id=hit.doc_id,
        title=hit.title,
        source=hit.source,
        section=hit.section,
        page=hit.page,
        page_end=hit.page_end if hit.page_end != hit.page else None,
        snippet=hit.text,
        score=round(float(hit.dense_score if hit.dense_score is not None else hit.score), 4),
        chunk_id=hit.chunk_id,
        doc_type=hit.doc_type,
        date=hit.date,
        year=hit.year,
    )


# --------------------------------------------------------------------------- pipeline


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        retriever: Retriever,
        llm: LLMBackend,
        prompts: PromptSet | None = None,
    ) -> None:
        self.settings = settings
        self.retriever = retriever
        self.llm = llm
        self.prompts = prompts or PromptSet(settings.prompts_dir)
        self.checks = build_checks(settings)
        self._fixed_tokens: dict[str, int] = {}  # the fixed messages' token counts (prompt_tokens)

    @classmethod
    def from_settings(cls, settings: Settings) -> Pipeline:
        from .embed import load_embedder

        retriever = Retriever(settings, load_embedder(settings))
        return cls(settings, retriever, load_llm(settings))

    @property
    def model_info(self) -> ModelInfo:
        return ModelInfo(llm=self.llm.model_id, embedder=self.retriever.embedder.model_id)

    # -- follow-ups ----------------------------------------------------------------
    def bounded_history(self, history: Sequence[Turn] | None) -> list[Turn]:
        """The latest turns within the settings' bounds. The client sends the history, so its
        turns (assistant turns too) get the question's guard: a role-play set up two turns ago
        reaches the model no more than one in the question."""
        turns = [
            Turn(role=t.role, content=strip_instructions(t.content))
            for t in list(history or [])[-self.settings.history_max_turns :]
        ]
        out: list[Turn] = []
        used = 0
        for t in reversed(turns):
            cost = self.llm.count_tokens(t.content)
            if used + cost > self.settings.history_max_tokens:
                break
            out.insert(0, t)
            used += cost
        return out

    def condense(self, question: str, history: Sequence[Turn]) -> Question:
        """Rewrite a follow-up into a standalone question (one short LLM call)."""
        text = rewrite_follow_up(self.llm, self.prompts, question, history)
        last_user = next((t.content for t in reversed(history) if t.role == "user"), "")
        if text is None:
            # the small model sometimes answers instead of rewriting, or echoes the
            # follow-up: search and answer with the follow-up first and the previous
            # question beside it, so the model answers the follow-up, not the old question
            return Question(question, earlier=last_user)
        # the rewrite may have copied details from the answer or dropped a word: the follow-up
        # as asked, with its earlier question, is searched too
        return Question(text, also=Question(question, earlier=last_user).with_earlier if last_user else "")

    def search(self, standalone: Question | str, top_k: int, filters: Filters | None) -> SearchResult:
        """Retrieve for the (standalone) question. A follow-up that could not be rewritten
        is searched twice, alone and with its earlier question, and the best passages of
        both are kept: "En voor jeugdhulp?" needs the earlier question, "Was dat
        unaniem?" cannot do without it. A rewritten follow-up is searched as rewritten and
        as asked with its earlier question (``Question.also``), the best passages of both kept."""
        standalone = Question.of(standalone)
        result = self.retriever.search(standalone.with_earlier, top_k=top_k, filters=filters)
        other = standalone.text if standalone.earlier else standalone.also
        if not other:
            return result
        alone = self.retriever.search(other, top_k=top_k, filters=filters)
        best: dict[int, Hit] = {}
        for h in [*result.hits, *alone.hits]:
            if h.chunk_id not in best or h.score > best[h.chunk_id].score:
                best[h.chunk_id] = h
        hits = sorted(best.values(), key=lambda h: -h.score)[:top_k]
        for r, h in enumerate(hits, start=1):
            h.rank = r
        return SearchResult(
            query=standalone.with_earlier, hits=hits, timings=result.timings, generation=result.generation
        )

    def definition_first(self, result: SearchResult, question: Question, filters: Filters | None) -> SearchResult:
        """'Waar staat SES voor?': when no retrieved passage defines the abbreviation the question
        asks about, the passage that does (found by its letters, BM25 under the same filters)
        comes first. Dense search ranks a few capitals poorly, in English all the more."""
        short = asked_abbreviation(question.text)
        if short is None or any(find_expansion(short, h.text) for h in result.hits):
            return result
        lexical = self.retriever.search(short, top_k=self.settings.candidates, filters=filters, fusion="bm25")
        defining = next((h for h in lexical.hits if find_expansion(short, h.text)), None)
        if defining is None:
            return result
        hits = [defining, *(h for h in result.hits if h.chunk_id != defining.chunk_id)][: max(len(result.hits), 1)]
        for r, h in enumerate(hits, start=1):
            h.rank = r
        return SearchResult(query=result.query, hits=hits, timings=result.timings, generation=result.generation)

    def prompt_tokens(self, messages: Sequence[dict[str, str]]) -> int:
        """The tokens of an answer prompt's messages: the fixed ones (system prompt, worked
        examples, the same for every question) counted once, the last one each time."""
        *fixed, last = messages
        n = 0
        for m in fixed:
            content = m["content"]
            if content not in self._fixed_tokens:
                self._fixed_tokens[content] = self.llm.count_tokens(content)
            n += self._fixed_tokens[content]
        return n + self.llm.count_tokens(last["content"])

    def warm_up(self) -> float | None:
        """Evaluate the fixed parts of the answer prompt and of the follow-up rewrite once (one
        token each), so that a backend which keeps their computation (``keeps_prefix``:
        llama_cpp) has it before the first question. Returns the seconds it took, or None for a
        backend that keeps nothing (nothing is asked)."""
        if not getattr(self.llm, "keeps_prefix", False):
            return None
        t0 = time.perf_counter()
        params = GenerationParams(max_tokens=1, temperature=0.0)
        turns = [
            {"role": "user", "content": "Wat is een motie?"},
            {"role": "assistant", "content": self.prompts.refusal},
        ]
        for messages in (
            chat_messages(self.prompts, [], Question("Wat is een motie?")),
            self.prompts.condense_messages(turns, "En een amendement?"),
        ):
            complete(self.llm, messages, params)
        return time.perf_counter() - t0

    # -- the whole pipeline ----------------------------------------------------------
    def stream(
        self,
        question: str,
        history: Sequence[Turn] | None = None,
        filters: Filters | None = None,
        top_k: int | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Iterator[Event]:
        s = self.settings
        t0 = time.perf_counter()
        question = question.strip()
        timings = Timings()
        generation: str | None = None
        guard = check_question(question)
        # the clauses that try to steer the assistant are not passed on (rag/guard.py)
        asked = guard.question if guard.injection else question
        if guard.injection:
            log.info("guard: %d clause(s) taken out of the question (%s)", len(guard.removed), ", ".join(guard.kinds))
        standalone = Question(asked)

        given: list[Citation] = []  # the sources the model was given

        def done(text: str, refused: bool, citations: list[Citation], reason: str | None = None) -> DoneEvent:
            timings.total_ms = round((time.perf_counter() - t0) * 1000, 1)
            if not refused and citations and s.source_labels:
                text = label_sources(text, citations, given)  # "… (jaarstukken 2024) [1]."
            annotate(text, citations, refused)
            return DoneEvent(
                answer=Answer(
                    answer=text,
                    refused=refused,
                    citations=citations,
                    timings=timings,
                    model=self.model_info,
                    question=question,
                    standalone_question=standalone.with_earlier if standalone.with_earlier != question else None,
                    refusal_reason=reason,
                    language=detect_language(text),
                    index_generation=generation,
                )
            )

        if guard.refuse:
            yield SourcesEvent(sources=[])
            yield done(self.prompts.refusal, True, [], "injection")
            return
        turns = self.bounded_history(history)
        standalone = self.condense(asked, turns) if turns else Question(asked)

        k = top_k or s.answer_top_k
        by_year = reorders(standalone.text, s.year_margin, s.recency_margin)
        result = self.search(standalone, 3 * k if by_year else k, filters)
        result = self.definition_first(result, standalone, filters)
        generation = result.generation or None
        timings.retrieval_ms = round((time.perf_counter() - t0) * 1000, 1)

        best = max((h.dense_score or 0.0 for h in result.hits), default=0.0)
        if not result.hits or (best < s.refusal_min_score and not names_what_it_asks(standalone, result.hits)):
            yield SourcesEvent(sources=[])
            yield done(self.prompts.refusal, True, [], "no_relevant_passages")
            return

        if by_year:
            result.hits = order_by_year(result.hits, standalone.text, k, s.year_margin, s.recency_margin)
        result.hits = within_margin(result.hits, s.context_score_margin)
        hits = self.whole_units(result)
        ctx = build_context(standalone, hits, self.prompts, self.llm.count_tokens, s.context_tokens)
        if s.focus_sentences > 0:
            meaning = self.sentence_similarity if s.focus_by_meaning else None
            ctx = focus_context(
                ctx, self.prompts, self.idf(), s.focus_sentences, s.unit_max_chars, meaning, s.focus_by_meaning_below
            )
        given[:] = [to_citation(p.marker, h) for p, h in zip(ctx.passages, ctx.hits)]
        annotate("", given, refused=True)  # labels and public links; no answer to quote yet
        yield SourcesEvent(sources=given)

        params = GenerationParams(max_tokens=s.max_answer_tokens, temperature=0.0)
        raw = ""
        n_tokens = 0
        t_first = None
        gen = self.llm.stream_chat(ctx.messages, params)
        try:
            for delta in gen:
                if t_first is None:
                    t_first = time.perf_counter()
                    timings.first_token_ms = round((t_first - t0) * 1000, 1)
                raw += delta
                n_tokens += 1
                yield TokenEvent(text=delta)
                if should_stop is not None and should_stop():
                    return
        finally:
            gen.close()  # type: ignore[attr-defined]  # every backend streams from a generator
        t_end = time.perf_counter()
        timings.completion_tokens = n_tokens
        # counted after the answer, off the time to first token (the chat template's few tokens aside)
        timings.prompt_tokens = self.prompt_tokens(ctx.messages)
        if t_first is not None:
            timings.generation_ms = round((t_end - t_first) * 1000, 1)
            if t_end > t_first and n_tokens > 1:
                timings.tokens_per_s = round((n_tokens - 1) / (t_end - t_first), 2)

        yield self.finish(raw, ctx, done)

    def whole_units(self, result: SearchResult) -> list[Hit]:
        """The retrieved chunks completed to the lists they cut (rag/units.py), read from the
        same index generation the search used."""
        if self.settings.unit_max_chars <= 0:
            return result.hits
        snap = self.retriever.reader.snapshot()
        if result.generation and getattr(snap, "name", result.generation) != result.generation:
            return result.hits  # a new generation went live in between: its positions may differ

        def neighbour(hit: Hit, offset: int) -> Chunk | None:
            return None if hit.position is None else snap.chunk_at(hit.doc_id, hit.position + offset)

        return expand_hits(result.hits, neighbour, self.settings.unit_max_chars)

    def sentence_similarity(self, question: str, sentences: Sequence[str]) -> list[float]:
        """Cosine of the question and each sentence with the embedder already loaded for search."""
        embedder = self.retriever.embedder
        q = np.asarray(embedder.embed_query(question), dtype=np.float32).reshape(-1)
        d = np.asarray(embedder.embed_documents(list(sentences)), dtype=np.float32)
        return (d @ q).tolist() if len(d) else []

    def means_the_question(self, question: str) -> Callable[[str], bool]:
        """A quote must be near the question in meaning, not only share its words: the model
        declined or was refused for a reason, and a sentence about the same things that does
        not say what was asked ("Wie is de directeur van WIJ Groningen?" -> a sentence naming
        WIJ Groningen) is no answer (``quote_min_similarity``)."""

        embedder = self.retriever.embedder
        q: np.ndarray | None = None  # embedded once, when the first candidate is weighed

        def accept(text: str) -> bool:
            nonlocal q
            if q is None:
                q = np.asarray(embedder.embed_query(question), dtype=np.float32).reshape(-1)
            d = np.asarray(embedder.embed_documents([text]), dtype=np.float32).reshape(-1)
            return float(d @ q) >= self.settings.quote_min_similarity

        return accept

    def idf(self) -> IdfFn:
        """IDF weights of the live index generation (uniform when it has no BM25 part)."""
        bm25 = getattr(self.retriever.reader.snapshot(), "bm25", None)
        return bm25.idf() if bm25 is not None and len(bm25) else uniform_idf

    def finish(self, raw: str, ctx: Context, done: Callable[..., DoneEvent]) -> DoneEvent:
        """Turn the model's raw text into the final answer: the answer checks in order
        (rag/checks.py: prompt leak, refusal, language, attribution, answer kind). Where a check
        refuses the model's answer but a passage sentence clearly answers the question, that
        sentence is quoted instead (``quote_min_coverage``)."""
        refusal = self.prompts.refusal
        question = CheckedQuestion(
            question=ctx.question.text,
            passages=ctx.passages,
            refusal=refusal,
            system_prompt=self.prompts.system(),
            translate=lambda text: self.translate(text, ctx),
            idf=self.idf(),
            examples=self.prompts.few_shot_text,
        )
        if ctx.parts is not None:
            question.parts = ctx.parts  # ranked for the focus already
        outcome = run_checks(self.checks, Draft(raw), question)
        if isinstance(outcome, Refuse):
            reason = outcome.reason.value
            quoted = self.quote(ctx, done, reason=reason, kind=question.expected_kind) if outcome.quotable else None
            return quoted or done(refusal, True, [], reason)
        return done(outcome.text, False, self.citations(ctx, outcome.cited([p.marker for p in ctx.passages])))

    def citations(self, ctx: Context, markers: Sequence[int]) -> list[Citation]:
        by_marker = {p.marker: h for p, h in zip(ctx.passages, ctx.hits)}
        return [to_citation(i + 1, by_marker[m]) for i, m in enumerate(markers)]

    def quote(
        self, ctx: Context, done: Callable[..., DoneEvent], reason: str, kind: str | None = None
    ) -> DoneEvent | None:
        """The best-covering passage sentence as the answer, cited, or None when no sentence
        covers enough of the question (then the caller refuses)."""
        if self.settings.quote_min_coverage <= 0:
            return None
        if short := asked_abbreviation(ctx.question.text):
            # "Waar staat GON voor?": the long form a passage defines, or nothing (a sentence
            # that merely uses the abbreviation does not say what it stands for)
            found = expansion_in(short, ctx.passages)
            if found is None:
                return None
            return quoted(
                done(f"{expansion_sentence(short, found[1])} [1].", False, self.citations(ctx, [found[0]])), reason
            )
        kind = kind or expected_kind(ctx.question.text)
        evidence = (
            ctx.evidence
            if ctx.evidence is not None
            else rank_evidence(ctx.question.with_earlier, ctx.passages, self.idf())
        )
        best = best_quote(
            ctx.question.with_earlier,
            evidence,
            self.settings.quote_min_coverage,
            kind,
            ctx.passages,
            self.settings.unit_max_chars,
            accept=self.means_the_question(ctx.question.text) if self.settings.quote_min_similarity > 0 else None,
        )
        if best is None:
            return None
        return quoted(done(cited_quote(best.text), False, self.citations(ctx, [best.marker])), reason)

    def translate(self, raw: str, ctx: Context) -> str:
        """One retry when the model answered in another language: ask for the Dutch text."""
        messages = [
            *ctx.messages,
            {"role": "assistant", "content": raw},
            {"role": "user", "content": "Geef hetzelfde antwoord in het Nederlands, met dezelfde nummers [n]."},
        ]
        params = GenerationParams(max_tokens=self.settings.max_answer_tokens, temperature=0.0)
        return "".join(self.llm.stream_chat(messages, params))

    def ask(
        self,
        question: str,
        history: Sequence[Turn] | None = None,
        filters: Filters | None = None,
        top_k: int | None = None,
    ) -> Answer:
        answer = None
        for event in self.stream(question, history=history, filters=filters, top_k=top_k):
            if isinstance(event, DoneEvent):
                answer = event.answer
        assert answer is not None
        return answer
