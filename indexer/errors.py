"""The Dataset layer's one exception tree; gateway/status.py maps it to gRPC codes."""

from __future__ import annotations


class DatasetError(Exception):
    """Base of every error the Dataset layer raises."""


class InvalidInput(DatasetError):
    """The request is wrong; `field` names the offending field (or file)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class UnreadableFile(InvalidInput):
    """A file that is corrupt, empty or of a type no parser reads."""

    def __init__(self, filename: str, message: str) -> None:
        super().__init__(filename or "<unnamed file>", message)
        self.filename = filename


class NotFound(DatasetError):
    """No such collection (or none that the caller's tenant owns)."""


class AlreadyExists(DatasetError):
    pass


class NotReady(DatasetError):
    """The Dataset layer cannot serve yet (e.g. the embedding model is missing);
    the message says what to run."""
