"""The catalogue as ``kamiyo`` commands: one command per operation that declares one.

Each command's options are its operation's query fields (``--min-loss-usd``; positional where
the catalogue says so), passed as text to the same query model and pipeline every surface uses,
on the open gate (the operator's own data, the server's result cap). Exit status: 0 with an
answer; 2 when the request must change (bad arguments, nothing with that id); 1 when the
server side failed (database, internal error).
"""

import inspect
import json
import sys
from collections.abc import Callable
from typing import Any

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from kamiyo.access.gate import OpenGate
from kamiyo.cli_render import RENDERERS
from kamiyo.cli_support import execute as execute_work
from kamiyo.cli_support import fail, run, settings_or_exit
from kamiyo.config import Settings
from kamiyo.runtime import Runtime
from kamiyo.service.answers import Answer, Failure, FailureKind, Outcome
from kamiyo.service.arguments import parse_query
from kamiyo.service.catalogue import OPERATIONS, Command, Operation
from kamiyo.service.pipeline import Caller, execute
from kamiyo.service.state import ServerState

JSON_FLAG = "as_json"


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def register(app: typer.Typer) -> None:
    for operation in OPERATIONS:
        if operation.command is not None:
            app.command(operation.command.name, help=operation.description)(
                _command(operation, operation.command)
            )


def _command(operation: Operation[Any, Any], command: Command) -> Callable[..., None]:
    names = {
        field: field if field in command.arguments else flag(field)
        for field in operation.query.model_fields
    }

    def run_command(**values: Any) -> None:
        as_json = bool(values.pop(JSON_FLAG))
        query = parse_query(command.name, operation.query, values, names)
        if isinstance(query, Failure):  # through the pipeline too, without opening the database
            settings = settings_or_exit()
            outcome = execute_work(settings, lambda: _execute(settings, None, operation, query))
        else:
            outcome = run(lambda runtime: _execute(runtime.settings, runtime, operation, query))
        _show(operation, outcome, as_json)

    fields = operation.query.model_fields
    parameters = [_parameter(name, info, command) for name, info in fields.items()]
    parameters.append(
        inspect.Parameter(
            JSON_FLAG,
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(False, "--json", help="Print JSON instead of a table."),
            annotation=bool,
        )
    )
    run_command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    run_command.__name__ = command.name
    return run_command


def _parameter(name: str, info: FieldInfo, command: Command) -> inspect.Parameter:
    """A field as a typer option or argument; values travel as text to the query model."""
    help_text = info.description or ""
    if name in command.arguments:
        required = info.is_required()
        default = typer.Argument(... if required else None, help=help_text, show_default=False)
        annotation: Any = str if required else str | None
    else:
        flags = (flag(name), *command.aliases.get(name, ()))
        default = typer.Option(None, *flags, help=help_text, show_default=False)
        annotation = str | None
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


async def _execute(
    settings: Settings,
    runtime: Runtime | None,
    operation: Operation[Any, Any],
    query: BaseModel | Failure,
) -> Outcome:
    state = ServerState(
        settings=settings, gate=OpenGate(settings.answers.max_results), runtime=runtime
    )
    try:
        return await execute(state, operation, query, Caller())
    finally:
        await state.aclose()


def _show(operation: Operation[Any, Any], outcome: Outcome, as_json: bool) -> None:
    if isinstance(outcome, Failure):
        internal = outcome.kind in {FailureKind.INTERNAL, FailureKind.UNAVAILABLE}
        fail(outcome.message, code=1 if internal else 2)
    if not isinstance(outcome, Answer):  # the open gate refuses nothing
        fail(outcome.message, code=1)
    if as_json:
        sys.stdout.write(json.dumps(outcome.structured, indent=2, ensure_ascii=False) + "\n")
        return
    answer = operation.output.model_validate(outcome.structured)
    renderer = RENDERERS.get(type(answer))
    if renderer is None:
        sys.stdout.write(json.dumps(outcome.structured, indent=2, ensure_ascii=False) + "\n")
        return
    renderer(answer)
