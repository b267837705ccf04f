"""Signals that end a run early: SIGTERM, SIGINT and SIGUSR1 -> record `interrupted`, exit 128+N.

Schedulers stop jobs with signals: Slurm sends SIGTERM at the time limit, on preemption and on
`scancel` (and on `scontrol requeue`, which slurm/array.sbatch's USR1 trap calls), and SIGUSR1
shortly before the limit to a job that asks for it with `--signal=USR1@T`; a user sends SIGINT
with Ctrl+C. SIGUSR2 stays submitit's (its own checkpoint-and-requeue handler). Whatever the
signal, the run must (1) stop, (2) leave its record at `interrupted` and `checkpoints/last.ckpt`
in place, so the next submission of the same command resumes, and (3) exit with the shell's
convention for "killed by signal N", 128 + N (SIGINT 130, SIGUSR1 138, SIGTERM 143), so no
scheduler or script reads a killed run as a success.

Without this, Lightning turns SIGTERM into `SIGTERMException`, a `SystemExit` without a code, so
the process exited 0; Ctrl+C became `sys.exit(1)`; and SIGUSR1's default action killed the
process before the record could say anything (it stayed `running`).

`trap_signals()` installs one handler for the three signals around the job. The first signal is
remembered and raised as `Interrupted`, a `KeyboardInterrupt`, which Lightning already handles as a
graceful stop (callbacks' `on_exception`, loggers finalised); further signals are only remembered,
so the shutdown and the final record write are not themselves interrupted. During `trainer.fit`
Lightning chains our SIGTERM handler after its own (signal_connector.py), and restores it after.
The caller (`cli.run_main`) turns the remembered signal into the exit status.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal; `exit_code` is 128 + the signal number."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum
        self.exit_code = 128 + signum


class SignalTrap:
    """Remembers the first of `SIGNALS` received while installed."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def name(self) -> str | None:
        return signal.Signals(self.signum).name if self.signum is not None else None

    @property
    def exit_code(self) -> int | None:
        return 128 + self.signum if self.signum is not None else None

    def handle(self, signum: int, frame) -> None:
        if self.signum is not None:
            return  # already stopping: let the shutdown and the record write finish
        self.signum = signum
        raise Interrupted(signum)


@contextlib.contextmanager
def trap_signals() -> Iterator[SignalTrap]:
    """Install the handler for SIGTERM, SIGINT and SIGUSR1; restore the previous ones on exit."""
    trap = SignalTrap()
    previous = {}
    for signum in SIGNALS:
        with contextlib.suppress(ValueError):  # not the main thread: signals are not ours to set
            previous[signum] = signal.signal(signum, trap.handle)
    try:
        yield trap
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def interruption(exc: BaseException | None) -> Interrupted | None:
    """The `Interrupted` that `exc` is, or arose while handling (Lightning's `sys.exit(1)`)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, Interrupted):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None
