"""The ``tierline`` command line: serve, ui, demo, db upgrade, keys create."""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Annotated

import typer

from api.settings import PROJECT_ROOT, get_settings

app = typer.Typer(
    help="tierline: human-in-the-loop decisions with certified automation.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")

UI_ENTRY = PROJECT_ROOT / "review_ui" / "app.py"


def _logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _exit_cleanly_on_signals() -> None:
    """uvicorn shuts down gracefully, then re-raises SIGINT/SIGTERM: exit 0 on them."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: sys.exit(0))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
) -> None:
    """Run the HTTP API (migrates the database first)."""
    import uvicorn

    _logging()
    if workers > 1:
        typer.echo(
            "error: --workers > 1 needs the PostgreSQL scale-out (not available yet); "
            "run one process",
            err=True,
        )
        raise typer.Exit(2)
    _exit_cleanly_on_signals()
    uvicorn.run(
        "api.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        access_log=access_log,
        timeout_graceful_shutdown=10,
    )


@app.command()
def ui(port: Annotated[int, typer.Option(help="Port of the review UI.")] = 8501) -> None:
    """Run the Streamlit review UI (it finds the API at TIERLINE_API_URL)."""
    os.execvp(sys.executable, ui_command(port))


def ui_command(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(UI_ENTRY),
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--client.toolbarMode",
        "minimal",
        "--browser.gatherUsageStats",
        "false",
        "--server.address",
        "127.0.0.1",
    ]


@app.command()
def demo(
    api_port: Annotated[int, typer.Option(help="Port of the API.")] = 8000,
    ui_port: Annotated[int, typer.Option(help="Port of the review UI.")] = 8501,
    rate: Annotated[float, typer.Option(help="Cases fed per second.")] = 1.0,
) -> None:
    """Start the API and the review UI with a demo task fed from a shipped data set."""
    from api.demo import run_demo

    _logging()
    run_demo(api_port=api_port, ui_port=ui_port, rate=rate)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def simulate(ctx: typer.Context) -> None:
    """Replay a labelled stream through routing, risk controller and learner
    (`tierline simulate --help` lists the options: --dataset, --target-error, --seeds,
    --reviewer-capacity, --out, ...)."""
    from learner.simulate import main as simulate_main

    raise typer.Exit(simulate_main(ctx.args))


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Create or upgrade the database schema (TIERLINE_DATABASE_URL)."""
    from api import migrate

    _logging()
    migrate.upgrade(get_settings().database_url, revision)
    typer.echo(f"database upgraded to {revision}")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A name for the key's holder.")],
    role: Annotated[str, typer.Option(help="admin, service, reviewer or analyst.")],
) -> None:
    """Create an API key and print it (it is shown only once)."""
    from api import migrate
    from api.db import Database
    from api.schemas import KeyCreate
    from api.services.keys import create_key

    settings = get_settings()
    try:
        body = KeyCreate(name=name, role=role)  # type: ignore[arg-type]
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    migrate.upgrade(settings.database_url)
    db = Database(settings.database_url)
    with db.write() as session:
        created = create_key(session, body)
    db.dispose()
    typer.echo(f"{created.role} key {created.id} ({created.name}): {created.key}")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
