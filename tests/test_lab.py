"""Code from ML Lab data keys: the real runner against a real ML Lab-compatible file server.

The server (`labserver.py`) implements the contract's two routes with Bearer
checks; every run uses `TEST_SECRETS` as the token, and `RunnerProcess.finish`
fails the test if one ever shows in the output. Every run gets its own TMPDIR,
which must be empty afterwards: no download or unpacked code left behind.
"""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from archives import device, link, service, tar_bytes, zip_bytes
from helpers import TEST_SECRETS, free_port, run_runner, serve_once
from labserver import LabServer

TOKEN = TEST_SECRETS[2]
OTHER_TOKEN = TEST_SECRETS[1]  # valid, but only for the "other" project
PROJECT = "team-svc"


@pytest.fixture
def lab() -> Iterator[LabServer]:
    server = LabServer(
        tokens={TOKEN: {PROJECT}, OTHER_TOKEN: {"other"}},
        projects={PROJECT, "other"},
    ).start()
    yield server
    server.stop()


def lab_env(lab: LabServer, tmp: Path, **extra: str) -> dict[str, str]:
    return {"LAB_ENDPOINT": lab.url, "LAB_API_TOKEN": TOKEN, "LAB_PROJECT": PROJECT,
            "TMPDIR": str(tmp), **extra}


def test_script_key_is_served_and_token_sent_as_bearer(lab: LabServer, tmp: Path) -> None:
    lab.upload(PROJECT, "scripts/svc.py", service("from a script"))
    lab.hooks.multipart_hash = True
    reply, runner = serve_once(["scripts/svc.py"], env=lab_env(lab, tmp), timeout=30)
    assert reply == "from a script"
    assert {auth for _, _, auth in lab.requests} == {f"Bearer {TOKEN}"}
    assert "multipart upload and cannot be checked" in runner.stderr
    assert list(tmp.iterdir()) == []


def test_zip_key_versions_single_folder(lab: LabServer, tmp: Path) -> None:
    for reply in ("v1", "v2"):
        lab.upload(PROJECT, "models/svc.zip", zip_bytes({"svc/__main__.py": service(reply)}))
    reply, first = serve_once(["models/svc.zip.v1"], env=lab_env(lab, tmp), timeout=30)
    assert reply == "v1"
    assert "MD5 of ML Lab file 'models/svc.zip.v1' of project 'team-svc' matches" in first.stderr
    assert serve_once(["models/svc.zip"], env=lab_env(lab, tmp), timeout=30)[0] == "v2"
    assert list(tmp.iterdir()) == []


def test_tar_gz_key_served_then_reused_from_cache(
    lab: LabServer, tmp: Path, tmp_path: Path
) -> None:
    lab.upload(PROJECT, "svc.tar.gz", tar_bytes({"__main__.py": service("from tar"),
                                                  "lib/util.py": b"X = 1\n"}))
    env = lab_env(lab, tmp, RUNNER_CACHE_DIR=str(tmp_path / "cache"))
    assert serve_once(["svc.tar.gz"], env=env, timeout=30)[0] == "from tar"
    assert lab.downloads() == 1
    reply, again = serve_once(["svc.tar.gz"], env=env, timeout=30)
    assert reply == "from tar"
    assert lab.downloads() == 1, "second run downloaded again instead of using the cache"
    assert "using cached ML Lab file 'svc.tar.gz'" in again.stderr
    assert list(tmp.iterdir()) == []


def test_server_errors_are_retried(lab: LabServer, tmp: Path) -> None:
    lab.upload(PROJECT, "svc.py", service("after retries"))
    lab.hooks.fail_times = 2
    reply, runner = serve_once(["svc.py"], env=lab_env(lab, tmp), timeout=30)
    assert reply == "after retries"
    assert runner.stderr.count("server error 500") == 2
    assert "(try 3 of 3)" in runner.stderr


def _upload(key: str, data: bytes) -> Callable[[LabServer], None]:
    return lambda lab: lab.upload(PROJECT, key, data)


def _hook(name: str, value: object = True) -> Callable[[LabServer], None]:
    def setup(lab: LabServer) -> None:
        lab.upload(PROJECT, "svc.py", service("never served") * 50)
        setattr(lab.hooks, name, value)
    return setup


BIG = b"\0" * 3_000_000

#: id -> (set-up of the server, spec, env overrides, parts the error line must have)
BAD: dict[str, tuple[Callable[[LabServer], None], str, dict[str, str], list[str]]] = {
    "wrong token": (_upload("svc.py", b""), "svc.py", {"LAB_API_TOKEN": TEST_SECRETS[0]},
                    ["refused LAB_API_TOKEN (HTTP 401: Invalid API token)",
                     "wrong or expired; set LAB_API_TOKEN"]),
    "missing token": (_upload("svc.py", b""), "svc.py", {"LAB_API_TOKEN": ""},
                      ["wants an API token (HTTP 401: No API token provided)",
                       "set LAB_API_TOKEN"]),
    "token of another project": (_upload("svc.py", b""), "svc.py",
                                 {"LAB_API_TOKEN": OTHER_TOKEN},
                                 ["no access to project 'team-svc'", "HTTP 403"]),
    "unknown key": (_upload("svc.py", b""), "models/nope.zip", {},
                    ["models/nope.zip is not a local path, and ML Lab has no file with that "
                     "key in project 'team-svc' (HTTP 404: File models/nope.zip does not exist",
                     "check the key, LAB_PROJECT"]),
    "unknown version": (_upload("svc.py", b""), "svc.py.v7", {},
                        ["no file with that key", "HTTP 404"]),
    "unknown project": (_upload("svc.py", b""), "svc.py", {"LAB_PROJECT": "nope"},
                        ["in project 'nope' (HTTP 404: Project nope does not exist)"]),
    "no project set": (_upload("svc.py", b""), "svc.py", {"LAB_PROJECT": ""},
                       ["LAB_PROJECT is not set", "set LAB_PROJECT"]),
    "zip with ../evil.py": (_upload("svc.zip", zip_bytes({"__main__.py": service("x"),
                                                          "../evil.py": b"boom"})),
                            "svc.zip", {},
                            ["'svc.zip' of project 'team-svc' is unsafe to unpack: "
                             "member '../evil.py' points outside the archive"]),
    "tar with absolute member": (_upload("svc.tar", tar_bytes({"/tmp/evil.py": b"boom"},
                                                              mode="w")),
                                 "svc.tar", {},
                                 ["is unsafe to unpack: member '/tmp/evil.py' has an absolute "
                                  "path"]),
    "tar with symlink to /etc": (_upload("svc.tgz", tar_bytes({"__main__.py": b""},
                                                              [link("conf", "/etc")])),
                                 "svc.tgz", {},
                                 ["is unsafe to unpack: link 'conf' points outside the archive "
                                  "(to /etc)"]),
    "tar with device": (_upload("svc.tgz", tar_bytes({}, [device("null")])), "svc.tgz", {},
                        ["member 'null' is a device or special file"]),
    "over size limit": (_upload("big.zip", zip_bytes({"__main__.py": b"", "w.bin": BIG})),
                        "big.zip", {"RUNNER_MAX_UNPACKED_BYTES": "1000000"},
                        ["would unpack to more than 1000000 bytes",
                         "raise RUNNER_MAX_UNPACKED_BYTES"]),
    "over member limit": (_upload("many.tar.gz", tar_bytes({f"m{i}.py": b"" for i in range(9)})),
                          "many.tar.gz", {"RUNNER_MAX_ARCHIVE_MEMBERS": "5"},
                          ["has more than 5 members", "raise RUNNER_MAX_ARCHIVE_MEMBERS"]),
    "truncated download": (_hook("truncate"), "svc.py", {},
                           ["'svc.py' of project 'team-svc': the download was cut short: the "
                            "connection closed before all 25.8 kB came (3 tries)",
                            "check the network"]),
    "hash mismatch": (_hook("wrong_hash"), "svc.py", {},
                      ["'svc.py' of project 'team-svc' is damaged: its MD5 is",
                       "upload the file again"]),
    "size mismatch": (_hook("wrong_size"), "svc.py", {},
                      ["'svc.py' of project 'team-svc' is damaged: got 25750 bytes but ML Lab "
                       "says 25751"]),
    "login page instead of ML Lab": (_hook("info_answer", ("text/html", "<html>login</html>")),
                                     "svc.py", {},
                                     ["the server did not answer with JSON (HTTP 200, text/html",
                                      "check the endpoint URL"]),
    "file info far too large": (
        _hook("info_answer", ("application/json",
                              '{"data": {"name": "svc.py", "x": "' + "x" * 2_000_000 + '"}}')),
        "svc.py", {}, ["'svc.py' of project 'team-svc': the server's answer is over 1 MB, "
                       "not a small JSON document: check the endpoint URL"]),
    "JSON without data": (_hook("info_answer", ("application/json", '{"status": "ok"}')),
                          "svc.py", {},
                          ["the file info from http://127.0.0.1:",
                           "has no `data`: check that LAB_ENDPOINT is the address of ML Lab"]),
    "empty archive": (_upload("empty.zip", zip_bytes({})), "empty.zip", {},
                      ["'empty.zip' of project 'team-svc' is an empty archive"]),
    "no __main__.py in single folder": (_upload("app.zip", zip_bytes({"app/app.py": b""})),
                                        "app.zip", {}, ["no __main__.py in app.zip"]),
    "no __main__.py at root": (_upload("app.tar.gz", tar_bytes({"a.py": b"", "b.py": b""})),
                               "app.tar.gz", {}, ["no __main__.py in app.tar.gz"]),
    "not a script or archive": (_upload("notes.txt", b"just text\n"), "notes.txt", {},
                                ["'notes.txt' of project 'team-svc' is neither a Python "
                                 "script nor a known archive: upload the code as a .py script"]),
    "corrupt archive": (_upload("broken.zip", b"PK\x03\x04 not really a zip" * 20),
                        "broken.zip", {}, ["is not a valid zip archive", "upload it again"]),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_exits_3_with_clear_error(
    case: str, lab: LabServer, tmp: Path, tmp_path: Path
) -> None:
    setup, spec, extra, parts = BAD[case]
    setup(lab)
    runner = run_runner([spec], env=lab_env(lab, tmp, **extra), cwd=tmp_path, timeout=60)
    assert runner.proc.returncode == 3, runner.stderr
    line = runner.error_line()
    for part in parts:
        assert part in line, f"{part!r} not in {line!r}"
    assert list(tmp.iterdir()) == [], "the runner left temp files behind"
    assert not list(tmp_path.rglob("evil.py"))


def test_unreachable_endpoint_is_retried_then_exit_3(tmp: Path, tmp_path: Path) -> None:
    env = {"LAB_ENDPOINT": f"http://127.0.0.1:{free_port()}", "LAB_API_TOKEN": TOKEN,
           "LAB_PROJECT": PROJECT, "TMPDIR": str(tmp)}
    runner = run_runner(["svc.py"], env=env, cwd=tmp_path, timeout=60)
    assert runner.proc.returncode == 3
    assert "connection refused (3 tries): check the network" in runner.error_line()
    assert list(tmp.iterdir()) == []


def test_key_without_lab_endpoint_says_what_to_set(tmp: Path, tmp_path: Path) -> None:
    runner = run_runner(["models/svc.zip"], env={"LAB_ENDPOINT": "", "TMPDIR": str(tmp)},
                        cwd=tmp_path)
    assert runner.proc.returncode == 3
    assert runner.error_line() == (
        "error: models/svc.zip does not exist locally: if it is an ML Lab data key, set "
        "LAB_ENDPOINT, LAB_API_TOKEN and LAB_PROJECT; else give an existing folder or .py "
        "script, a VCS URL (git+https://...) or an http(s) URL"
    )


def test_bad_limit_value_is_a_usage_error(tmp: Path) -> None:
    runner = run_runner(["x"], env={"RUNNER_MAX_ARCHIVE_MEMBERS": "lots", "TMPDIR": str(tmp)})
    assert runner.proc.returncode == 2
    assert "RUNNER_MAX_ARCHIVE_MEMBERS: expected a whole number, got 'lots'" in \
        runner.error_line()
