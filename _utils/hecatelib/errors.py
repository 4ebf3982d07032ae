"""hecate's exceptions, in one place so that execution modules, states, the engine and the runner share the
types (a loader module's own classes cannot be imported by another loader module: states would have to
guess from attributes). All are Salt's ``CommandExecutionError``, so Salt reports them as one line."""

from salt.exceptions import CommandExecutionError


class ApiError(CommandExecutionError):
    """A vendor API answered with an error (``status`` is the HTTP status, 0 for no answer)."""

    def __init__(self, message, status=0, body=None, timed_out=False):
        super().__init__(message)
        self.status = status
        self.body = body
        self.timed_out = timed_out


class Conflict(ApiError):
    """A check-and-set write lost: someone else wrote since we read (Caddy's 412, Nomad's modify index)."""


class OutcomeUnknown(ApiError):
    """A write went out and no answer came back, and a read could not tell whether it took effect."""


class LockError(CommandExecutionError):
    """The deploy lock could not be taken or kept."""


class LockTimeout(LockError):
    """Another holder kept the lock past our timeout. ``holder`` describes it (a dict, may be empty)."""

    def __init__(self, message, holder=None):
        super().__init__(message)
        self.holder = holder or {}


class LockLost(LockError):
    """Our session ended (not renewed in time, destroyed by an operator): stop writing."""


class RecordError(CommandExecutionError):
    """A deployment record could not be written or read."""
