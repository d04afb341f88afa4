"""One settings object for every part of Vraagbaak.

Values come, highest priority first, from: keyword arguments, environment variables
(``VRAAGBAAK_<NAME>``, e.g. ``VRAAGBAAK_INDEX_DIR``), a TOML settings file
(``VRAAGBAAK_CONFIG`` or ``./vraagbaak.toml``, keys at the top level or in a ``[vraagbaak]``
table), and the defaults below.

The settings file is shared by the classes registered in :data:`SETTINGS_GROUP` (the library's
:class:`Settings`, the service's and the bots'); each reads the keys it knows. A key that none
of them knows is an error naming the key and the closest known one, and so is a setting
written beside a ``[vraagbaak]`` table (it would not be read). An unknown keyword argument is
an error too.

``VRAAGBAAK_*`` environment variables that no settings class reads are logged as a warning,
not refused: the environment is shared with the shell scripts, the deploy files and the tests,
which use ``VRAAGBAAK_*`` variables of their own (:data:`OTHER_ENV_VARS`, not warned about), and
a variable the program does not read must not stop a running deployment from restarting.

Secrets are ``SecretStr`` (shown as ``**********``); code reads them with
``.get_secret_value()`` where it uses them. :meth:`VraagbaakSettings.public_dump` leaves them
out, for files that record the settings (evaluation runs).
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import AliasChoices, Field, SecretBytes, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict, TomlConfigSettingsSource

log = logging.getLogger(__name__)

ENV_PREFIX = "VRAAGBAAK_"
CONFIG_ENV = "VRAAGBAAK_CONFIG"
DEFAULT_CONFIG_FILE = "vraagbaak.toml"
CONFIG_TABLE = "vraagbaak"

# The settings classes that share the settings file and the environment are entry points in this
# group (pyproject.toml): the library's own, and each front-end's, so that the library does not
# import its front-ends; a site's plugin with settings of its own registers its class the same way.
SETTINGS_GROUP = "vraagbaak.settings"

# VRAAGBAAK_* environment variables that are not settings (not warned about)
OTHER_ENV_VARS = frozenset(
    {
        CONFIG_ENV,  # the settings file
        "VRAAGBAAK_LLAMA_VARIANTS_DIR",  # rag/llm/variants.py: where the extra llama.cpp builds are
        "VRAAGBAAK_JUDGE_API_KEY",  # eval/judge.py: the judge model's API key
        "VRAAGBAAK_LLAMA_CMAKE_ARGS",  # scripts/setup.sh: llama.cpp build flags
        "VRAAGBAAK_LLAMA_VARIANTS",  # scripts/setup.sh: extra llama.cpp builds
        "VRAAGBAAK_WHEELHOUSE",  # scripts/setup.sh: wheel cache
        "VRAAGBAAK_SKIP_SMOKE",  # scripts/setup.sh: skip the smoke test
        "VRAAGBAAK_SAMPLE_QUESTION",  # scripts/run.sh: the question answered before serving
        "VRAAGBAAK_DOCUMENTS",  # deploy/compose.yaml: the documents folder
        "VRAAGBAAK_IMAGE",  # deploy/compose.yaml: the image
        "VRAAGBAAK_HTTP_PORT",  # deploy/compose.yaml: the published port
        "VRAAGBAAK_CHROMIUM",  # tests/test_widget_browser.py: the browser
        "VRAAGBAAK_ARTIFACTS",  # tests/test_widget_browser.py: screenshots
    }
)


AnswerCheckName = Literal[
    "prompt_leak",
    "model_declined",
    "language",
    "polarity",
    "examples",
    "attribution",
    "furniture",
    "letter_field",
    "expansion",
    "parts",
    "list_complete",
    "answer_kind",
    "restatement",
]
# all of them, in the order of the Literal: the default order
DEFAULT_ANSWER_CHECKS: tuple[AnswerCheckName, ...] = get_args(AnswerCheckName)


class SettingsFileError(ValueError):
    """The settings file has a key that no settings class reads."""


def _default_models_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vraagbaak" / "models"


def config_file() -> Path:
    """The settings file: ``$VRAAGBAAK_CONFIG`` (which must exist) or ``./vraagbaak.toml``."""
    path = os.environ.get(CONFIG_ENV)
    if path and not Path(path).expanduser().is_file():
        raise FileNotFoundError(f"{CONFIG_ENV} points to a missing file: {path}")
    return Path(path).expanduser() if path else Path(DEFAULT_CONFIG_FILE)


def settings_classes() -> list[type[BaseSettings]]:
    """The classes registered in the entry point group :data:`SETTINGS_GROUP`, imported (the bots'
    pull in their platform libraries: only imported when a key or variable is unknown to the class
    being built). The library's :class:`Settings` is always among them."""
    from importlib.metadata import entry_points

    out: list[type[BaseSettings]] = [Settings]
    for ep in entry_points(group=SETTINGS_GROUP):
        cls = ep.load()
        if cls not in out:
            out.append(cls)
    return out


def _env_names(cls: type[BaseSettings]) -> set[str]:
    """The environment variables ``cls`` reads (upper case)."""
    prefix = cls.model_config.get("env_prefix", "")
    names = set()
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, str):
            names.add(alias.upper())
        elif isinstance(alias, AliasChoices):
            names.update(c.upper() for c in alias.choices if isinstance(c, str))
        else:
            names.add((prefix + field_name).upper())
    return names


@lru_cache(maxsize=1)
def known_keys() -> frozenset[str]:
    """Every key the settings file may hold: the field names of all settings classes."""
    return frozenset(name for cls in settings_classes() for name in cls.model_fields)


@lru_cache(maxsize=1)
def known_env_vars() -> frozenset[str]:
    """Every environment variable a settings class reads (upper case), and :data:`OTHER_ENV_VARS`."""
    return frozenset(name for cls in settings_classes() for name in _env_names(cls)) | OTHER_ENV_VARS


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_config_keys(data: dict[str, Any], path: Path | str, settings_cls: type[BaseSettings]) -> None:
    """Raise :class:`SettingsFileError` for a key of the file's settings (``data``: the
    ``[vraagbaak]`` table or the top level) that no settings class knows."""
    unknown = [k for k in data if k not in settings_cls.model_fields]
    if unknown:
        unknown = [k for k in unknown if k not in known_keys()]
    if unknown:
        lines = [f"unknown setting {k!r}{_did_you_mean(k.lower(), known_keys())}" for k in unknown]
        raise SettingsFileError(f"settings file {path}: " + "; ".join(lines))


_warned_env: set[str] = set()


def warn_unknown_env(settings_cls: type[BaseSettings], environ: Iterable[str] | None = None) -> list[str]:
    """Log a warning, once per process, for each ``VRAAGBAAK_*`` variable (of ``environ``,
    default ``os.environ``) that no settings class reads and that is not one of
    :data:`OTHER_ENV_VARS`; returns the names warned about."""
    names = [n for n in (os.environ if environ is None else environ) if n.upper().startswith(ENV_PREFIX)]
    own = _env_names(settings_cls) | OTHER_ENV_VARS | _warned_env
    names = [n for n in names if n.upper() not in own]
    warned = []
    for name in names:
        upper = name.upper()
        if upper in known_env_vars() or upper in _warned_env:
            continue
        _warned_env.add(upper)
        bare = upper.removeprefix(ENV_PREFIX)
        hint = f" (did you mean {bare}?)" if bare in known_env_vars() else _did_you_mean(upper, known_env_vars())
        log.warning("environment variable %s is not a Vraagbaak setting and is ignored%s", name, hint)
        warned.append(name)
    return warned


class SettingsFileSource(TomlConfigSettingsSource):
    """pydantic-settings' TOML source, reading :func:`config_file`: the ``[vraagbaak]`` table
    if the file has one, else the top level. Checks the keys against every settings class
    (:func:`check_config_keys`) and hands this class only the keys it has fields for."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        self._target = settings_cls  # (the base class sets settings_cls after reading the file)
        super().__init__(settings_cls, toml_file=config_file())

    def _read_file(self, file_path) -> dict[str, Any]:
        data = super()._read_file(file_path)
        table = data.get(CONFIG_TABLE)
        if isinstance(table, dict):
            outside = [k for k in data if k != CONFIG_TABLE and (k in self._target.model_fields or k in known_keys())]
            if outside:
                raise SettingsFileError(
                    f"settings file {file_path}: {', '.join(map(repr, outside))} outside the [{CONFIG_TABLE}] table "
                    "would not be read: move it into the table"
                )
            data = table
        check_config_keys(data, file_path, self._target)
        return {k: v for k, v in data.items() if k in self._target.model_fields}


def secret_fields(cls: type[BaseSettings]) -> set[str]:
    """The fields of ``cls`` that hold a secret (``SecretStr``/``SecretBytes``, optional or not)."""
    secret = (SecretStr, SecretBytes)
    out = set()
    for name, field in cls.model_fields.items():
        ann = field.annotation
        if ann in secret or any(a in secret for a in getattr(ann, "__args__", ())):
            out.add(name)
    return out


class VraagbaakSettings(BaseSettings):
    """Base of the settings classes: keyword arguments, then the environment, then the
    settings file (:class:`SettingsFileSource`), then the defaults; an unknown keyword
    argument or key in the file is an error."""

    model_config = SettingsConfigDict(extra="forbid")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls,
        init_settings,
        env_settings,
        dotenv_settings,
        file_secret_settings,
    ):
        warn_unknown_env(settings_cls)
        return (init_settings, env_settings, SettingsFileSource(settings_cls), file_secret_settings)

    def public_dump(self) -> dict[str, Any]:
        """The settings as JSON values, without the secrets (for run files and reports)."""
        return self.model_dump(mode="json", exclude=secret_fields(type(self)))


class Settings(VraagbaakSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)

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
    embedder_backend: Literal["torch", "onnx"] = "torch"
    # "int8": the onnx backend's dynamically quantised model (AVX2-friendly); "none": fp32.
    embedder_quantize: Literal["none", "int8"] = "none"
    # Matryoshka truncation of the vectors (None = the model's full 768; EmbeddingGemma also
    # 512/256/128). Recorded in the index manifest: an index of another size is refused.
    embedding_dim: int | None = Field(None, ge=1)
    # >1: encode documents over a sentence-transformers multi-process pool (torch backend;
    # one process per GPU with embedder_device="cuda"), for bulk ingestion (`ingest --processes`).
    embedder_processes: int = Field(1, ge=1)
    embedder_threads: int | None = Field(None, ge=1)  # torch / ONNX Runtime threads; None = library default
    llm: str = "qwen2.5-coder-1.5b-instruct-q4_k_m"
    # LLM backend plugin: llama_cpp (CPU default), openai (any OpenAI-compatible server),
    # transformers (Hugging Face model folders; the GPU path). See rag/llm/. Not a fixed
    # choice: plugins add names (entry points), so the name is checked when the backend is
    # built (UnknownBackendError lists the available ones).
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
    # llama_cpp: every prompt resumes from the saved state of its fixed messages (system prompt
    # and worked examples), evaluated on their own, so the same prompt always gets the same
    # answer, whatever was asked before (rag/llm/llama_cpp.py: _resume_fixed_prefix; before, an
    # eval run's q053 was answered after one question and refused after another). It replaces
    # LlamaRAMCache: llm_ram_cache_mb then holds the states of earlier prompts (a repeated
    # question starts at once) and a switch between the answer and rewrite prompts is a state
    # load. Off = llama-cpp-python's reuse of the longest prefix shared with the previous prompt
    llm_fixed_prefix: bool = True
    # `vraagbaak serve` evaluates the fixed prompt parts (answer prompt, follow-up rewrite) once
    # before it reports ready, for a backend that keeps their computation (``keeps_prefix``:
    # llama_cpp), so the first question after a start does not pay for them (~13 s on 2 cores;
    # Pipeline.warm_up)
    llm_warm_up: bool = True
    # Where the backend runs (rag/llm/worker.py): "process" = a worker process, so a crash of
    # native code (llama.cpp) is a 503 and a log line, not a dead API; "inline" = in this
    # process; "auto" = a worker for llama_cpp, inline for the others (openai is only HTTP).
    llm_worker: Literal["auto", "process", "inline"] = "auto"
    # llama_cpp: which llama.cpp build runs (rag/llm/variants.py): "auto" = the fastest
    # installed one this CPU runs (avx512 where the CPU has AVX-512 + VNNI), "portable" =
    # the AVX2 build, or a variant's name
    llm_cpu_variant: Literal["auto", "portable", "avx512"] = "auto"
    llm_base_url: str = "http://127.0.0.1:8080/v1"  # openai backend
    llm_api_key: SecretStr = SecretStr("")  # openai backend; empty = none
    llm_model_name: str = ""  # openai backend: model name sent to the server ("" = first served)
    llm_timeout: float = 120.0  # seconds, openai backend
    llm_device: str = "auto"  # transformers backend
    max_answer_tokens: int = 256

    # --- index ----------------------------------------------------------------
    index_dir: Path = Path("index")
    # "" = the embedded index in index_dir (FAISS + SQLite + BM25, one host). A PostgreSQL URL
    # (postgresql://user:password@host/db, with the pgvector extension; the postgres extra) keeps
    # documents, chunks, vectors and the lexical statistics there instead (rag/store/postgres.py).
    # A secret: the URL may hold the password.
    database_url: SecretStr = SecretStr("")
    keep_generations: int = 2
    # FAISS vector index (rag/index.py, VectorIndexConfig): "flat" (exact), "ivf_sq8" (IVF +
    # 8-bit scalar quantiser, ~1/4 of the RAM), or "auto": flat below index_auto_threshold
    # chunks, ivf_sq8 from it. The writer rebuilds the vector index when the type changes.
    # Measured in eval/ann_benchmark.py (see eval/reports/ann-benchmark.md).
    index_type: Literal["auto", "flat", "ivf_sq8"] = "auto"
    # chunks (dim 768; at dim 256 flat is ~3x faster): flat single-query search, 1 thread, took
    # p50 13 / p95 20 ms at 30k on 2 busy cores, 29 / 37 ms at 50k; ivf_sq8 ~1 ms at recall@10 0.98+
    index_auto_threshold: int = Field(30_000, ge=0)
    ivf_nlist: int = Field(0, ge=0)  # IVF lists; 0 = 4·sqrt(chunks), retrained when off by 2x
    ivf_nprobe: int = Field(32, ge=1)  # lists scanned per query (more for filtered queries)
    # the PostgreSQL backend (database_url): pgvector HNSW candidates per search (its recall@10 at
    # 1M chunks: 0.87 at 40, 0.95 at 200; eval/reports/pg-benchmark.md); raised for filtered searches
    pg_hnsw_ef_search: int = Field(200, ge=1, le=1000)

    # --- ingest: limits on hostile files (rag/ingest/limits.py, rag/ingest/isolation.py) ---
    # Each refusal is an IngestError naming the limit and its setting; the rest of the run goes on.
    # bytes on disk; a larger file is refused from its size alone, before it is read
    max_file_bytes: int = Field(100 * 1024 * 1024, ge=1)
    # DOCX (a zip package): the uncompressed size of all its members together, and of any one,
    # read from the zip's central directory before anything is inflated (zipfile never inflates
    # a member past the size written there)
    max_inflated_bytes: int = Field(256 * 1024 * 1024, ge=1)
    # ... and a member over 1 MB uncompressed that is more than this many times its compressed
    # size is refused as a zip bomb (real document XML compresses 5-20:1)
    max_compression_ratio: float = Field(100.0, gt=1)
    max_pages: int = Field(2000, ge=1)  # PDF pages
    # "process": every parse runs in a worker process (a fresh interpreter, one per ingest
    # run or upload, restarted after a crash) with an address-space limit and a timeout, so a parser that
    # hangs, crashes or eats memory costs one file, not the service; "inline": in this process
    # (tests, debugging; the limits above still apply, these two do not)
    parse_isolation: Literal["process", "inline"] = "process"
    parse_timeout_s: float = Field(60.0, gt=0)  # per file; the worker is killed after it
    parse_memory_mb: int = Field(2048, ge=256)  # the worker's RLIMIT_AS (virtual memory)

    # --- chunking -------------------------------------------------------------
    chunk_size: int = 600  # characters
    chunk_overlap: int = 100  # characters
    min_chunk_chars: int = 40

    # --- retrieval ------------------------------------------------------------
    top_k: int = 5
    # dense alone won on the Rijksoverheid FAQ set (every BM25 weight tried lowered hit@1),
    # see README "Retrieval"; "score" (w=0.2) is better on our own demo gold set only
    fusion: Literal["dense", "bm25", "rrf", "score"] = "dense"  # see rag/retrieve.py: FUSION_METHODS
    fusion_weight_bm25: float = 0.2
    candidates: int = 50  # per retriever, before fusion
    # FAISS threads per search: a single query is memory-bound, and OpenMP spinning on 2
    # busy cores made it 2.5x slower (100k chunks: 40 ms with 1 thread vs 95 ms with 2)
    search_threads: int = 1

    # --- answering (rag/pipeline.py) --------------------------------------------
    prompts_dir: Path | None = None  # a site folder overriding files of ./prompts
    answer_top_k: int = 3  # passages given to the LLM
    context_tokens: int = 900  # token budget for the passages
    # a passage whose dense score is more than this below the best one's is not given to the model,
    # unless it comes from a document of one that is (the best passage's neighbours stay): a clear
    # best match is answered without distractors from other documents. 0 = off. Measured at 0.06
    # (eval/README.md "Passages near the best match only"): FAQ tune gold page cited +5 of 38
    # changed, demo tune key facts -3 of 24 changed; mixed on the tune splits, so off by default
    context_score_margin: float = 0.0
    # refuse without calling the LLM when the best passage's dense cosine is below this
    # (calibrated on the gold set, see eval/ and the README)
    refusal_min_score: float = 0.30
    attribution_threshold: float = 0.5  # share of a sentence's content words in its passage
    # the checks the model's answer must pass, in this order (rag/checks.py); leaving one out is
    # how the eval's ablations measure it. JSON in the environment: '["prompt_leak", ...]'
    answer_checks: list[AnswerCheckName] = list(DEFAULT_ANSWER_CHECKS)
    # context compression (rag/evidence.py): give the model only the N sentences of each
    # passage that cover the question best; 0 = whole passages. Demo gold set, 92 questions:
    # 2 sentences raised key-fact recall 0.535 -> 0.611 and cut false refusals 0.236 -> 0.139
    # (72 common answerable questions, with the follow-up fix), TTFT p50 28 -> 11 s
    focus_sentences: int = 2
    # focus by meaning too (rag/evidence.py: rank_by_meaning): a question that is not in Dutch,
    # whose words no passage sentence covers at all (a compound the passages write apart), or none
    # covers focus_by_meaning_below of (IDF-weighted), has the sentences ranked by the embedder's
    # similarity plus coverage (one embedding call over the passages' sentences, ~0.9 s, only for
    # those questions); 0 = the first two only
    focus_by_meaning: bool = True
    focus_by_meaning_below: float = 0.0
    # whole units (rag/units.py): a retrieved chunk that ends in an open list gets the rest of
    # the list from the next chunk of its section (and its introduction when it starts mid-list),
    # up to this many characters; a focused or quoted sentence keeps the sentences that belong to
    # it (list items, "Hiermee wordt bedoeld …"). 0 = chunks and sentences as they are
    unit_max_chars: int = 1500
    # which year a source speaks for (rag/recency.py): a question that names a document's year
    # ("begroting 2020") gets that year's passages first when their dense score is within
    # year_margin of the best candidate; one that names no year gets, among the candidates within
    # recency_margin of the best, the newest first (0 = off). Candidates: 3 x answer_top_k.
    # Demo run: the named-year rule fixed q018 and turned q013's wrong answer from a 2024 passage
    # into a refusal; newest-first at 0.02 changed 5 contexts and lost q014: off by default
    year_margin: float = 0.08
    recency_margin: float = 0.0
    # when the passages given to the model come from more than one year, each answer sentence
    # names its sources before its marker: "… 960 plekken (jaarstukken 2024) [1]."
    source_labels: bool = True
    # when the model declines, its answer cannot be attributed, or it lacks the number, amount
    # or date the question asks for, quote the best-covering passage sentence literally
    # instead, if it covers at least this IDF-weighted share of the question's words; 0 =
    # never. Chosen on the gold set's failures: 0.3 quoted 5 right answers and 1 wrong one
    quote_min_coverage: float = 0.3
    # ... and whose cosine with the question (the embedder's query/document vectors) is at least
    # this: words in common are not meaning in common. Chosen on the tune splits of the demo and
    # reworded sets (base run, EmbeddingGemma): every wrong quote had <= 0.616, 12 of 13 right
    # ones >= 0.641; another embedder needs its own value (0 = off). Letter-head fields and
    # abbreviation long forms are not gated (they are not sentences about the question)
    quote_min_similarity: float = 0.63
    history_max_turns: int = 6
    history_max_tokens: int = 600
    max_question_chars: int = 2000

    def resolve_models_dir(self) -> Path:
        return Path(self.models_dir).expanduser()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
