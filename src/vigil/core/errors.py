"""The one exception tree of vigil.

Every error that crosses a module boundary is a :class:`VigilError`. Adapters translate foreign
errors (OpenCV, onnxruntime, SQLAlchemy, PIL) into one of these, so the CLI and the API map them
to exit codes and problem+json exactly once.

    VigilError
    ├── ConfigError            settings or a config file are wrong
    │   └── NotSupportedError  not possible in this deployment (a backup of a PostgreSQL catalog)
    ├── InputError             bad user input (image, argument, metadata)
    │   ├── ImageError         unreadable, non-image, decompression bomb
    │   ├── NoFaceError        no face where one was required
    │   └── MultipleFacesError several faces where one was required
    ├── ModelError             a model file is missing, corrupt or incompatible
    ├── NotFoundError          a gallery, identity or template does not exist
    ├── ConflictError          the operation clashes with stored state
    ├── ForbiddenError         refused by policy (sensitive traits, expired watchlist, ...)
    ├── SourceUnavailableError a camera or video source cannot be reached
    └── DecodeError            a video stream or file cannot be decoded
"""

from __future__ import annotations


class VigilError(Exception):
    """Base of every error vigil raises on purpose.

    ``hint`` tells the user what to do about it.
    """

    title = "vigil error"
    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(VigilError):
    title = "invalid configuration"
    exit_code = 2


class NotSupportedError(ConfigError):
    """This deployment cannot do that (``vigil backup`` on a PostgreSQL catalog): HTTP 501."""

    title = "not supported by this deployment"


class InputError(VigilError):
    title = "invalid input"
    exit_code = 3


class ImageError(InputError):
    title = "unreadable image"


class NoFaceError(InputError):
    title = "no face found"


class MultipleFacesError(InputError):
    title = "several faces found"


class ModelError(VigilError):
    title = "model error"
    exit_code = 4


class NotFoundError(VigilError):
    title = "not found"
    exit_code = 5


class ConflictError(VigilError):
    title = "conflict"
    exit_code = 6


class ForbiddenError(VigilError):
    title = "forbidden"
    exit_code = 7


class SourceUnavailableError(VigilError):
    title = "source unavailable"
    exit_code = 8


class DecodeError(VigilError):
    title = "decode error"
    exit_code = 9
