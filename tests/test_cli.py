"""The library CLI's batch modes: every output line joins back to its input line by the
caller's ``id``. A scripted LLM and the hash embedder stand in for the models (the output
format is under test here; tests/test_integration.py runs the real models)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from rag import cli
from rag.pipeline import Pipeline
from rag.retrieve import Retriever
from tests.conftest import ScriptedLLM, ingest_docs

DOCS = {
    "raadsbrief-2022-opvang.md": "# Opvang\n\n## Nachtopvang\n\nDe nachtopvang aan de Hereweg krijgt 60 extra plekken.\n",
    "begroting-2023-zorg.md": "# Zorg\n\n## Mantelzorg\n\nVoor mantelzorgondersteuning is in 2023 € 1.200.000 beschikbaar.\n",
}

QUESTIONS = [
    {"id": "q-opvang", "question": "Hoeveel extra plekken krijgt de nachtopvang?"},
    {"id": 17, "question": "Hoeveel geld is er voor mantelzorgondersteuning?"},
    {"question": "Wat krijgt de nachtopvang aan de Hereweg?"},  # no id: the line number
]


@pytest.fixture
def indexed(tmp_path, settings, hash_embedder, monkeypatch):
    ingest_docs(tmp_path / "docs", DOCS, settings, hash_embedder)
    settings.refusal_min_score = 0.05
    monkeypatch.setattr(cli, "_settings", lambda index_dir=None: settings)
    monkeypatch.setattr("rag.embed.load_embedder", lambda s: hash_embedder)
    return settings


def _lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_ask_questions_keeps_the_callers_id(indexed, hash_embedder, monkeypatch):
    llm = ScriptedLLM("De nachtopvang aan de Hereweg krijgt 60 extra plekken [1].")
    monkeypatch.setattr(cli, "_load_pipeline", lambda d: Pipeline(indexed, Retriever(indexed, hash_embedder), llm))
    stdin = "\n".join(json.dumps(q) for q in QUESTIONS) + "\n"
    result = CliRunner().invoke(cli.app, ["ask", "--questions", "-", "--json"], input=stdin)
    assert result.exit_code == 0, result.output
    rows = _lines(result.output)
    assert [r["id"] for r in rows] == ["q-opvang", 17, 3]
    assert [r["question"] for r in rows] == [q["question"] for q in QUESTIONS]
    # the answer's own id is kept beside it, distinct per answer, for feedback
    ids = [r["answer_id"] for r in rows]
    assert len(set(ids)) == 3 and all(isinstance(i, str) and len(i) == 32 for i in ids)
    assert rows[0]["answer"] and "citations" in rows[0] and "timings" in rows[0]


def test_ask_prints_the_viewer_link_of_each_source(indexed, hash_embedder, monkeypatch, tmp_path):
    """With the service's plugin registered, `vraagbaak ask` prints each source's signed
    viewer link (opened at the passage), and the JSON output carries it as ``url``."""
    from service import cli as service_cli
    from service.links import LinkSigner

    monkeypatch.setenv("VRAAGBAAK_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("VRAAGBAAK_PUBLIC_BASE_URL", "https://vraagbaak.gemeente.nl")
    monkeypatch.setattr(cli, "CITATION_LINKERS", [])
    service_cli.register(cli.app)
    assert cli.CITATION_LINKERS == [service_cli.cli_viewer_links]
    llm = ScriptedLLM("De nachtopvang aan de Hereweg krijgt 60 extra plekken [1].")
    monkeypatch.setattr(cli, "_load_pipeline", lambda d: Pipeline(indexed, Retriever(indexed, hash_embedder), llm))
    result = CliRunner().invoke(cli.app, ["ask", "Hoeveel extra plekken krijgt de nachtopvang?"])
    assert result.exit_code == 0, result.output
    links = [ln.strip() for ln in result.output.splitlines() if "/view?" in ln]
    assert links and links[0].startswith(
        "https://vraagbaak.gemeente.nl/v1/documents/docs/raadsbrief-2022-opvang/view?chunk="
    )
    # a valid signature for every group (the console reads the whole index)
    from urllib.parse import parse_qs, urlsplit

    q = {k: v[0] for k, v in parse_qs(urlsplit(links[0]).query, keep_blank_values=True).items()}
    secret = (tmp_path / "data" / "link-secret").read_text().encode()
    assert LinkSigner(secret).verify("docs/raadsbrief-2022-opvang", q["g"], q["exp"], q["sig"]) is None
    result = CliRunner().invoke(cli.app, ["ask", "Hoeveel extra plekken krijgt de nachtopvang?", "--json"])
    assert json.loads(result.output)["citations"][0]["url"].startswith("https://vraagbaak.gemeente.nl/v1/documents/")


def test_batch_record_puts_the_callers_id_over_the_answers():
    from rag.schema import Answer, ModelInfo

    a = Answer(answer="x", model=ModelInfo(llm="l", embedder="e"))
    rec = cli.batch_record("q1", a)
    assert rec["id"] == "q1" and rec["answer_id"] == a.id and list(rec)[:2] == ["id", "answer_id"]


def test_search_queries_keeps_the_callers_id(indexed):
    stdin = "\n".join(json.dumps(q) for q in QUESTIONS) + "\n"
    result = CliRunner().invoke(cli.app, ["search", "--queries", "-", "--json"], input=stdin)
    assert result.exit_code == 0, result.output
    rows = _lines(result.output)
    assert [r["id"] for r in rows] == ["q-opvang", 17, 3]
    assert rows[0]["results"] and rows[0]["results"][0]["doc_id"] == "docs/raadsbrief-2022-opvang"


def test_a_bad_settings_file_is_a_message_not_a_traceback(tmp_path):
    """`vraagbaak` with a mistyped key or a bad value: exit status 2 and the key named on stderr."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "VRAAGBAAK_CONFIG": str(tmp_path / "vraagbaak.toml")}
    script = "from rag.cli import main; main()"
    (tmp_path / "vraagbaak.toml").write_text('[vraagbaak]\nllm_bakend = "openai"\n')
    proc = subprocess.run([sys.executable, "-c", script, "documents"], env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "llm_bakend" in proc.stderr and "llm_backend" in proc.stderr
    assert "Traceback" not in proc.stderr
    (tmp_path / "vraagbaak.toml").write_text('[vraagbaak]\nfusion = "rrff"\n')
    proc = subprocess.run([sys.executable, "-c", script, "documents"], env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "fusion" in proc.stderr and "Traceback" not in proc.stderr
