"""The runner's failures, one class per exit code of the contract.

Raising one of these anywhere in the pipeline ends the run with its exit code
and a single `error:` line; no traceback reaches the user for their mistake.
"""


class RunnerError(Exception):
    """A failure the user can act on; `str()` is the text after `error: `."""

    exit_code = 1


class UsageError(RunnerError):
    """Nothing to run, a bad flag or a bad value."""

    exit_code = 2


class ResolveError(RunnerError):
    """The code could not be fetched or is not runnable."""

    exit_code = 3


class InstallError(RunnerError):
    """A dependency step failed."""

    exit_code = 4


class ServiceError(RunnerError):
    """The service could not be kept running."""

    exit_code = 5


class Stopped(Exception):
    """The runner was asked to stop (SIGTERM/SIGINT) before the service ran.

    Raised from the signal handler so that every `finally` (temporary folders,
    child processes) runs on the way out; the exit status is 128 + signal.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
