"""The types of query fields that are numbers or dates, strict where pydantic is lenient.

Every surface hands values over as they came: JSON values from MCP, text from REST query
strings and command-line options. So a number or a date may arrive as text ("5", "1e6",
"2023-01-31") and still parse; but a boolean is not a number, infinity is not an amount and a
number of seconds is not a date, all of which pydantic would take (true as 1, "Infinity" as a
float, 86400 as 1970-01-02). Checked before pydantic's own parsing; the JSON schemas stay
pydantic's.
"""

import datetime as dt
import re
from typing import Annotated

from pydantic import BeforeValidator, Field


def _not_a_boolean(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("must be a number, not true or false")
    return value


_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _written_as_a_day(value: object) -> object:
    if isinstance(value, dt.date) or (isinstance(value, str) and _DAY.fullmatch(value)):
        return value
    raise ValueError("must be a date as YYYY-MM-DD")


WholeNumber = Annotated[int, BeforeValidator(_not_a_boolean)]
# Its bounds sit on the number itself: outside the check pydantic would apply them as generic
# constraints, not state them in the JSON schema (``minimum``).
UsdAmount = Annotated[float, Field(ge=0, allow_inf_nan=False), BeforeValidator(_not_a_boolean)]
Day = Annotated[dt.date, BeforeValidator(_written_as_a_day)]
