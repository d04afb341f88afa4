"""One module per source format; each turns raw bytes into a ``Parsed`` (sections, title, date)."""
