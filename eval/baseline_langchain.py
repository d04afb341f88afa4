"""The "tutorial-style baseline": the RAG pipeline a developer would assemble from a LangChain tutorial,
evaluated on the demo gold set exactly like the product, so that ``python -m eval compare`` and the report
can put the two side by side.

    pip install -e ".[llm,baseline]"
    python -m eval.baseline_langchain --out eval/runs/baseline-langchain-b512            # the "tuned" variant
    python -m eval.baseline_langchain --n-batch 8 --out eval/runs/baseline-langchain-b8  # LangChain's default
    python -m eval compare eval/runs/<product run> eval/runs/baseline-langchain-b512

The pipeline, all of it real LangChain components with their defaults unless said otherwise:

- ``TextLoader`` for every ``data/voorbeeld/*.txt`` (the files the product indexes);
- ``RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200, add_start_index=True)``;
- ``HuggingFaceEmbeddings`` on the local EmbeddingGemma folder (no task prompts, as in a tutorial);
- a ``FAISS`` vector store (L2), ``as_retriever(search_kwargs={"k": 4})``;
- ``ChatLlamaCpp`` on the local Qwen2.5-Coder-1.5B GGUF (the GGUF's chat template), temperature 0,
  max_tokens 256, ``n_batch`` 512 by default (``--n-batch 8`` is LangChain's own default), ``n_ctx`` 4096
  (LangChain's default 512 does not hold four 1,000-character chunks);
- a plain Dutch prompt (``PROMPT``) and the tutorial's chain "with sources":
  ``RunnableParallel(context=retriever, question=RunnablePassthrough()).assign(answer=prompt | llm | parser)``.

Follow-up questions: the tutorial chain has no conversation history, so it gets the raw follow-up question
(the row's ``answer.standalone_question`` is that raw question: nothing was rewritten).

Rows: ``eval.run.evaluate`` runs the loop (same row format, resume, metrics), with two small adapters in
place of the product's retriever and pipeline:

- ``BaselineRetriever.search`` — the retrieval metrics (top 10 of the same FAISS store; follow-ups searched
  as last user turn + question, the same definition as the product's retrieval metrics);
- ``BaselinePipeline.ask`` — streams the chain and returns a ``rag.schema.Answer``: the model's text,
  ``refused`` by ``is_baseline_refusal`` (below), citations only for ``[n]`` markers the model writes
  (mapped to the 4 retrieved chunks in order; the tutorial context is not numbered, so this is rare),
  and timings (retrieval, first token, total, tokens/s) measured from the stream.

Refusal rule (``is_baseline_refusal``): the product's own detector (``rag.checks.is_refusal``: empty, or
the product's refusal sentence), or the answer's first sentence says that the model does not know / that
the context does not contain the answer (``DONT_KNOW``). The answer text is kept as the model wrote it.

Semantic similarity is computed with the product's embedder (``rag.embed``), the same yardstick as in the
product's runs (``--no-similarity`` skips loading it).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .datasets import DEMO_CORPUS
from .run import INDEX_CACHE, RunConfig, build_config, evaluate, file_hash, new_run_dir, select_items, write_results

PROMPT = (
    "Beantwoord de vraag alleen op basis van de context. "
    "Als je het antwoord niet weet, zeg dan dat je het niet weet.\n\n"
    "Context:\n{context}\n\n"
    "Vraag: {question}\n\n"
    "Antwoord:"
)

# "I don't know" / "the context does not say", in the first sentence of the answer
DONT_KNOW = re.compile(
    r"""\b(?:
        (?:ik\s+)?weet\s+(?:het|dat|ik|dit)(?:\s+antwoord)?\s+niet
      | ik\s+weet\s+(?:niet|het\s+antwoord\s+niet)
      | (?:kan|kon)\s+(?:ik\s+)?(?:deze\s+vraag|de\s+vraag|dat|dit|het|hierop|hier)\s+(?:niet|geen\s+antwoord)
      | (?:kan|kon)\s+(?:ik\s+)?(?:geen|niet)\s+(?:antwoord|beantwoorden)
      | (?:geen|onvoldoende|niet\s+genoeg)\s+informatie\s+(?:over|in|beschikbaar|om|gevonden|te\s+vinden)
      | (?:staat|wordt|is|zijn|worden|staan)\s+(?:hier\s+)?niet\s+
        (?:vermeld|genoemd|beschreven|opgenomen|gegeven|te\s+vinden|aanwezig|bekend|beschikbaar)
      | (?:context|tekst)\s+(?:bevat|geeft|noemt|vermeldt|biedt)\s+(?:geen|niet)
      | niet\s+(?:in\s+de\s+(?:context|tekst)|uit\s+de\s+context)\s+(?:te\s+)?(?:halen|vinden|af\s+te\s+leiden)
      | i\s+(?:do\s+not|don'?t)\s+know
      | not\s+(?:mentioned|provided|stated|specified)\s+in\s+the\s+(?:context|text)
    )""",
    re.IGNORECASE | re.VERBOSE,
)
_FIRST_SENTENCE = re.compile(r"^(.+?[.!?])(?:\s|$)", re.DOTALL)

FOLLOWUP_NOTE = "the tutorial chain has no history: follow-up questions are asked as they are (raw follow-up)"


# --------------------------------------------------------------------------- refusal, answer rows


def first_sentence(text: str) -> str:
    t = " ".join(text.split())
    m = _FIRST_SENTENCE.match(t)
    return m.group(1) if m else t


def says_dont_know(text: str) -> bool:
    """The first sentence says the model does not know, or that the context does not hold the answer."""
    return bool(DONT_KNOW.search(first_sentence(text)))


@functools.cache
def product_refusal() -> str:
    """The product's fixed refusal sentence (prompts/refusal.txt)."""
    from rag.prompts import PromptSet

    return PromptSet().refusal


def is_baseline_refusal(text: str) -> bool:
    """The product's refusal detector (empty, or its refusal sentence), or ``says_dont_know``."""
    from rag.checks import is_refusal

    return is_refusal(text, product_refusal()) or says_dont_know(text)


@dataclass
class BaselineHit:
    """What ``eval.run.score_retrieval`` reads from a hit."""

    doc_id: str
    source: str
    chunk_id: int
    text: str
    score: float  # FAISS L2 distance (lower is closer)


@dataclass
class SearchResult:
    hits: list[BaselineHit]


def to_hit(doc, score: float = 0.0) -> BaselineHit:
    md = doc.metadata
    return BaselineHit(
        doc_id=md.get("doc_id", md.get("source", "")),
        source=str(md.get("source", "")),
        chunk_id=int(md.get("chunk_id", -1)),
        text=doc.page_content,
        score=float(score),
    )


def to_answer(
    question: str,
    text: str,
    docs: Sequence,
    timings: dict[str, Any],
    model: dict[str, str],
    standalone: str | None = None,
):
    """A ``rag.schema.Answer`` of the baseline: the model's text, the refusal rule, citations for ``[n]``
    markers that point at one of the retrieved chunks (1-based, in retrieval order)."""
    from rag.language import detect_language
    from rag.schema import Answer, Citation, ModelInfo, Timings
    from rag.text.markers import markers_in

    text = text.strip()
    refused = is_baseline_refusal(text)
    cites = []
    if not refused:
        for m in dict.fromkeys(markers_in(text)):
            if 1 <= m <= len(docs):
                h = to_hit(docs[m - 1])
                # the passage exactly as the model saw it: the chunk text, no title or heading path
                cites.append(
                    Citation(
                        marker=m,
                        doc_id=h.doc_id,
                        title="",
                        source=h.source,
                        section="",
                        snippet=h.text,
                        chunk_id=h.chunk_id,
                    )
                )
    return Answer(
        answer=text,
        refused=refused,
        refusal_reason="model_declined" if refused else None,
        citations=cites,
        timings=Timings(**timings),
        model=ModelInfo(**model),
        question=question,
        standalone_question=standalone,
        language=detect_language(text),
    )


# --------------------------------------------------------------------------- the LangChain pipeline


def load_corpus(corpus: Path = DEMO_CORPUS) -> list:
    from langchain_community.document_loaders import TextLoader

    docs = []
    for p in sorted(Path(corpus).glob("*.txt")):
        for d in TextLoader(str(p), encoding="utf-8").load():
            d.metadata["doc_id"] = f"{Path(corpus).name}/{p.stem}"  # the product's doc id
            docs.append(d)
    return docs


def split_documents(docs: Sequence, chunk_size: int = 1000, chunk_overlap: int = 200) -> list:
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap, add_start_index=True)
    chunks = splitter.split_documents(list(docs))
    for i, c in enumerate(chunks):
        c.metadata["chunk_id"] = i
    return chunks


def build_vectorstore(chunks: Sequence, embeddings, cache_dir: Path | None = None, key: str = ""):
    """``FAISS.from_documents``; saved to / loaded from ``cache_dir`` when ``key`` (corpus, chunking and
    embedder) is unchanged."""
    from langchain_community.vectorstores import FAISS

    stamp = Path(cache_dir) / "key.txt" if cache_dir is not None else None
    if stamp is not None and stamp.is_file() and stamp.read_text() == key:
        # our own file (pickled docstore), written below
        return FAISS.load_local(str(cache_dir), embeddings, allow_dangerous_deserialization=True)
    store = FAISS.from_documents(list(chunks), embeddings)
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        store.save_local(str(cache_dir))
        (Path(cache_dir) / "key.txt").write_text(key)
    return store


def format_docs(docs: Sequence) -> str:
    return "\n\n".join(d.page_content for d in docs)


def build_chain(retriever, llm, prompt_text: str = PROMPT):
    """The tutorial's RAG chain that also returns its sources: streams ``{"context": [docs]}``,
    ``{"question": …}`` and then ``{"answer": token}`` chunks."""
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnableParallel, RunnablePassthrough

    prompt = ChatPromptTemplate.from_template(prompt_text)
    answer_from_docs = (
        RunnablePassthrough.assign(context=lambda x: format_docs(x["context"])) | prompt | llm | StrOutputParser()
    )
    return RunnableParallel(context=retriever, question=RunnablePassthrough()).assign(answer=answer_from_docs)


class BaselineRetriever:
    """``search()`` as ``eval.run.evaluate`` calls it, over the baseline's FAISS store (no ``embedder``
    attribute: the query is embedded inside the search, and its time is part of ``search_ms``)."""

    def __init__(self, vectorstore):
        self.vectorstore = vectorstore

    def search(self, query: str, top_k: int = 10, fusion=None, query_vector=None, **_) -> SearchResult:
        return SearchResult([to_hit(d, s) for d, s in self.vectorstore.similarity_search_with_score(query, k=top_k)])


class BaselinePipeline:
    """``ask()`` as ``eval.run.evaluate`` calls it: stream the chain, time it, build the Answer."""

    def __init__(self, chain, model: dict[str, str], count_tokens=None, prompt_text: str = PROMPT):
        self.chain = chain
        self.model = model
        self.count_tokens = count_tokens
        self.prompt_text = prompt_text

    def stream(self, question: str) -> Iterator[dict]:
        return self.chain.stream(question)

    def ask(self, question: str, history=None, top_k=None, **_):
        question = question.strip()
        t0 = time.perf_counter()
        docs: list = []
        text = ""
        n_tokens = 0
        t_ctx = t_first = None
        for chunk in self.stream(question):
            if "context" in chunk:
                docs = list(chunk["context"])
                t_ctx = time.perf_counter()
            delta = chunk.get("answer")
            if delta:
                if t_first is None:
                    t_first = time.perf_counter()
                text += delta
                n_tokens += 1
        t_end = time.perf_counter()
        timings: dict[str, Any] = {
            "retrieval_ms": round(((t_ctx or t0) - t0) * 1000, 1),
            "total_ms": round((t_end - t0) * 1000, 1),
            "completion_tokens": n_tokens,
        }
        if t_first is not None:
            timings["first_token_ms"] = round((t_first - t0) * 1000, 1)
            timings["generation_ms"] = round((t_end - t_first) * 1000, 1)
            if n_tokens > 1 and t_end > t_first:
                timings["tokens_per_s"] = round((n_tokens - 1) / (t_end - t_first), 2)
        if self.count_tokens is not None:  # the prompt text (without the chat template's few tokens)
            timings["prompt_tokens"] = self.count_tokens(
                self.prompt_text.format(context=format_docs(docs), question=question)
            )
        return to_answer(question, text, docs, timings, self.model, standalone=question if history else None)


# --------------------------------------------------------------------------- run


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m eval.baseline_langchain",
        description="Evaluate the LangChain-tutorial baseline on the demo gold set.",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="run folder (resumed when it holds a config.json); "
        "default eval/runs/<timestamp>-baseline-langchain-b<n_batch>",
    )
    p.add_argument("--limit", type=int, help="only the first N questions")
    p.add_argument("--ids", help="comma-separated question ids")
    p.add_argument("--n-batch", type=int, default=512, help="llama.cpp prompt batch (LangChain's default is 8)")
    p.add_argument("--n-threads", type=int, default=default_threads(), help="llama.cpp and torch threads")
    p.add_argument("--n-ctx", type=int, default=4096, help="llama.cpp context (LangChain's default 512 is too small)")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--chunk-size", type=int, default=1000)
    p.add_argument("--chunk-overlap", type=int, default=200)
    p.add_argument("--k", type=int, default=4, help="chunks given to the model")
    p.add_argument("--no-similarity", action="store_true", help="do not load the product embedder for similarity")
    p.add_argument("--no-report", action="store_true", help="do not write report.html")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


BASELINE_KEYS = ("n_batch", "n_threads", "n_ctx", "temperature", "max_tokens", "chunk_size", "chunk_overlap", "k")


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local folders only, never the hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    args = parse_args(argv)

    def log(m: str) -> None:
        print(m, file=sys.stderr, flush=True)

    try:
        import langchain_community  # noqa: F401
        import langchain_huggingface  # noqa: F401
        import langchain_text_splitters  # noqa: F401
    except ImportError as exc:
        raise SystemExit(f"{exc}: install the extra first: pip install -e '.[llm,baseline]'") from exc

    run_dir = args.out
    saved = None
    if run_dir is not None and (run_dir / "config.json").exists():  # resume with the saved settings
        saved = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        for k, v in saved.get("baseline", {}).get("params", {}).items():
            setattr(args, k, v)
        if args.limit is None and args.ids is None:
            args.limit = saved["run"].get("limit")
            args.ids = ",".join(saved["run"]["ids"]) if saved["run"].get("ids") else None
    params = {k: getattr(args, k) for k in BASELINE_KEYS}

    from rag.models import resolve_embedder, resolve_llm
    from rag.settings import Settings

    settings = Settings()
    emb_path, gguf = resolve_embedder(settings), resolve_llm(settings)
    if not Path(emb_path).exists():
        raise SystemExit(f"embedder folder not found: {emb_path} (never loaded from the hub)")

    cfg = RunConfig(
        dataset="demo",
        name=f"baseline-langchain-b{args.n_batch}",
        only="all",
        limit=args.limit,
        ids=args.ids.split(",") if args.ids else None,
        fusion="dense",
        top_k=args.k,
        chunk_size=args.chunk_size,
        chunk_overlap=args.chunk_overlap,
        attribution=False,
    )
    items = select_items(cfg)
    if not items:
        raise SystemExit("no questions selected")
    n_follow = sum(1 for i in items if i.history)
    if n_follow:
        log(f"{n_follow} follow-up question(s): {FOLLOWUP_NOTE}")

    import torch

    torch.set_num_threads(args.n_threads)
    from langchain_community.chat_models import ChatLlamaCpp
    from langchain_huggingface import HuggingFaceEmbeddings

    t_load = time.perf_counter()
    embeddings = HuggingFaceEmbeddings(
        model_name=str(emb_path), model_kwargs={"device": "cpu", "local_files_only": True}
    )
    chunks = split_documents(load_corpus(DEMO_CORPUS), args.chunk_size, args.chunk_overlap)
    key = json.dumps(
        {
            "files": {p.name: file_hash(p) for p in sorted(DEMO_CORPUS.glob("*.txt"))},
            "chunk_size": args.chunk_size,
            "chunk_overlap": args.chunk_overlap,
            "embedder": settings.embedder,
            "wrapper": "HuggingFaceEmbeddings",
        },
        sort_keys=True,
    )
    index_dir = INDEX_CACHE / f"baseline-langchain-{settings.embedder}-c{args.chunk_size}-o{args.chunk_overlap}"
    log(f"{len(chunks)} chunks of ≤ {args.chunk_size} characters; FAISS store {index_dir}")
    store = build_vectorstore(chunks, embeddings, index_dir, key)
    llm = ChatLlamaCpp(
        model_path=str(gguf),
        n_ctx=args.n_ctx,
        n_batch=args.n_batch,
        n_threads=args.n_threads,
        temperature=args.temperature,
        max_tokens=args.max_tokens,
        verbose=False,
        model_kwargs={"n_threads_batch": args.n_threads},
    )
    chain = build_chain(store.as_retriever(search_kwargs={"k": args.k}), llm)
    model = {
        "llm": f"{settings.llm} (langchain ChatLlamaCpp, n_batch={args.n_batch})",
        "embedder": f"{settings.embedder} (langchain HuggingFaceEmbeddings)",
    }
    pipeline = BaselinePipeline(
        chain, model, count_tokens=lambda s: len(llm.client.tokenize(s.encode("utf-8"), add_bos=False))
    )
    scorer = None
    if not args.no_similarity:
        try:
            from rag.embed import load_embedder

            scorer = load_embedder(settings)
        except Exception as exc:  # noqa: BLE001 - the run goes on without similarity
            log(f"WARNING: product embedder not loaded ({type(exc).__name__}: {exc}); similarity not computed")
    load_s = round(time.perf_counter() - t_load, 1)
    log(f"models and index ready in {load_s} s")

    if run_dir is None:
        run_dir = new_run_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = run_dir / "config.json"
    if saved is not None:
        config = saved
        config.setdefault("resumed_at", []).append(datetime.now().isoformat(timespec="seconds"))
        config["run"]["limit"] = cfg.limit
    else:
        config = build_config(cfg, settings, items, index_dir, model["llm"])
        # what the report's header line shows: the baseline's retrieval and chunking, not the product's
        config["settings"].update(
            {
                "fusion": "dense (LangChain FAISS, L2)",
                "chunk_size": args.chunk_size,
                "chunk_overlap": args.chunk_overlap,
                "answer_top_k": args.k,
                "llm_batch": args.n_batch,
                "llm_threads": args.n_threads,
                "llm_context": args.n_ctx,
            }
        )
        config["models"].update(
            {"llm_backend": "langchain ChatLlamaCpp", "llm_path": str(gguf), "embedder_path": str(emb_path)}
        )
        import langchain_core

        config["baseline"] = {
            "pipeline": "LangChain tutorial: TextLoader → RecursiveCharacterTextSplitter → "
            "HuggingFaceEmbeddings → FAISS (k nearest, L2) → ChatPromptTemplate → ChatLlamaCpp → "
            "StrOutputParser",
            "params": params,
            "prompt": PROMPT,
            "followups": FOLLOWUP_NOTE,
            "refusal_rule": "rag.checks.is_refusal (product refusal sentence or empty) or the first "
            "sentence says the model does not know / the context does not say "
            "(eval.baseline_langchain.DONT_KNOW)",
            "citations": "only [n] markers the model writes, mapped to the k retrieved chunks in order",
            "similarity": "product embedder (rag.embed)" if scorer is not None else "not computed",
            "versions": {
                "langchain_core": langchain_core.__version__,
                "langchain_community": _version("langchain-community"),
                "langchain_text_splitters": _version("langchain-text-splitters"),
                "langchain_huggingface": _version("langchain-huggingface"),
                "llama_cpp_python": _version("llama-cpp-python"),
            },
            "n_chunks": len(chunks),
            "load_s": load_s,
        }
    cfg_path.write_text(json.dumps(config, ensure_ascii=False, indent=1), encoding="utf-8")
    log(f"run folder: {run_dir}")

    from .run import load_rows

    before = {r["id"] for r in load_rows(run_dir) if not r.get("error")}
    t0 = time.perf_counter()
    rows = evaluate(
        items,
        cfg,
        run_dir,
        retriever=BaselineRetriever(store),
        pipeline=pipeline,
        embedder=scorer,
        progress=not args.no_progress,
        log=log,
    )
    wall = time.perf_counter() - t0
    config["finished_at"] = datetime.now().isoformat(timespec="seconds")
    config["wall_s"] = round(config.get("wall_s", 0) + wall, 1)
    cfg_path.write_text(json.dumps(config, ensure_ascii=False, indent=1), encoding="utf-8")
    results = write_results(run_dir, config, rows)

    from .cli import format_summary

    print(format_summary(results))
    if not args.no_report:
        from .report import write_report

        print(f"report: {write_report(run_dir, title=f'LangChain tutorial baseline (n_batch={args.n_batch})')}")
    n_new = sum(1 for r in rows if r["id"] not in before and not r.get("error"))
    if n_new:
        print(
            f"this invocation: {n_new} question(s) in {wall:.1f} s = {wall / n_new:.1f} s per question "
            f"(plus {load_s} s loading; n_batch={args.n_batch}, n_threads={args.n_threads})"
        )
    print(f"results: {run_dir / 'results.json'}")
    return 0


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    raise SystemExit(main())
