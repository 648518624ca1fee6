"""Named, logged, timed steps: the only way the harness runs long commands.

Each step streams its commands' output to its own log file and prints a
heartbeat with the elapsed time, so a 40-minute cold build never looks hung
and a failure always points at one step and one log.
"""

from __future__ import annotations

import contextvars
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from harness import paths

HEARTBEAT_SECONDS = 30.0


class HarnessError(Exception):
    """A failure the user can act on; its message is the whole story."""


class StepFailed(HarnessError):
    """A step's command failed; the message names the step and its log."""

    def __init__(self, name: str, log_path: Path, reason: str) -> None:
        super().__init__(f"step '{name}' failed: {reason}\n  full log: {log_path}")
        self.step = name
        self.log_path = log_path


def say(message: str) -> None:
    """Progress goes to stderr so command output on stdout stays clean."""
    print(message, file=sys.stderr, flush=True)


def format_seconds(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Step:
    """A running step: runs commands with their output appended to its log."""

    def __init__(self, name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.inner = 0  # steps running inside this one: the innermost reports progress

    def log(self, message: str) -> None:
        with self.log_path.open("a") as log:
            log.write(message.rstrip("\n") + "\n")

    def run(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        stdin: Path | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> int:
        """Run argv, output to the log; a non-zero exit fails the step, unless `check` is
        off: then the exit status is the answer (a test run whose failures are its result)."""
        return self._exec(
            argv, cwd=cwd, env=env, stdin=stdin, timeout=timeout, capture=False, check=check
        )[0]

    def follow(
        self,
        argv: Sequence[str | os.PathLike[str]],
        on_line: Callable[[str], None],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> int:
        """Run argv, each line of its output (stdout and stderr, as they come) logged and
        handed to `on_line` at once; the exit status is the answer (a command whose refusals
        and retries are what is being watched, as `kubectl drain`'s). A timeout kills it and
        fails the step."""
        args, full_env = self._announce(argv, env)
        try:
            process = subprocess.Popen(
                args,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        except FileNotFoundError as exc:
            raise StepFailed(self.name, self.log_path, f"{args[0]} is not installed") from exc
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            process.kill()

        killer = threading.Timer(timeout, kill) if timeout else None
        if killer:
            killer.start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                self.log(line)
                on_line(line.rstrip("\n"))
            status = process.wait()
        finally:
            if killer:
                killer.cancel()
            if process.poll() is None:
                process.kill()
                process.wait()
        if timed_out.is_set():
            raise StepFailed(self.name, self.log_path, f"{args[0]} timed out after {timeout}s")
        return status

    def output(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> str:
        """Run argv and return its stdout; stderr goes to the log."""
        return self._exec(
            argv, cwd=cwd, env=env, stdin=None, timeout=timeout, capture=True, check=True
        )[1]

    def _announce(
        self, argv: Sequence[str | os.PathLike[str]], env: Mapping[str, str] | None
    ) -> tuple[list[str], dict[str, str] | None]:
        """The command as strings, logged; the environment with `env` laid over ours."""
        args = [os.fspath(arg) for arg in argv]
        self.log(f"$ {' '.join(args)}")
        return args, ({**os.environ, **env} if env else None)

    def _exec(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        cwd: Path | None,
        env: Mapping[str, str] | None,
        stdin: Path | None,
        timeout: float | None,
        capture: bool,
        check: bool,
    ) -> tuple[int, str]:
        args, full_env = self._announce(argv, env)
        with self.log_path.open("ab") as log:
            stdin_file = stdin.open("rb") if stdin else subprocess.DEVNULL
            try:
                result = subprocess.run(
                    args,
                    cwd=cwd,
                    env=full_env,
                    stdin=stdin_file,
                    stdout=subprocess.PIPE if capture else log,
                    stderr=log,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise StepFailed(
                    self.name, self.log_path, f"{args[0]} timed out after {timeout}s"
                ) from exc
            except FileNotFoundError as exc:
                raise StepFailed(self.name, self.log_path, f"{args[0]} is not installed") from exc
            finally:
                if stdin:
                    stdin_file.close()
        if check and result.returncode != 0:
            raise StepFailed(
                self.name, self.log_path, f"`{' '.join(args[:3])} ...` exited {result.returncode}"
            )
        return result.returncode, result.stdout.decode() if capture else ""


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _heartbeat(current: Step, started: float, done: threading.Event) -> None:
    while not done.wait(HEARTBEAT_SECONDS):
        if not current.inner:
            elapsed = format_seconds(time.monotonic() - started)
            say(f"    ... {current.name}: still running ({elapsed})")


# The step running in this thread, so a step started inside another one is known as such.
_running: contextvars.ContextVar[Step | None] = contextvars.ContextVar("step", default=None)


@contextmanager
def step(name: str) -> Iterator[Step]:
    """Announce a step, log it to its own file and report how long it took.

    A step started inside another one is named in the outer step's log, and only the
    innermost running step prints heartbeats.
    """
    log_path = paths.log_dir() / f"{time.strftime('%Y%m%d-%H%M%S')}-{_slug(name)}.log"
    log_path.write_text(f"# step: {name}\n")
    current = Step(name, log_path)
    outer = _running.get()
    if outer is not None:
        outer.log(f"inner step '{name}': {log_path}")
        outer.inner += 1
    token = _running.set(current)
    say(f"==> {name}")
    started = time.monotonic()
    done = threading.Event()
    ticker = threading.Thread(target=_heartbeat, args=(current, started, done), daemon=True)
    ticker.start()
    try:
        yield current
    except StepFailed:
        raise
    except HarnessError as exc:
        raise StepFailed(name, log_path, str(exc)) from exc
    finally:
        done.set()
        _running.reset(token)
        if outer is not None:
            outer.inner -= 1
    say(f"    {name}: done in {format_seconds(time.monotonic() - started)}")


@contextmanager
def within_step(name: str) -> Iterator[Step]:
    """The step running now, or a new one named `name`: a command is logged either way."""
    current = _running.get()
    if current is not None:
        yield current
        return
    with step(name) as new:
        yield new


def run_cli(action: Callable[[], int | None]) -> int:
    """Run a command-line action: a harness failure is one message and exit 1, never a trace."""
    try:
        return action() or 0
    except HarnessError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file or device the harness needed: the message says which
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def probe(
    argv: Sequence[str | os.PathLike[str]], *, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run a quick query command whose failure is an answer, not an error."""
    try:
        return subprocess.run(
            [os.fspath(arg) for arg in argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (FileNotFoundError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(list(map(os.fspath, argv)), 127, "", str(exc))
