"""The ``tierline`` command line: serve, ui, demo, db upgrade, keys create."""

from __future__ import annotations

import logging
import os
import signal
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from api.settings import PROJECT_ROOT, Settings, get_settings

app = typer.Typer(
    help="tierline: human-in-the-loop decisions with certified automation.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
model_app = typer.Typer(help="Model lineage (roll back).", no_args_is_help=True)
import_app = typer.Typer(
    help="Import cases, or labelled history, into a task (works on TIERLINE_DATABASE_URL).",
    no_args_is_help=True,
)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(model_app, name="model")
app.add_typer(import_app, name="import")
audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")

UI_ENTRY = PROJECT_ROOT / "review_ui" / "app.py"


def _checked_settings() -> Settings:
    """The settings, or a one-line error and exit 2 (not a traceback from the server)."""
    try:
        settings = get_settings()
        _ = settings.signing_secret
    except ValidationError as exc:
        error = exc.errors()[0]
        names = [str(part).upper() for part in error["loc"] if part != "__root__"]
        where = f"TIERLINE_{names[0]}: " if names else ""  # the variable, not pydantic's path
        typer.echo(f"error: {where}{error['msg'].removeprefix('Value error, ')}", err=True)
        raise typer.Exit(2) from None
    except RuntimeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    return settings


def _count(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless one: "1 row", "2,000 rows"."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # httpx logs every webhook request with its full URL, credentials and tokens included
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _exit_cleanly_on_signals() -> None:
    """uvicorn shuts down gracefully, then re-raises SIGINT/SIGTERM: exit 0 on them."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: sys.exit(0))


def _migrate(database_url: str, revision: str = "head", *, create: bool = False) -> None:
    """Bring the database's schema up to date, or exit 2 with one line: the URL cannot be
    used, or (unless ``create``) it names an SQLite file that does not exist (a mistyped
    path must not become an empty database that, say, ``audit verify`` calls intact)."""
    from sqlalchemy.exc import ArgumentError, OperationalError

    from api import migrate
    from api.db import safe_url

    if not create and database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///"))
        if not path.exists():
            typer.echo(
                f"error: no database at {path} (TIERLINE_DATABASE_URL); "
                "`tierline db upgrade` creates one",
                err=True,
            )
            raise typer.Exit(2)
    try:
        migrate.upgrade(database_url, revision)
    except (ArgumentError, OperationalError, ModuleNotFoundError) as exc:
        reason = str(exc).strip().splitlines()[0][:300]
        typer.echo(f"error: cannot open the database {safe_url(database_url)}: {reason}", err=True)
        raise typer.Exit(2) from exc


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes (PostgreSQL only; they share the models).")
    ] = 1,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
) -> None:
    """Run the HTTP API (migrates the database first)."""
    import uvicorn

    _logging()
    url = _checked_settings().database_url
    if workers > 1 and not url.startswith("postgresql"):
        typer.echo(
            "error: --workers > 1 needs PostgreSQL (TIERLINE_DATABASE_URL=postgresql+psycopg://"
            "...): on SQLite one process serves the models; run one process",
            err=True,
        )
        raise typer.Exit(2)
    _migrate(url, create=True)  # as the app does at start, but a bad URL is one line here
    if workers == 1:
        _exit_cleanly_on_signals()  # with workers, uvicorn's supervisor handles the signals
    uvicorn.run(
        "api.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        access_log=access_log,
        timeout_graceful_shutdown=10,
        timeout_keep_alive=max(1, round(get_settings().keep_alive_seconds)),
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
        "--theme.primaryColor",  # calm blue: a highlighted choice is not a warning
        "#1f6feb",
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
    _logging()
    _migrate(get_settings().database_url, revision, create=True)
    typer.echo(f"database upgraded to {revision}")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A name for the key's holder.")],
    role: Annotated[str, typer.Option(help="admin, service, reviewer or analyst.")],
) -> None:
    """Create an API key and print it (it is shown only once)."""
    from pydantic import ValidationError

    from api.db import Database
    from api.schemas import KeyCreate
    from api.services.keys import create_key

    settings = get_settings()
    try:
        body = KeyCreate(name=name, role=role)  # type: ignore[arg-type]
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            typer.echo(f"error: {where}: {error['msg']}", err=True)
        raise typer.Exit(2) from exc
    _migrate(settings.database_url, create=True)
    db = Database(settings.database_url)
    with db.write() as session:
        created = create_key(session, body, _cli_actor())
    db.dispose()
    typer.echo(f"{created.role} key {created.id} ({created.name}): {created.key}")


def _cli_actor():  # type: ignore[no-untyped-def]
    """Who acts from the command line (recorded in the audit trail)."""
    import getpass

    from api.security import Principal

    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return Principal(id="cli", name=f"tierline CLI ({user})", role="admin")


@keys_app.command("rotate")
def keys_rotate(
    key_id: Annotated[str, typer.Argument(help="The id of the key to replace (k_...).")],
    grace: Annotated[
        float, typer.Option(min=0, help="Seconds the old key keeps working.")
    ] = 3600.0,
) -> None:
    """Issue a new key with the old one's name, role and scope; the old key keeps working
    for --grace seconds, then stops. The new key is printed once."""
    from api.db import Database
    from api.errors import ServiceError
    from api.services.keys import rotate_key

    settings = get_settings()
    _migrate(settings.database_url)
    db = Database(settings.database_url)
    try:
        with db.write() as session:
            rotated = rotate_key(session, key_id, grace, _cli_actor())
    except ServiceError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from exc
    finally:
        db.dispose()
    typer.echo(
        f"{rotated.role} key {rotated.id} ({rotated.name}) replaces {rotated.replaces}, "
        f"which stops working at {rotated.old_key_expires_at}: {rotated.key}"
    )


@audit_app.command("verify")
def audit_verify(
    expect: Annotated[
        list[str] | None,
        typer.Option(
            help="A head recorded earlier, CHAIN:SEQ:HASH (as printed); repeat it per chain.",
        ),
    ] = None,
) -> None:
    """Check the audit trail's hash chains: any edited, deleted or reordered row is named.

    Exit status 0 when every chain verifies, 1 when not. Keep the heads printed at the end
    outside the database: whoever can write the database can also compute a chain again
    after editing it, or cut its newest rows, which only a head recorded earlier reveals
    (--expect CHAIN:SEQ:HASH).
    """
    from api.db import Database
    from api.services.audit import verify

    settings = get_settings()
    _migrate(settings.database_url)
    db = Database(settings.database_url)
    try:
        with db.read() as session:
            result = verify(session, expect=[_head_recorded(text) for text in expect or []])
    finally:
        db.dispose()
    for problem in result.problems[:100]:
        typer.echo(f"TAMPERED {problem}")
    if len(result.problems) > 100:
        typer.echo(f"... and {len(result.problems) - 100:,} more problems")
    for chain, (length, head) in sorted(result.chains.items()):
        typer.echo(f"chain {chain}: {length} rows, head {head} (--expect {chain}:{length}:{head})")
    verdict = "ok" if result.ok else f"FAILED ({_count(len(result.problems), 'problem')})"
    typer.echo(
        f"audit trail {verdict}: {_count(result.rows, 'row')} in "
        f"{_count(len(result.chains), 'chain')}, "
        f"{result.redacted:,} redacted"
    )
    if not result.ok:
        raise typer.Exit(1)


def _head_recorded(text: str) -> tuple[int, int, str]:
    chain, _, rest = text.partition(":")
    seq, _, digest = rest.partition(":")
    if not (chain.isdigit() and seq.isdigit() and len(digest) == 64):
        raise typer.BadParameter(f"{text!r}: expected CHAIN:SEQ:HASH, e.g. 3:129:<64 hex digits>")
    return int(chain), int(seq), digest


class Exportable(StrEnum):
    labels = "labels"
    cases = "cases"


class FileFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"
    parquet = "parquet"


class OnError(StrEnum):
    skip = "skip"
    reject = "reject"


TaskOption = Annotated[str, typer.Option("--task", "-t", help="The task's name.")]
FormatOption = Annotated[
    FileFormat | None, typer.Option("--format", "-f", help="File format (default: from suffix).")
]
OnErrorOption = Annotated[
    OnError,
    typer.Option(help="Bad rows: skip them (reported by line), or reject the whole file."),
]
ProgressOption = Annotated[bool, typer.Option(help="Show a progress bar (on stderr).")]
FileArgument = Annotated[
    Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="The file to import.")
]


def _open_store():  # type: ignore[no-untyped-def]
    """The database and a model store of our own, for commands that work on the data."""
    from api.db import Database
    from api.live import ModelStore
    from api.services.audit import act_as

    settings = get_settings()
    try:
        secret = settings.signing_secret
    except RuntimeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    _migrate(settings.database_url)
    db = Database(settings.database_url, busy_timeout_ms=settings.busy_timeout_ms)
    act_as(_cli_actor())  # imports are audited as the CLI's user
    return settings, db, ModelStore(db, secret, snapshot_every=settings.snapshot_every)


def _import(
    what: str, path: Path, task: str, fmt: FileFormat | None, on_error: OnError, progress: bool
) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeRemainingColumn

    from api.errors import ServiceError
    from api.fileformats import FileFormatError
    from api.services.imports import run_import

    _logging()
    for name in ("api", "learner"):  # replayed history's migrations are not news
        logging.getLogger(name).setLevel(logging.WARNING)
    settings, db, store = _open_store()
    console = Console(stderr=True)
    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not progress,
    )
    try:
        store.tasks.get(task)  # a task that does not exist: one line, no progress bar first
        with bar:
            tracked = bar.add_task(f"importing {what} from {path.name}", total=None)
            report = run_import(
                db,
                store,
                task,
                path,
                what,  # type: ignore[arg-type]
                on_error=on_error.value,  # type: ignore[arg-type]
                fmt=fmt.value if fmt else None,
                max_string_length=settings.max_string_length,
                max_comment_length=settings.max_comment_length,
                progress=lambda done, total: bar.update(tracked, completed=done, total=total),
            )
        store.snapshot_all()
    except (ServiceError, FileFormatError) as exc:
        detail = exc.detail if isinstance(exc, ServiceError) else str(exc)
        typer.echo(f"error: {detail}", err=True)
        raise typer.Exit(2) from exc
    finally:
        db.dispose()
    for message in report.errors[:20]:
        typer.echo(f"bad row: {message}", err=True)
    if report.bad > 20:
        typer.echo(f"... and {report.bad - 20:,} more bad rows", err=True)
    if report.rejected:
        typer.echo(
            f"rejected: {report.bad:,} of {report.rows:,} rows are bad; nothing was imported "
            "(fix them, or pass --on-error skip)",
            err=True,
        )
        raise typer.Exit(1)
    if report.bad and not report.imported and not report.existing:
        typer.echo(
            f"nothing imported: all {_count(report.bad, 'row')} are bad "
            "(is it the right file, task and --format?)",
            err=True,
        )
        raise typer.Exit(1)
    skipped = f", {_count(report.bad, 'bad row')} skipped" if report.bad else ""
    noun = what.removesuffix("s") if report.imported == 1 else what
    typer.echo(
        f"imported {report.imported:,} {noun} into {report.task} ({report.existing:,} already "
        f"there{skipped}) in {report.seconds:.1f} s ({report.rate:,.0f}/s)"
    )


@import_app.command("labels")
def import_labels(
    path: FileArgument,
    task: TaskOption,
    fmt: FormatOption = None,
    on_error: OnErrorOption = OnError.skip,
    progress: ProgressOption = True,
) -> None:
    """Warm-start a task from labelled history, in file order: each case is scored and
    routed by the model as it stands, stored, then its label is learned (prequential)."""
    _import("labels", path, task, fmt, on_error, progress)


@import_app.command("cases")
def import_cases(
    path: FileArgument,
    task: TaskOption,
    fmt: FormatOption = None,
    on_error: OnErrorOption = OnError.skip,
    progress: ProgressOption = True,
) -> None:
    """Send the cases of a CSV, JSON Lines or Parquet file through routing (streamed, in
    batches of 1,000); cases whose external_id the task has are skipped."""
    _import("cases", path, task, fmt, on_error, progress)


@app.command("export")
def export(
    what: Annotated[Exportable, typer.Argument(help="labels or cases.")],
    task: TaskOption,
    fmt: Annotated[FileFormat, typer.Option("--format", "-f", help="File format.")] = (
        FileFormat.csv
    ),
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="File to write (default: stdout).")
    ] = None,
) -> None:
    """Write a task's labels or cases as CSV, JSON Lines or Parquet (streamed)."""
    from api.errors import ServiceError
    from api.fileformats import write_file
    from api.services.exports import start_export

    _, db, _ = _open_store()
    try:
        started = start_export(db, task, what.value)  # type: ignore[arg-type]
        if out is None:
            written = write_file(sys.stdout.buffer, fmt.value, started.columns, started.chunks)
            sys.stdout.flush()
        else:
            with open(out, "wb") as handle:
                written = write_file(handle, fmt.value, started.columns, started.chunks)
    except ServiceError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from exc
    except OSError as exc:
        typer.echo(f"error: cannot write {out}: {exc.strerror}", err=True)
        raise typer.Exit(2) from exc
    finally:
        db.dispose()
    typer.echo(f"exported {written:,} {what.value} of {started.task}", err=True)


@model_app.command("rollback")
def model_rollback(
    task: Annotated[str, typer.Option("--task", "-t", help="The task's name.")],
    version: Annotated[int, typer.Option(help="Roll back to the newest kept snapshot <= this.")],
) -> None:
    """Roll a task's model back to a kept snapshot (stop the API processes first)."""
    from api.db import Database
    from api.errors import NotFound
    from api.lineage import RollbackError, rollback_model
    from api.services.audit import act_as

    _logging()
    act_as(_cli_actor())
    settings = get_settings()
    _migrate(settings.database_url)
    db = Database(settings.database_url)
    try:
        summary = rollback_model(db, settings.signing_secret, task, version)
    except (RollbackError, NotFound) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    finally:
        db.dispose()
    typer.echo(f"{task}: {summary}")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
