"""The analyzer's exception tree; every error carries what the user should do about it.

    AnalyzerError                 base; ``hint`` says what to do
    ├── ConfigError               a config file or option is wrong (names the field and the fix)
    ├── InputError                a snapshot file or directory cannot be read or understood
    ├── SourceError               a Google API call failed
    │   ├── PermissionDeniedError  names the IAM role to grant
    │   ├── ApiDisabledError       names the API to enable
    │   ├── CredentialsError       says how to log in
    │   └── QuotaExhaustedError    retries ran out against the read quota
    ├── NoDataError               nothing at all could be analyzed
    └── DeliveryError             a report or digest could not be written or sent

Errors are raised where they happen and caught only at the edges (the CLI, the job entry point),
which turn them into a message and an exit code. A per-service or per-file failure inside a run
is not raised: it is recorded as a ``Problem`` and shown in the report.
"""

from __future__ import annotations


class AnalyzerError(Exception):
    """Base of every error the analyzer raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.hint}" if self.hint else self.message


class ConfigError(AnalyzerError):
    """A config file or command-line option is invalid."""

    exit_code = 2


class InputError(AnalyzerError):
    """A snapshot file or directory cannot be read or understood."""

    exit_code = 3


class SourceError(AnalyzerError):
    """A call to a Google API failed."""

    exit_code = 4


class PermissionDeniedError(SourceError):
    """The caller lacks an IAM permission; the hint names the role."""


class ApiDisabledError(SourceError):
    """An API is not enabled on the project; the hint says how to enable it."""


class CredentialsError(SourceError):
    """No usable Application Default Credentials."""


class QuotaExhaustedError(SourceError):
    """The read quota stayed exhausted past the retry deadline."""


class NoDataError(AnalyzerError):
    """Nothing at all could be analyzed."""

    exit_code = 5


class DeliveryError(AnalyzerError):
    """A report, shard or digest could not be written or sent."""

    exit_code = 6
