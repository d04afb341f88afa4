"""Ingestion: find source files and parse them into ``Document`` objects.

>>> from rag.ingest import discover, parse_file, IngestError
>>> docs = [parse_file(p, root=Path("data")) for p in discover([Path("data")])]

See :mod:`rag.ingest.parsers` for the formats, the ``doc_id`` rule and metadata files.
"""

from rag.ingest.common import decode_text, guess_doc_type, slugify
from rag.ingest.discover import SUPPORTED_EXTENSIONS, discover
from rag.ingest.errors import IngestError
from rag.ingest.parsers import IngestResult, parse_file, parse_paths

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "IngestError",
    "IngestResult",
    "decode_text",
    "discover",
    "guess_doc_type",
    "parse_file",
    "parse_paths",
    "slugify",
]
