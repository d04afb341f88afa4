"""Vraagbaak: retrieval-augmented question answering in Dutch, with citations.

The pipeline: ingest (rag.ingest, rag.chunking) → index (rag.index) → retrieve
(rag.retrieve) → build context → generate → attribute.
"""

__version__ = "0.1.0"
