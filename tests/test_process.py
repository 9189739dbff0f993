"""register.process: the background import and the fast exit of a CLI process."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from register.process import preload

REPO = Path(__file__).resolve().parents[1]


def test_preload_imports_the_module_on_a_thread():
    sys.modules.pop("colorsys", None)
    thread = preload("colorsys")
    thread.join(timeout=30)
    assert not thread.is_alive() and "colorsys" in sys.modules


def test_preload_leaves_a_failed_import_to_the_real_one():
    thread = preload("register.no_such_module")
    thread.join(timeout=30)
    assert not thread.is_alive() and "register.no_such_module" not in sys.modules


def test_exit_after_exits_with_mains_status_after_flushing():
    code = ("import sys; from register.process import exit_after\n"
            "def main():\n    print('out', end=''); print('err', end='', file=sys.stderr)\n"
            "    return 3\n"
            "exit_after(main)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out", "err")
