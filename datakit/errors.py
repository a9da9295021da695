"""Error classes per failure family; each message names the file, row and field it is about."""

from __future__ import annotations


class DatakitError(Exception):
    """Base of every error datakit raises on purpose; `exit_code` is what the CLI returns for it."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        row: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.row = row
        self.field = field

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path + (f":{self.row}" if self.row is not None else "") + ": "
        if self.field:
            where += self.field + ": "
        return where + self.message


class InputError(DatakitError):
    """Input that cannot be used at all: missing, unreadable, corrupt, unsupported or empty (exit 2).

    `row` is the 1-based line (text formats) or row number where the problem was found, when known.
    """

    exit_code = 2


class DataError(DatakitError):
    """Readable input whose content breaks the record rules at a known row (exit 1).

    Raised by readers when a row cannot even be loaded next to its neighbours, e.g. a JSON Lines
    field that is a boolean in earlier rows and a string here.
    """

    exit_code = 1


class SchemaError(DatakitError):
    """A schema that is unknown, unreadable, or uses JSON Schema features datakit cannot check (exit 2)."""

    exit_code = 2


class UsageError(DatakitError):
    """Bad command-line arguments or API parameters (exit 2)."""

    exit_code = 2


class RecipeError(DatakitError):
    """A recipe that cannot run: bad YAML, unknown step or parameter, wrong type, cycle, missing input (exit 2).

    `path` is the recipe file, `row` the 1-based line of the offending key, `field` its dotted key.
    """

    exit_code = 2


class StepError(DatakitError):
    """A step that broke while running (a bug or a resource it could not reach), named with its shard (exit 1).

    Row-level failures are not errors: they go to the step's failed table. This is for the rest.
    """

    exit_code = 1


class RunStateError(DatakitError):
    """A run directory in a state the command cannot work with: interrupted, locked, or not a run (exit 2)."""

    exit_code = 2


class EngineError(DatakitError):
    """A model or engine that cannot be used: missing package, unloadable model, unsupported option (exit 2)."""

    exit_code = 2
