"""``python -m service serve|keys|feedback`` (the same commands as ``vraagbaak ...``)."""

from service.cli import main

main()
