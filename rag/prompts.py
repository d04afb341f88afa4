"""Prompt templates, loaded by name from the ``prompts/`` folder (see prompts/README.md).

Each file has a header between ``---`` lines (name, version, description) and a Jinja2 body.
``few_shot.json`` is JSON with an ``examples`` list. A site folder (``prompts_dir``) may
override single files; the rest comes from the shipped folder, the package data of the
``prompts`` package (read with ``importlib.resources``, so a wheel install finds it too).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import jinja2

SHIPPED_PACKAGE = "prompts"
_FILES = {
    "system": "system.md",
    "refusal": "refusal.txt",
    "context": "context.md",
    "condense": "condense.md",
    "condense_question": "condense_question.md",
    "condense_examples": "condense_examples.json",
    "few_shot": "few_shot.json",
}


class PromptError(Exception):
    pass


@dataclass(frozen=True)
class Template:
    name: str
    version: str
    description: str
    body: str

    def render(self, env: jinja2.Environment, **values: Any) -> str:
        try:
            return env.from_string(self.body).render(**values).strip()
        except jinja2.TemplateError as exc:
            raise PromptError(f"prompt '{self.name}': {exc}") from exc


def shipped_dir() -> Traversable:
    """The shipped prompt folder (the ``prompts`` package's files)."""
    try:
        return files(SHIPPED_PACKAGE)
    except ModuleNotFoundError:
        raise PromptError(
            f"the shipped prompts (package {SHIPPED_PACKAGE!r}) are not installed: reinstall Vraagbaak "
            "(pip install ., or pip install -e . in a checkout)"
        ) from None


def _split_header(text: str, path: Traversable) -> tuple[dict[str, str], str]:
    if not text.startswith("---"):
        return {}, text
    try:
        _, head, body = text.split("---", 2)
    except ValueError:
        raise PromptError(f"{path}: header not closed with '---'") from None
    meta: dict[str, str] = {}
    for line in head.strip().splitlines():
        key, sep, value = line.partition(":")
        if sep:
            meta[key.strip()] = value.strip()
    return meta, body.strip("\n")


class PromptSet:
    """All templates of one prompt folder."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folders: list[Traversable] = [Path(folder)] if folder else []
        self.folders.append(shipped_dir())
        self.env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False)
        self.templates = {name: self._load(name) for name in _FILES}
        # render once at start-up so an editing mistake fails early, not in an answer
        self.system()
        self.few_shot_messages()
        self.condense_messages([], "")

    def _find(self, name: str) -> Traversable:
        for folder in self.folders:
            p = folder / _FILES[name]
            if p.is_file():
                return p
        raise PromptError(f"prompt '{name}' not found in {', '.join(map(str, self.folders))}")

    def _load(self, name: str) -> Template:
        path = self._find(name)
        text = path.read_text(encoding="utf-8")
        if path.name.endswith(".json"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise PromptError(f"{path}: invalid JSON: {exc}") from exc
            return Template(name, str(data.get("version", "0")), data.get("description", ""), text)
        meta, body = _split_header(text, path)
        return Template(name, meta.get("version", "0"), meta.get("description", ""), body)

    @property
    def versions(self) -> dict[str, str]:
        return {name: t.version for name, t in self.templates.items()}

    @cached_property
    def refusal(self) -> str:
        return self.templates["refusal"].body.strip()

    def system(self) -> str:
        return self.templates["system"].render(self.env, refusal=self.refusal)

    def few_shot_messages(self) -> list[dict[str, str]]:
        data = json.loads(self.templates["few_shot"].body)
        messages: list[dict[str, str]] = []
        for ex in data.get("examples", []):
            messages.append({"role": "user", "content": self.context(ex["passages"], ex["question"])})
            answer = self.env.from_string(ex["answer"]).render(refusal=self.refusal)
            messages.append({"role": "assistant", "content": answer})
        return messages

    @cached_property
    def few_shot_text(self) -> str:
        """What the worked examples say (their questions, passages and answers), without the
        context template around them: words an answer may have copied from the examples."""
        data = json.loads(self.templates["few_shot"].body)
        parts: list[str] = []
        for ex in data.get("examples", []):
            parts += [ex["question"], ex["answer"], *(f"{p.get('section', '')} {p['text']}" for p in ex["passages"])]
        return "\n".join(parts)

    def context(self, passages: list[dict[str, Any]], question: str, dutch: bool = True) -> str:
        """The user message; a question in another language gets the reminder to answer in Dutch
        next to it (the model tends to answer in the question's language)."""
        return self.templates["context"].render(self.env, passages=passages, question=question, dutch=dutch)

    def condense_question(self, history: list[dict[str, str]], question: str) -> str:
        """The user message of the rewrite: the conversation and its last question."""
        return self.templates["condense_question"].render(self.env, history=history, question=question)

    def condense_messages(self, history: list[dict[str, str]], question: str) -> list[dict[str, str]]:
        """The rewrite of a follow-up as chat messages: the instruction and the worked examples
        (the same for every follow-up, so llama.cpp keeps their computation), then the
        conversation with its last question."""
        messages = [{"role": "system", "content": self.templates["condense"].render(self.env)}]
        data = json.loads(self.templates["condense_examples"].body)
        for i, ex in enumerate(data.get("examples", []), start=1):
            try:
                example = self.condense_question(ex["history"], ex["question"]), str(ex["rewrite"])
            except (KeyError, TypeError):
                raise PromptError(
                    f"prompt 'condense_examples': example {i} needs 'history' (a list of role and "
                    "content), 'question' and 'rewrite'"
                ) from None
            messages.append({"role": "user", "content": example[0]})
            messages.append({"role": "assistant", "content": example[1]})
        messages.append({"role": "user", "content": self.condense_question(history, question)})
        return messages
