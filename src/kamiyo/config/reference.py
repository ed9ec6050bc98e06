"""docs/configuration.md, written from the settings object itself so that it cannot drift.

``python -m kamiyo.config.reference`` (or ``make config-reference``) rewrites the file; a test
(tests/test_deploy.py) fails when the file differs from what this would write. Each variable
gets its type, default, section and the description its field declares.
"""

import sys
import types
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from kamiyo.config import Section, Settings

REFERENCE_PATH = Path("docs/configuration.md")
REGENERATE = "make config-reference"  # runs: python -m kamiyo.config.reference

HEADER = f"""# Configuration reference

Every `KAMIYO_*` variable, generated from the settings object (`src/kamiyo/config/`) by
`{REGENERATE}`; do not edit by hand (a test fails when this file and the settings differ).
Variables are read from the environment and from a `.env` file in the working directory.
JSON values are written as JSON; durations as `15m`, `1h`, `1h30m` or seconds. Secrets
belong in files or a secret store, never on a command line (see [deploy.md](deploy.md)). In
production KAMIYO refuses to start on insecure values (see "Production refuses" in deploy.md).
A description "—" means the field declares none yet (see the README's settings table).
"""


def type_name(annotation: Any) -> str:
    """A reader's name for a field's type."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return type_name(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        kept = [a for a in get_args(annotation) if a is not type(None)]
        return " or ".join(type_name(a) for a in kept)
    if origin is Literal:
        return "one of " + ", ".join(f"`{v}`" for v in get_args(annotation))
    if origin is list:
        return f"JSON list of {type_name(get_args(annotation)[0])}"
    if origin is dict:
        return "JSON object"
    if annotation is SecretStr:
        return "secret"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "object"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return "one of " + ", ".join(f"`{m.value}`" for m in annotation)
    names = {bool: "boolean", int: "integer", float: "number", str: "text", Path: "path"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def default_text(info: FieldInfo) -> str:
    if info.default_factory is not None:
        made = info.default_factory()  # type: ignore[call-arg]  # no validated data needed
        if made in ([], {}):
            return f"`{made!r}`"
        return "computed at start"  # e.g. the user data folder: differs per machine
    value = info.default
    if value is None or value is PydanticUndefined:
        return "unset"
    if isinstance(value, SecretStr):
        return "a public development value"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _rows(section_name: str, section: type[Section], own: set[str]) -> list[str]:
    rows = []
    for field, info in section.model_fields.items():
        if field not in own:
            continue
        where = f"{section_name}.{field}" if section_name else field
        rows.append(
            f"| `{section.env_name(field)}` | {_cell(type_name(info.annotation))} | "
            f"{_cell(default_text(info))} | `{where}` | {_cell(info.description or '—')} |"
        )
    return rows


def render() -> str:
    lines = [HEADER]
    top = {name for name in Settings.model_fields if name not in Settings.SECTIONS}
    sections: list[tuple[str, type[Section], set[str]]] = [("", Settings, top)]
    sections += [(n, s, set(s.model_fields)) for n, s in Settings.SECTIONS.items()]
    for name, section, own in sections:
        title = name or "environment"
        lines.append(f"## {title}\n")
        doc = (section.__doc__ or "").strip().split("\n\n")[0]
        if name and doc:
            lines.append(" ".join(doc.split()) + "\n")
        lines.append("| variable | type | default | setting | description |")
        lines.append("|---|---|---|---|---|")
        lines.extend(_rows(name, section, own))
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else REFERENCE_PATH
    target.write_text(render(), encoding="utf-8")
    sys.stderr.write(f"Wrote {target}\n")


if __name__ == "__main__":
    main()
