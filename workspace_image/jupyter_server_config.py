"""JupyterLab settings of the workspace image (read from /etc/jupyter).

The runner's workspace mode passes the address, port, folder and token
(`runner/workspace.py`); this file holds what only makes sense in the image.
"""

import os

c = get_config()  # noqa: F821 - injected by Jupyter's config loader

# The runner hands the token over in JUPYTER_TOKEN. This file runs in the
# server's process: take the token out of its environment, so that terminals,
# kernels and the services started from them never inherit it.
if "JUPYTER_TOKEN" in os.environ:
    c.IdentityProvider.token = os.environ.pop("JUPYTER_TOKEN")

# Terminals open bash with the image's PATH (not a login shell: /etc/profile
# would reset PATH), so their `python` and `pip` are the service venv's and
# `python /resources/scripts/execute_code.py ./svc` behaves as in a service.
c.ServerApp.terminado_settings = {"shell_command": ["/bin/bash"]}
c.ServerApp.terminals_enabled = True
# Notebooks run on the service's Python (kernels/python3 in JUPYTER_PATH).
c.MappingKernelManager.default_kernel_name = "python3"
c.ServerApp.allow_remote_access = True
