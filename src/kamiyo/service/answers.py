"""What a call comes to, for every surface to render: an answer, a refusal or a failure."""

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import pydantic_core
from pydantic import BaseModel

from kamiyo.access.gate import LimitState, Refusal

if TYPE_CHECKING:  # x402 loads only where payments are taken
    from x402.schemas import SettleResponse


@dataclass(frozen=True, slots=True)
class Answer:
    structured: dict[str, Any]
    # The same JSON, kept on purpose: hosts that give the model only ``content`` (SEP-2200:
    # clients SHOULD) must see the whole answer; it costs ~2x bytes, ~3% of a call's CPU.
    text: str
    receipt: "SettleResponse | None" = None  # the payment this answer was bought with
    # What a payment's journal keeps to answer a retry of that payment, where it must differ
    # from the answer (a secret shown once); None: the answer itself.
    replay: dict[str, Any] | None = None
    # The caller's rate limits after this call, when the surface asked for them.
    limits: tuple[LimitState, ...] = ()

    @classmethod
    def of(cls, model: BaseModel) -> "Answer":
        # A plain class check, not a protocol's: every call's answer passes here.
        replay = None
        if isinstance(model, ShownOnce):
            replay = model.for_replay().model_dump(mode="json")
        structured = model.model_dump(mode="json")
        # Encoded from the dict, not the model again: one serialisation (~15% less of this).
        return cls(structured, pydantic_core.to_json(structured).decode(), replay=replay)


class ShownOnce(BaseModel):
    """An answer that carries something shown only once (a signing secret): it says what a
    retried payment is answered with instead, so the secret is never stored for a replay."""

    def for_replay(self) -> BaseModel:
        raise NotImplementedError


class FailureKind(StrEnum):
    INVALID_ARGUMENTS = "invalid_arguments"
    NOT_FOUND = "not_found"
    INTERNAL = "internal_error"
    UNAVAILABLE = "temporarily_unavailable"


@dataclass(frozen=True, slots=True)
class Failure:
    """The call produced no answer (and nothing was charged); ``message`` says what to do."""

    kind: FailureKind
    message: str


Outcome = Answer | Refusal | Failure

# The lists an answer's records are in, for metering how many records a call returned.
RECORD_LISTS = ("incidents", "matches", "rows", "tools")


def count_results(structured: Mapping[str, Any]) -> int | None:
    for name in RECORD_LISTS:
        value = structured.get(name)
        if isinstance(value, list):
            return len(value)
    return None
