"""What every settings section shares: how it reads the environment, and the errors a
configuration mistake raises (one line each, naming the variable)."""

import json

from pydantic import BeforeValidator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The development secret is public (it is in this file), so production refuses it.
DEVELOPMENT_SECRET = "kamiyo-development-secret-do-not-use-in-production"  # noqa: S105
MIN_SECRET_LENGTH = 32


class InsecureSettingsError(RuntimeError):
    """Production was asked to start with settings that would expose it."""


class ConfigurationError(ValueError):
    """A setting cannot work as given; the message names it and says what to put there."""


def section_config(env_prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(
        env_prefix=env_prefix,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        hide_input_in_errors=True,  # errors must never echo a secret back
    )


_JSON_EXPECTED = {
    "Expecting value": "expected a value",
    "Expecting property name enclosed in double quotes": "expected a name in double quotes",
    "Expecting ',' delimiter": "expected a comma",
    "Expecting ':' delimiter": "expected a colon",
}


def json_setting(example: str) -> BeforeValidator:
    """Parse a JSON variable ourselves, so a mistake is one line that never repeats the value."""

    def parse(value: object) -> object:
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            found = _JSON_EXPECTED.get(exc.msg, exc.msg.lower())
            raise ValueError(
                f"is not valid JSON: {found} at character {exc.pos + 1}; write it as {example}"
            ) from None

    return BeforeValidator(parse)


# validate_by_name as a class argument, where the mypy plugin sees it: Python code passes field
# names, the environment the aliases.
class Section(BaseSettings, validate_by_name=True):
    """One part of the settings. Subclasses set ``model_config = section_config(prefix)``."""

    @classmethod
    def env_name(cls, field: str) -> str:
        """The variable that sets ``field`` (``KAMIYO_…``)."""
        info = cls.model_fields.get(field)
        if info is not None and isinstance(info.validation_alias, str):
            return info.validation_alias.upper()
        if info is None:  # errors from the environment name the variable already
            return field.upper()
        return f"{cls.model_config.get('env_prefix', '')}{field}".upper()
