"""``python -m service.bots serve|...`` and ``python -m service.bots teams manifest``."""

import typer

from service.bots.manifest import bots_app, teams_app


def main() -> None:
    app = typer.Typer(help="Vraagbaak bots (Slack, Teams).", no_args_is_help=True)
    app.add_typer(teams_app, name="teams")
    app.add_typer(bots_app, name="bots")
    app()


if __name__ == "__main__":
    main()
