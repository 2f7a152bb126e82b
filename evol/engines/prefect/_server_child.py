"""``python -m evol.engines.prefect._server_child PARENT_PID UVICORN_ARGS...``: Prefect's temporary server, tied to its run.

Prefect starts its temporary API server as a plain child process; when the run is killed with SIGKILL nothing
stops that server and it runs on, orphaned. This wrapper asks the kernel to SIGKILL it when the evol process
that started it dies, then hands over to uvicorn exactly as ``python -m uvicorn`` would.
"""

from __future__ import annotations

import runpy
import sys

from evol.llm.local.child import die_with_parent


def main() -> None:
    die_with_parent(int(sys.argv[1]))
    sys.argv = ["uvicorn", *sys.argv[2:]]
    runpy.run_module("uvicorn", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
