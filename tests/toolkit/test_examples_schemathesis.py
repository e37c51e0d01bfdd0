"""schemathesis, a real outside client, fuzzes each example from its own `/openapi.json`.

Each example is served by the runner; schemathesis (the test extra) runs as a
process against it. What must hold: no 5xx, and every answer (status, content
type, headers, body) is one the document describes. The iris example checks
its body against the schema it documents, so there schemathesis also checks
that schema-valid bodies are accepted and invalid ones refused.
"""

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, RunnerProcess
from test_examples import stop, toolkit_env, wait_ready

pytest.importorskip("schemathesis", reason="schemathesis is in the test extra")

DOCUMENT_CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
                   "response_headers_conformance", "response_schema_conformance")
VALIDATION_CHECKS = ("negative_data_rejection", "positive_data_acceptance")
EXAMPLES = [
    ("hello-service", DOCUMENT_CHECKS, {}),
    ("async-service", DOCUMENT_CHECKS, {"STEP_SECONDS": "0.01"}),
    ("iris-service", DOCUMENT_CHECKS + VALIDATION_CHECKS, {}),
]


def schemathesis(runner: RunnerProcess, checks: tuple[str, ...]) -> subprocess.CompletedProcess:
    """`schemathesis run URL/openapi.json` with `checks`, a fixed seed, few examples each."""
    return subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{runner.url}/openapi.json",
         "--checks", ",".join(checks), "--max-examples", "25", "--seed", "1", "--no-color",
         "--generation-database", "none", "--request-timeout", "10"],
        capture_output=True, text=True, timeout=240)


@pytest.mark.parametrize(("name", "checks", "env"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_schemathesis_finds_no_5xx_and_no_answer_outside_the_document(
    tmp_path: Path, name: str, checks: tuple[str, ...], env: dict[str, str]
) -> None:
    runner = RunnerProcess([ROOT / "examples" / name, "--code-only"], env=toolkit_env(
        TASKS_DB=str(tmp_path / "tasks.sqlite3"), MODEL_PATH=str(tmp_path / "model.pickle"),
        **env))
    try:
        wait_ready(runner)
        fuzzed = schemathesis(runner, checks)
        code = stop(runner)
    finally:
        runner.kill()
    assert fuzzed.returncode == 0, fuzzed.stdout[-6000:] + fuzzed.stderr[-2000:]
    assert "No issues found" in fuzzed.stdout, fuzzed.stdout[-3000:]
    assert code == 0, runner.stderr
