"""What a command-line process does around its work: import a module it will need on a
background thread, and end without the interpreter's teardown.

The CLI itself (:mod:`register.run`) stays ``build_parser()`` and ``main()``; these two are for
the process that runs it: the ``register`` console script and ``python -m register.run``.
"""
from __future__ import annotations

import os
import sys
import threading
from importlib import import_module
from typing import Callable, NoReturn


def preload(module: str) -> threading.Thread:
    """Import ``module`` on a daemon thread, started and returned; a failure is left to the
    real import where the module is used. (The figure module's matplotlib import, 0.3 s,
    overlaps the registration.)"""

    def _import() -> None:
        try:
            import_module(module)
        except Exception:  # noqa: BLE001 - reported where the module is used
            pass

    thread = threading.Thread(target=_import, daemon=True)
    thread.start()
    return thread


def exit_after(main: Callable[[], int]) -> NoReturn:
    """Call ``main``, flush stdout and stderr, then ``os._exit`` with its status.

    ``main`` must have written and closed every output by then: the interpreter's teardown is
    skipped (tearing down torch, OpenCV and matplotlib took 0.4-0.5 s after importing them;
    docs/results.md, "Speed, session 16"). An exception from ``main`` ends the normal way.
    """
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def console() -> NoReturn:
    """The ``register`` console script: :func:`register.run.main` in :func:`exit_after`."""
    from .run import main

    exit_after(main)
