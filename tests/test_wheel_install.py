"""A wheel install works, not only an editable one: the wheel is built from a copy of the
sources, installed without dependencies into a fresh virtual environment that sees this
environment's packages (a .pth file), and run from a folder outside the checkout: the shipped
prompts load, the widget assets are found, ``vraagbaak --help`` lists the front-ends' commands, and
the installed package indexes a demo document and answers a question with the real default models."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

# what the wheel is built from (the sdist's content); nothing else of the checkout
SOURCES = ["pyproject.toml", "README.md", "rag", "service", "eval", "prompts"]

CHECK = r"""
import json, sys
from pathlib import Path
import prompts, rag, service.widget
from rag.prompts import PromptSet, shipped_dir
from service.widget import STATIC, load_assets

site_dir = Path(sys.argv[1]).resolve()
for mod in (rag, prompts, service.widget):
    assert site_dir in Path(mod.__file__).resolve().parents, (mod.__name__, mod.__file__)
ps = PromptSet()
site = PromptSet(Path(sys.argv[2]))
assets = load_assets()
print(json.dumps({
    "prompt_files": {name: (shipped_dir() / name).read_text(encoding="utf-8") for name in sys.argv[3:]},
    "versions": ps.versions,
    "system": ps.system(),
    "site_refusal": site.refusal,
    "static": str(STATIC),
    "widget_version": assets.version,
    "widget_files": sorted(assets.files),
}))
"""


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> str:
    proc = subprocess.run(args, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args[:3]}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_wheel_install_outside_the_checkout(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("VRAAGBAAK_")}
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        p = REPO / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "runs"))
        else:
            shutil.copy2(p, src / name)

    wheels = tmp_path / "wheels"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), "."],
        cwd=src,
        env=env,
    )
    (wheel,) = wheels.glob("vraagbaak-*.whl")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path, env=env)
    python = venv / "bin" / "python"
    site_dir = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path, env=env
        ).strip()
    )
    # this environment's packages (the dependencies), after the fresh ones
    (site_dir / "shared-deps.pth").write_text("\n".join(site.getsitepackages()) + "\n", encoding="utf-8")
    _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
        cwd=tmp_path,
        env=env,
    )

    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "site-prompts").mkdir(parents=True)
    (elsewhere / "site-prompts" / "refusal.txt").write_text("Dat weet ik niet.", encoding="utf-8")
    shipped = sorted(p.name for p in (REPO / "prompts").iterdir() if p.suffix in (".md", ".txt", ".json"))
    out = json.loads(_run([str(python), "-c", CHECK, str(site_dir), "site-prompts", *shipped], cwd=elsewhere, env=env))

    for name in shipped:  # every prompt file is in the wheel, unchanged
        assert out["prompt_files"][name] == (REPO / "prompts" / name).read_text(encoding="utf-8"), name
    assert (
        set(out["versions"])
        == {"system", "refusal", "context", "condense", "condense_question", "condense_examples", "few_shot"}
        and out["system"]
    )
    assert out["site_refusal"] == "Dat weet ik niet."  # a site's own prompt folder still overrides
    assert Path(out["static"]).resolve().is_relative_to(site_dir.resolve())
    assert out["widget_files"] == ["widget-app.js", "widget.css"] and out["widget_version"]

    help_text = _run([str(venv / "bin" / "vraagbaak"), "--help"], cwd=elsewhere, env=env)
    assert "Vraagbaak" in help_text and all(c in help_text for c in ("serve", "keys", "eval", "bots"))

    # the installed wheel answers a question with the real default models (outside the checkout)
    docs = elsewhere / "docs"
    docs.mkdir()
    shutil.copy2(REPO / "data" / "voorbeeld" / "begroting-2016-welzijn-gezondheid-zorg-sociaal-domein.txt", docs)
    vraagbaak, index = str(venv / "bin" / "vraagbaak"), str(elsewhere / "index")
    _run([vraagbaak, "ingest", "docs", "--index-dir", index], cwd=elsewhere, env=env)
    question = "Sinds wanneer is de gemeente verantwoordelijk voor de zorgtaken die vroeger onder de AWBZ vielen?"
    answer = json.loads(_run([vraagbaak, "ask", question, "--json", "--index-dir", index], cwd=elsewhere, env=env))
    assert not answer["refused"] and answer["citations"], answer
    assert "2015" in answer["answer"], answer["answer"]
