"""Fuzzing every parser: mutated bytes of small valid files (eval/hostile_files.py: ``seeds``,
``mutated``) give a Document or an IngestError, never another exception, never a hang. The
longer run: ``python -m eval.hostile_files --fuzz-seconds N`` (README, "Reliability")."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings

from eval import hostile_files as hf

SEEDS = hf.seeds()
# the PDF and DOCX parsers are the slow ones (~10-50 ms an example)
EXAMPLES = {".txt": 150, ".md": 150, ".html": 150, ".json": 150, ".pdf": 60, ".docx": 60}


@pytest.mark.parametrize("suffix", hf.FUZZ_FORMATS)
def test_seeds_parse(suffix, tmp_path):
    for seed in SEEDS[suffix]:
        assert hf.check_parse(seed, suffix, tmp_path) == "ok"


@pytest.mark.parametrize("suffix", hf.FUZZ_FORMATS)
def test_mutated_files_give_a_document_or_an_ingest_error(suffix, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")

    @hsettings(
        deadline=None,
        max_examples=EXAMPLES[suffix],
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=hf.mutated(SEEDS[suffix]))
    def run(data: bytes) -> None:
        hf.check_parse(data, suffix, folder, hang_s=10)

    run()
