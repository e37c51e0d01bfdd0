"""Run service code: `python /resources/scripts/execute_code.py [CODE] [flags]`.

A thin wrapper around the runner package. It works from the source tree (the
package sits two folders up) and from the image, where the runner lives in
its own venv: when the Python running this file cannot import the runner (the
service venv, say), it hands over to `$RUNNER_VENV/bin/python`.
"""

import os
import sys
from pathlib import Path


def _load_runner() -> None:
    source_tree = Path(__file__).resolve().parents[2]
    if (source_tree / "runner" / "__init__.py").is_file():
        sys.path.insert(0, str(source_tree))
        return
    try:
        import runner  # noqa: F401
    except ImportError:
        venv_python = Path(os.environ.get("RUNNER_VENV", "/opt/runner")) / "bin" / "python"
        if not venv_python.is_file() or Path(sys.executable) == venv_python:
            sys.exit("error: the runner package is not installed: run `pip install .` "
                     "in the runner's source tree, or set RUNNER_VENV to its venv")
        # The script that was run, not this module: docker-entrypoint.py
        # imports it and must come back as itself (workspace mode, WORKSPACE_HOME).
        os.execv(venv_python, [str(venv_python), os.path.abspath(sys.argv[0]), *sys.argv[1:]])


def main() -> int:
    _load_runner()
    from runner.cli import main as runner_main

    return runner_main()


if __name__ == "__main__":
    sys.exit(main())
