"""The JSON form of the requester SDK's answers, shared by `depin job --json` and scripts.

Each answer is a frozen pydantic model; ``model_dump(mode="json")`` is what the CLI prints.
Token amounts are decimal strings there (they exceed a JSON number's range, and the relayer's
API writes them the same way) and a job's state is its lowercase name; in Python they stay
ints and `JobState` members.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from marketplace.protocol.client import JobState

__all__ = ["StateName", "TokenAmount", "WireModel"]

#: An amount in base units: an int in Python, a decimal string in JSON.
TokenAmount = Annotated[int, PlainSerializer(str, return_type=str, when_used="json")]


def _state_name(state: JobState) -> str:
    return state.name.lower()


#: A job's state: a `JobState` in Python, its lowercase name ("open", "settled") in JSON.
StateName = Annotated[JobState, PlainSerializer(_state_name, return_type=str, when_used="json")]


class WireModel(BaseModel):
    """A frozen answer of the SDK whose JSON keys come in `json_keys` order when it is set.

    The order is part of what `--json` prints: a derived value (a computed field) sits beside
    the fields it is read with rather than after all of them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Key order of the JSON form; keys not listed follow in declaration order.
    json_keys: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _ordered(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if not self.json_keys or not isinstance(data, dict):
            return data
        first = {k: data[k] for k in self.json_keys if k in data}
        return first | {k: v for k, v in data.items() if k not in first}
