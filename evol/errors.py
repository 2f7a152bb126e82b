"""The one error hierarchy of evol: each message says what to do; the CLI maps classes to exit codes."""

from __future__ import annotations


class EvolError(Exception):
    """Base class; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class ConfigError(EvolError):
    """A bad option, config file or prompt template."""

    exit_code = 2


class InputError(EvolError):
    """Seed or dataset files that cannot be read or understood."""

    exit_code = 3


class TemplateError(ConfigError):
    """A prompt template with missing or unknown slots."""


class BackendError(EvolError):
    """Anything that went wrong talking to the LLM endpoint."""

    exit_code = 4
    #: whether waiting and sending again may help
    transient = False
    #: whether the whole run must stop (no later call can succeed either)
    fatal = False
    #: seconds the server asked us to wait, if it said
    retry_after: float | None = None

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class TransientBackendError(BackendError):
    """429, 5xx, timeouts, dropped connections: worth retrying."""

    transient = True


class RateLimitedError(TransientBackendError):
    """HTTP 429."""


class RequestRejectedError(BackendError):
    """A 4xx for this one request (bad request, content policy): fail the item, not the run."""


class FatalBackendError(BackendError):
    """401/403/404 or an unreachable endpoint: no call can succeed, stop the run."""

    fatal = True


class RunLockedError(EvolError):
    """Another live process is writing into the same run directory."""

    exit_code = 5


class Interrupted(EvolError):
    """Ctrl-C: the calls in flight finished and are kept, no new one starts; the same command resumes."""

    exit_code = 130


class BudgetExceeded(EvolError):
    """The run reached --budget-usd; everything so far is saved and resumable."""

    exit_code = 6
