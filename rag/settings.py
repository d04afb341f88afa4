"""One settings object for every part of Vraagbaak.

Values come, highest priority first, from: keyword arguments, environment variables
(``VRAAGBAAK_<NAME>``, e.g. ``VRAAGBAAK_INDEX_DIR``), a TOML settings file
(``VRAAGBAAK_CONFIG`` or ``./vraagbaak.toml``), and the defaults below.
"""

from __future__ import annotations

import os
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


def _default_models_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vraagbaak" / "models"


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the settings file named by VRAAGBAAK_CONFIG (or ./vraagbaak.toml)."""

    def _data(self) -> dict[str, Any]:
        path = os.environ.get("VRAAGBAAK_CONFIG")
        p = Path(path) if path else Path("vraagbaak.toml")
        if not p.is_file():
            if path:
                raise FileNotFoundError(f"VRAAGBAAK_CONFIG points to a missing file: {p}")
            return {}
        with p.open("rb") as fh:
            data = tomllib.load(fh)
        # allow an optional [vraagbaak] table
        return data.get("vraagbaak", data)

    def get_field_value(self, field, field_name):  # pragma: no cover - required by ABC
        return self._data().get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        fields = self.settings_cls.model_fields
        return {k: v for k, v in self._data().items() if k in fields}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VRAAGBAAK_", extra="ignore")

    # --- models -------------------------------------------------------------
    models_dir: Path = Field(default_factory=_default_models_dir)
    # A name from the model registry (rag/models.py), a local folder, or a hub id
    # (the latter only where the site has hub access).
    embedder: str = "embeddinggemma-300m"
    embedder_device: str = "cpu"
    embedder_batch_size: int = 8
    # Sequence cap for the embedder: near the chunk size, never the model's 2,048.
    embedder_max_seq_length: int = 512
    # How the embedder runs (rag/embed.py): "torch" (sentence-transformers as published) or
    # "onnx" (ONNX Runtime; exported once into <model folder>/onnx/ and verified against torch).
    embedder_backend: str = Field("torch", pattern="^(torch|onnx)$")
    # "int8": the onnx backend's dynamically quantised model (AVX2-friendly); "none": fp32.
    embedder_quantize: str = Field("none", pattern="^(none|int8)$")
    # Matryoshka truncation of the vectors (None = the model's full 768; EmbeddingGemma also
    # 512/256/128). Recorded in the index manifest: an index of another size is refused.
    embedding_dim: int | None = Field(None, ge=1)
    # >1: encode documents over a sentence-transformers multi-process pool (torch backend;
    # one process per GPU with embedder_device="cuda"), for bulk ingestion (`ingest --processes`).
    embedder_processes: int = Field(1, ge=1)
    embedder_threads: int | None = Field(None, ge=1)  # torch / ONNX Runtime threads; None = library default
    llm: str = "qwen2.5-coder-1.5b-instruct-q4_k_m"
    # LLM backend plugin: llama_cpp (CPU default), openai (any OpenAI-compatible server),
    # transformers (Hugging Face model folders; the GPU path). See rag/llm/.
    llm_backend: str = "llama_cpp"
    llm_context: int = 4096  # tokens (llama_cpp n_ctx)
    llm_threads: int | None = None  # None = all cores
    llm_batch: int = 512  # prompt-processing batch (llama_cpp n_batch)
    # llama_cpp: MiB of saved prompt states (LlamaRAMCache, ~26 MiB each); 0 = off. A
    # follow-up's rewrite call and its answer call each resume their own cached system prompt
    # instead of a full re-prefill: follow-up time to first token p50 30.3 → 15.4 s, total
    # 32.9 → 18.4 s (8 demo follow-ups); other questions: time to first token +0.9 s, total
    # +1.1 s (median of 8 paired; the state is saved after each answer). On for a chat
    # product; 0 where follow-ups are rare.
    llm_ram_cache_mb: int = Field(512, ge=0)
    # Where the backend runs (rag/llm/worker.py): "process" = a worker process, so a crash of
    # native code (llama.cpp) is a 503 and a log line, not a dead API; "inline" = in this
    # process; "auto" = a worker for llama_cpp, inline for the others (openai is only HTTP).
    llm_worker: str = Field("auto", pattern="^(auto|process|inline)$")
    # llama_cpp: which llama.cpp build runs (rag/llm/variants.py): "auto" = the fastest
    # installed one this CPU runs (avx512 where the CPU has AVX-512 + VNNI), "portable" =
    # the AVX2 build, or a variant's name
    llm_cpu_variant: str = Field("auto", pattern="^(auto|portable|avx512)$")
    llm_base_url: str = "http://127.0.0.1:8080/v1"  # openai backend
    llm_api_key: str = ""  # openai backend; empty = none
    llm_model_name: str = ""  # openai backend: model name sent to the server ("" = first served)
    llm_timeout: float = 120.0  # seconds, openai backend
    llm_device: str = "auto"  # transformers backend
    max_answer_tokens: int = 256

    # --- index ----------------------------------------------------------------
    index_dir: Path = Path("index")
    keep_generations: int = 2
    # FAISS vector index (rag/index.py, VectorIndexConfig): "flat" (exact), "ivf_sq8" (IVF +
    # 8-bit scalar quantiser, ~1/4 of the RAM), or "auto": flat below index_auto_threshold
    # chunks, ivf_sq8 from it. The writer rebuilds the vector index when the type changes.
    # Measured in eval/ann_benchmark.py (see eval/reports/ann-benchmark.md).
    index_type: str = Field("auto", pattern="^(auto|flat|ivf_sq8)$")
    # chunks (dim 768; at dim 256 flat is ~3x faster): flat single-query search, 1 thread, took
    # p50 13 / p95 20 ms at 30k on 2 busy cores, 29 / 37 ms at 50k; ivf_sq8 ~1 ms at recall@10 0.98+
    index_auto_threshold: int = Field(30_000, ge=0)
    ivf_nlist: int = Field(0, ge=0)  # IVF lists; 0 = 4·sqrt(chunks), retrained when off by 2x
    ivf_nprobe: int = Field(32, ge=1)  # lists scanned per query (more for filtered queries)

    # --- chunking -------------------------------------------------------------
    chunk_size: int = 600  # characters
    chunk_overlap: int = 100  # characters
    min_chunk_chars: int = 40

    # --- retrieval ------------------------------------------------------------
    top_k: int = 5
    # dense alone won on the Rijksoverheid FAQ set (every BM25 weight tried lowered hit@1),
    # see README "Retrieval"; "score" (w=0.2) is better on our own demo gold set only
    fusion: str = "dense"  # see rag/retrieve.py: FUSION_METHODS
    fusion_weight_bm25: float = 0.2
    candidates: int = 50  # per retriever, before fusion
    # FAISS threads per search: a single query is memory-bound, and OpenMP spinning on 2
    # busy cores made it 2.5x slower (100k chunks: 40 ms with 1 thread vs 95 ms with 2)
    search_threads: int = 1

    # --- answering (rag/pipeline.py) --------------------------------------------
    prompts_dir: Path | None = None  # a site folder overriding files of ./prompts
    answer_top_k: int = 3  # passages given to the LLM
    context_tokens: int = 900  # token budget for the passages
    # refuse without calling the LLM when the best passage's dense cosine is below this
    # (calibrated on the gold set, see eval/ and the README)
    refusal_min_score: float = 0.30
    attribution_threshold: float = 0.5  # share of a sentence's content words in its passage
    # context compression (rag/evidence.py): give the model only the N sentences of each
    # passage that cover the question best; 0 = whole passages. Demo gold set, 92 questions:
    # 2 sentences raised key-fact recall 0.535 -> 0.611 and cut false refusals 0.236 -> 0.139
    # (72 common answerable questions, with the follow-up fix), TTFT p50 28 -> 11 s
    focus_sentences: int = 2
    # when the model declines, its answer cannot be attributed, or it lacks the number, amount
    # or date the question asks for, quote the best-covering passage sentence literally
    # instead, if it covers at least this IDF-weighted share of the question's words; 0 =
    # never. Chosen on the gold set's failures: 0.3 quoted 5 right answers and 1 wrong one
    quote_min_coverage: float = 0.3
    history_max_turns: int = 6
    history_max_tokens: int = 600
    max_question_chars: int = 2000

    def resolve_models_dir(self) -> Path:
        return Path(self.models_dir).expanduser()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls,
        init_settings,
        env_settings,
        dotenv_settings,
        file_secret_settings,
    ):
        return (init_settings, env_settings, _TomlSource(settings_cls), file_secret_settings)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
