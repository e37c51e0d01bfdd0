"""The image's entrypoint: serve `EXECUTE_CODE`, or start the workspace.

Thin on purpose: it changes to `WORKSPACE_HOME` and hands over to the runner
(through `scripts/execute_code.py` beside it, which finds the package).
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    sys.path.insert(0, str(HERE / "scripts"))
    import execute_code

    execute_code._load_runner()
    from runner.entrypoint import main as entrypoint_main

    return entrypoint_main(sys.argv[1:], os.environ)


if __name__ == "__main__":
    sys.exit(main())
