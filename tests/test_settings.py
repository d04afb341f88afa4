"""Settings: typed choices, unknown keys in the settings file refused, unknown VRAAGBAAK_*
variables warned about, secrets as SecretStr (and never in evaluation run files), package data
found through importlib.resources (tests/test_wheel_install.py: from an installed wheel)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import get_args

import pytest
from pydantic import SecretStr, ValidationError

import rag.settings as S
from rag.settings import OTHER_ENV_VARS, Settings, SettingsFileError, known_env_vars
from service.bots.config import BotSettings
from service.config import ServiceSettings
from tests.conftest import DEMO_CORPUS, REPO, ScriptedLLM

ALL_CLASSES = [Settings, ServiceSettings, BotSettings]


@pytest.fixture
def config(tmp_path, monkeypatch):
    """Write the settings file (VRAAGBAAK_CONFIG) with the given text."""
    path = tmp_path / "vraagbaak.toml"
    monkeypatch.setenv("VRAAGBAAK_CONFIG", str(path))

    def write(text: str) -> Path:
        path.write_text(text, encoding="utf-8")
        return path

    return write


# --------------------------------------------------------------------------- the settings file


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_unknown_key_in_the_file_is_an_error_naming_it_and_the_closest_key(config, cls):
    path = config('index_dir = "x"\nllm_bakend = "openai"\n')
    with pytest.raises(SettingsFileError) as err:
        cls()
    msg = str(err.value)
    assert "'llm_bakend'" in msg and "did you mean 'llm_backend'" in msg and str(path) in msg


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_unknown_key_in_the_vraagbaak_table_is_an_error(config, cls):
    config('[vraagbaak]\nport = 8001\nfuzion = "bm25"\nCHUNK_SIZE = 400\n')
    with pytest.raises(SettingsFileError) as err:
        cls()
    msg = str(err.value)
    # every unknown key is named; a key in the wrong case is one too
    assert "'fuzion' (did you mean 'fusion'?)" in msg and "'CHUNK_SIZE' (did you mean 'chunk_size'?)" in msg
    assert "'port'" not in msg


def test_each_class_reads_its_own_keys_of_the_shared_file(config):
    config(
        '[vraagbaak]\nindex_dir = "/srv/index"\nfusion = "bm25"\nllm_api_key = "sk-file"\nport = 8001\n'
        'log_level = "debug"\nbots_document_url = "https://i.nl/{doc_id}"\n'
        '[vraagbaak.slack_groups]\n"T1/C1" = ["sociaal"]\n'
    )
    s, svc, bots = Settings(), ServiceSettings(), BotSettings()
    assert (s.index_dir, s.fusion, s.llm_api_key.get_secret_value()) == (Path("/srv/index"), "bm25", "sk-file")
    assert (svc.port, svc.log_level) == (8001, "DEBUG")
    assert bots.bots_document_url == "https://i.nl/{doc_id}" and bots.slack_groups == {"T1/C1": ["sociaal"]}


def test_a_setting_beside_the_vraagbaak_table_is_an_error(config):
    config('port = 8001\n[vraagbaak]\nindex_dir = "x"\n[other_tool]\nwhatever = 1\n')
    with pytest.raises(SettingsFileError, match=r"'port' outside the \[vraagbaak\] table"):
        Settings()
    config('[vraagbaak]\nindex_dir = "x"\n[other_tool]\nwhatever = 1\n')  # another program's table: left alone
    assert Settings().index_dir == Path("x")


def test_missing_config_file_and_no_file(tmp_path, monkeypatch):
    monkeypatch.setenv("VRAAGBAAK_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(FileNotFoundError, match="VRAAGBAAK_CONFIG"):
        Settings()
    monkeypatch.delenv("VRAAGBAAK_CONFIG")
    monkeypatch.chdir(tmp_path)  # no ./vraagbaak.toml: the defaults
    assert Settings().fusion == "dense"


def test_priority_arguments_then_env_then_file(config, monkeypatch):
    config("top_k = 7\nchunk_size = 300\nanswer_top_k = 2\n")
    monkeypatch.setenv("VRAAGBAAK_TOP_K", "8")
    s = Settings(chunk_size=500)
    assert (s.chunk_size, s.top_k, s.answer_top_k) == (500, 8, 2)


def test_settings_classes_lists_every_settings_class():
    import service.bots  # noqa: F401  (imports every module with a settings class)

    assert S.settings_classes()[0] is Settings and set(S.settings_classes()) == set(ALL_CLASSES)
    product = {c for c in S.VraagbaakSettings.__subclasses__() if c.__module__.split(".")[0] in ("rag", "service")}
    assert product == set(ALL_CLASSES)


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_unknown_keyword_argument_is_an_error(cls):
    with pytest.raises(ValidationError, match="top_kk"):
        cls(top_kk=3)


# --------------------------------------------------------------------------- typed choices


@pytest.mark.parametrize(
    "field,bad",
    [
        ("fusion", "rff"),
        ("index_type", "hnsw"),
        ("llm_worker", "thread"),
        ("llm_cpu_variant", "avx2"),
        ("embedder_backend", "openvino"),
        ("embedder_quantize", "int4"),
    ],
)
def test_bad_choice_names_the_setting(field, bad, monkeypatch):
    with pytest.raises(ValidationError, match=field):
        Settings(**{field: bad})
    monkeypatch.setenv(f"VRAAGBAAK_{field.upper()}", bad)
    with pytest.raises(ValidationError, match=field):
        Settings()


def test_choices_match_what_the_code_implements():
    from rag.embed import BACKENDS, QUANTIZATIONS
    from rag.index import INDEX_TYPES
    from rag.llm.variants import VARIANTS
    from rag.retrieve import FUSION_METHODS

    def choices(name):
        return set(get_args(Settings.model_fields[name].annotation))

    assert choices("fusion") == set(FUSION_METHODS)
    assert choices("index_type") == set(INDEX_TYPES)
    assert choices("embedder_backend") == set(BACKENDS)
    assert choices("embedder_quantize") == set(QUANTIZATIONS)
    assert choices("llm_cpu_variant") == {"auto", "portable", *VARIANTS}


def test_log_level_is_a_choice_in_any_case():
    assert ServiceSettings(log_level="warn").log_level == "WARNING"
    assert ServiceSettings(log_level=" Info ").log_level == "INFO"
    with pytest.raises(ValidationError, match="log_level"):
        ServiceSettings(log_level="verbose")


# --------------------------------------------------------------------------- environment


@pytest.fixture
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(S, "_warned_env", set())


def test_unknown_vraagbaak_variable_is_warned_about_once(monkeypatch, caplog, fresh_warnings):
    monkeypatch.setenv("VRAAGBAAK_LLM_BAKEND", "openai")
    monkeypatch.setenv("VRAAGBAAK_SLACK_BOT_TOKEN", "xoxb-1")  # the bots read SLACK_BOT_TOKEN
    monkeypatch.setenv("VRAAGBAAK_SKIP_SMOKE", "1")  # scripts/setup.sh's own
    monkeypatch.setenv("VRAAGBAAK_PORT", "8001")  # a setting of another class
    with caplog.at_level(logging.WARNING, logger="rag.settings"):
        s = Settings()
        Settings()
    assert s.llm_backend == "llama_cpp"  # ignored, not an error
    msgs = [r.getMessage() for r in caplog.records if r.name == "rag.settings"]
    assert len(msgs) == 2, msgs
    assert any("VRAAGBAAK_LLM_BAKEND" in m and "did you mean 'VRAAGBAAK_LLM_BACKEND'" in m for m in msgs)
    assert any("VRAAGBAAK_SLACK_BOT_TOKEN" in m and "did you mean SLACK_BOT_TOKEN" in m for m in msgs)


def test_known_variables_are_not_warned_about(fresh_warnings):
    env = [
        "VRAAGBAAK_INDEX_DIR",
        "VRAAGBAAK_PORT",
        "VRAAGBAAK_SLACK_GROUPS",
        "VRAAGBAAK_CONFIG",
        "SLACK_BOT_TOKEN",
        "HOME",
        *OTHER_ENV_VARS,
    ]
    assert S.warn_unknown_env(Settings, env) == []
    assert S.warn_unknown_env(Settings, ["vraagbaak_top_kk"]) == ["vraagbaak_top_kk"]


def _repo_env_names() -> dict[str, str]:
    """Every VRAAGBAAK_* name in the checkout's code, scripts, deploy files, tests and docs."""
    found: dict[str, str] = {}
    for path in REPO.rglob("*"):
        rel = path.relative_to(REPO)
        if (
            not path.is_file()
            or path == Path(__file__)
            or rel.parts[0] in (".git", ".venv", "index", "data")
            or (rel.parts[0] == "test-artifacts" or "node_modules" in rel.parts or "__pycache__" in rel.parts)
        ):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for name in re.findall(r"\bVRAAGBAAK_[A-Z0-9_]*[A-Z0-9]\b", text):
            found.setdefault(name, str(rel))
    return found


def test_the_allow_list_names_every_other_variable_the_repository_uses():
    found = _repo_env_names()
    found.pop("VRAAGBAAK_NAME", None)  # docs: VRAAGBAAK_<NAME>
    unknown = {n: where for n, where in found.items() if n not in known_env_vars()}
    assert not unknown, f"VRAAGBAAK_* variables that are no setting: add them to rag.settings.OTHER_ENV_VARS: {unknown}"
    stale = OTHER_ENV_VARS - set(found)
    assert not stale, f"OTHER_ENV_VARS names variables nothing uses any more: {stale}"


# --------------------------------------------------------------------------- secrets


def test_llm_api_key_is_secret_and_reaches_the_backend(monkeypatch):
    monkeypatch.setenv("VRAAGBAAK_LLM_API_KEY", "sk-env-123")
    s = Settings()
    assert isinstance(s.llm_api_key, SecretStr) and s.llm_api_key.get_secret_value() == "sk-env-123"
    assert "sk-env-123" not in repr(s) and "sk-env-123" not in s.model_dump_json()
    assert "llm_api_key" not in s.public_dump()

    from rag.llm.openai_compat import OpenAIBackend

    backend = OpenAIBackend.from_settings(s)
    assert backend._client.api_key == "sk-env-123"
    assert Settings().llm_api_key.get_secret_value() == "sk-env-123"
    monkeypatch.delenv("VRAAGBAAK_LLM_API_KEY")
    assert Settings().llm_api_key.get_secret_value() == ""  # empty = none


def test_every_secret_is_a_secretstr():
    names = {n for cls in ALL_CLASSES for n in cls.model_fields if re.search(r"(key|token|secret|password)$", n)}
    for cls in ALL_CLASSES:
        for n in names & set(cls.model_fields):
            assert n in S.secret_fields(cls), f"{cls.__name__}.{n} is not a SecretStr"
    assert {"llm_api_key", "slack_bot_token", "slack_signing_secret", "slack_app_token", "teams_app_password"} <= names


def test_bot_secrets_are_left_out_of_the_public_dump(monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-secret")
    monkeypatch.setenv("TEAMS_APP_PASSWORD", "pw-secret")
    dump = json.dumps(BotSettings().public_dump())
    assert "secret" not in dump and "slack_bot_token" not in dump and "teams_app_id" in dump


def test_eval_run_files_never_hold_a_secret(tmp_path, hash_embedder):
    from eval import run as R
    from rag.indexing import ingest_paths

    secret = "sk-do-not-store-4711"
    settings = Settings(
        index_dir=tmp_path / "index", models_dir=tmp_path / "models", llm_api_key=secret, refusal_min_score=0.0
    )
    ingest_paths([DEMO_CORPUS], settings, hash_embedder)
    gold = tmp_path / "gold.jsonl"
    gold.write_text(
        json.dumps(
            {
                "id": "q1",
                "question": "Hoeveel plekken krijgt de Sint Petersburgweg?",
                "type": "answerable",
                "key_facts": ["600"],
                "reference_answer": "600.",
                "expect_refusal": False,
            }
        ),
        encoding="utf-8",
    )
    cfg = R.RunConfig(dataset="demo", data=str(gold), index_dir=str(settings.index_dir))
    run_dir, _ = R.run(
        cfg,
        run_dir=tmp_path / "run",
        settings=settings,
        embedder=hash_embedder,
        llm=ScriptedLLM("Er komen 600 plekken [1]."),
        progress=False,
        log=lambda m: None,
    )
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert files and all(secret.encode() not in p.read_bytes() for p in files)
    saved = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    assert "llm_api_key" not in saved["settings"] and saved["settings"]["fusion"] == settings.fusion


# --------------------------------------------------------------------------- package data


def test_shipped_prompts_and_widget_assets_are_package_data():
    from importlib.resources import files

    from rag.prompts import PromptSet, shipped_dir
    from service.widget import STATIC, load_assets

    assert shipped_dir() == files("prompts") and (shipped_dir() / "system.md").is_file()
    assert PromptSet().folders == [files("prompts")]
    assert STATIC == files("service.widget") / "static" and load_assets().files["widget-app.js"].body


def test_a_sites_prompt_folder_from_the_settings_overrides_shipped_files(tmp_path, monkeypatch):
    from rag.prompts import PromptSet

    (tmp_path / "refusal.txt").write_text("Geen antwoord.", encoding="utf-8")
    monkeypatch.setenv("VRAAGBAAK_PROMPTS_DIR", str(tmp_path))
    ps = PromptSet(Settings().prompts_dir)
    assert ps.refusal == "Geen antwoord." and ps.folders[0] == tmp_path and "Geen antwoord." in ps.system()
