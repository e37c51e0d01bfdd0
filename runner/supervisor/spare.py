"""The spare interpreter of `--standby`, run by path in the service's own Python.

    python spare.py MAIN MODULES(comma-joined) [SERVICE_ARGS...]   (fd 0: a socket to the runner)

It imports the third-party modules the runner found, reports on fd 0 whether
it is fit to become the service ("ready", or why not), then blocks reading fd
0 (no CPU) until the runner sends `g`. Then it runs MAIN as `python MAIN
ARGS` would: in the real `__main__` module, `__spec__` None and `__file__`
set (so multiprocessing spawn children re-run the main), `sys.argv` as given,
the code root first on `sys.path`, the signal handlers and mask of a fresh
interpreter, stdin on /dev/null, and its own frames hidden from tracebacks.

It is unfit when an import started a Python thread or opened a socket (state
made while waiting, maybe stale: a connection, a timer) or imported a module
of the code root (which must be fresh at every start). Only the standard
library, and Python 3.8 syntax: it runs in whatever Python serves the code.
"""

import _thread
import builtins
import importlib.machinery
import importlib.util
import os
import signal
import sys

HERE = os.path.abspath(__file__)


def main():
    """Prepare, report, wait, then become the service."""
    main_file, modules, args = os.path.abspath(sys.argv[1]), sys.argv[2], sys.argv[3:]
    root = os.path.dirname(os.path.realpath(main_file))
    fresh = _signal_state()
    sys.argv = [sys.argv[1], *args]  # libraries may read it at import, as in a cold start
    if hasattr(sys, "orig_argv"):
        sys.orig_argv = [sys.orig_argv[0], *sys.argv]
    sys.path[0] = root
    problem = _preimport([name for name in modules.split(",") if name], root)
    os.write(0, ("ready" if problem is None else "unfit " + problem).encode() + b"\n")
    if problem is not None or os.read(0, 1) != b"g":
        os._exit(0)
    _restore_signals(fresh)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    _run_as_main(main_file)


def _preimport(names, root):
    """Import each third-party name; None, or what made this process unfit."""
    for name in names:
        try:
            spec = importlib.util.find_spec(name.partition(".")[0])  # imports nothing of it
            if spec is None or (spec.origin or "").startswith(root + os.sep):
                continue
            importlib.import_module(name)
        except BaseException:
            continue  # the service imports it again and shows the error where it belongs
        problem = _unfit(root)
        if problem is not None:
            return f"importing {name} {problem}"
    return None


def _unfit(root):
    """Why the state after an import differs from a cold start's, or None."""
    if _thread._count():
        return "started a thread"
    for fd in os.listdir("/proc/self/fd"):
        try:
            if fd != "0" and os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                return "opened a socket"
        except OSError:
            continue  # the listing's own fd, already closed
    for module in list(sys.modules.values()):
        if (getattr(module, "__file__", None) or "").startswith(root + os.sep):
            return f"imported {module.__name__} from the code root"
    return None


def _signal_state():
    """The handlers and mask of this fresh interpreter, before any import."""
    handlers = {}
    for signum in signal.valid_signals():
        try:
            handlers[signum] = signal.getsignal(signum)
        except (OSError, ValueError):
            continue
    return handlers, signal.pthread_sigmask(signal.SIG_BLOCK, [])


def _restore_signals(fresh):
    handlers, mask = fresh
    for signum, handler in handlers.items():
        if handler is not None and signal.getsignal(signum) is not handler:
            signal.signal(signum, handler)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _run_as_main(main_file):
    """Run the main in the real `__main__` module, as `python MAIN` does.

    A main that is gone or does not compile (a save with a typo) ends as a cold
    start's does: the same message and status, no frame of this file.
    """
    # Only locals from here: this module's own names go when its namespace becomes the main's.
    system, builtins_module = sys, builtins
    hook = _hiding_our_frames(sys.excepthook, system)
    system.excepthook = hook
    try:
        with open(main_file, "rb") as f:
            source = f.read()
    except OSError as exc:
        python = getattr(sys, "orig_argv", [sys.executable])[0]
        sys.stderr.write(f"{python}: can't open file {main_file!r}: "
                         f"[Errno {exc.errno}] {exc.strerror}\n")
        raise SystemExit(2) from None
    code = compile(source, main_file, "exec", dont_inherit=True)
    loader = importlib.machinery.SourceFileLoader("__main__", main_file)
    namespace = sys.modules["__main__"].__dict__
    namespace.clear()
    namespace.update(
        __name__="__main__", __doc__=None, __package__=None, __spec__=None, __loader__=loader,
        __file__=main_file, __cached__=None, __builtins__=builtins_module,
    )
    exec(code, namespace)


def _hiding_our_frames(excepthook, system):
    """An excepthook that drops this file's frames, so tracebacks look like a cold start's."""
    here = HERE

    def hook(kind, value, tb):
        while tb is not None and tb.tb_frame.f_code.co_filename == here:
            tb = tb.tb_next
        if isinstance(value, BaseException):
            value.__traceback__ = tb  # what the default hook prints
        if system.excepthook is hook:
            system.excepthook = excepthook
        excepthook(kind, value, tb)

    return hook


main()
