"""The conda step: environment.yml and conda-lock.yml made into environments with rattler.

Everything is real: a conda channel built on disk by `condachannel`, the
runner started as a process, the service answering HTTP on a free port.
"""

import json
import os
import socket
import time
from pathlib import Path

import condachannel
import pytest
import yaml
from condachannel import PY_VERSION, sha256_of
from helpers import TEST_SECRETS, build_wheel, run_runner, serve_once, write_service

from runner.install.conda import current_subdir

#: The channel, built once per session (a fixture of `condachannel`).
conda_channel = condachannel.conda_channel
SUBDIR = current_subdir()

SETUP_SH = """\
which python > setup-out.txt
echo "$CONDA_PREFIX" >> setup-out.txt
hello-tool >> setup-out.txt
"""


def write_conda_service(folder: Path, modules: list[str]) -> Path:
    """A service importing `condamod` and `modules` (each with a `VALUE`), and a setup.sh."""
    values = ", ".join(f"{m}.VALUE" for m in modules)
    write_service(folder, body=f"import condamod, {', '.join(modules)}",
                  reply_expr=f'"|".join([condamod.MESSAGE, {values}, sys.prefix])')
    (folder / "setup.sh").write_text(SETUP_SH)
    return folder


def write_env(folder: Path, channels: list[str], deps: list[object]) -> Path:
    data = {"name": "svc", "channels": channels, "dependencies": deps}
    (folder / "environment.yml").write_text(yaml.safe_dump(data))
    return folder / "environment.yml"


def lock_entries(channel: Path, names: list[str], platform: str = SUBDIR) -> list[dict]:
    """conda-lock v1 `package:` entries for `names` from the channel's repodata."""
    entries = []
    for subdir in (SUBDIR, "noarch"):
        repodata = json.loads((channel / subdir / "repodata.json").read_text())
        for filename, rec in repodata["packages"].items():
            if rec["name"] in names:
                entries.append({
                    "name": rec["name"], "version": rec["version"], "manager": "conda",
                    "platform": platform,
                    "dependencies": {d.split()[0]: " ".join(d.split()[1:]) or "*"
                                     for d in rec["depends"]},
                    "url": (channel / subdir / filename).as_uri(),
                    "hash": {"md5": rec["md5"], "sha256": rec["sha256"]},
                    "category": "main", "optional": False,
                })
    return entries


def write_lock(folder: Path, packages: list[dict], platforms: list[str]) -> Path:
    lock = {
        "version": 1,
        "metadata": {"content_hash": {p: "test" for p in platforms},
                     "channels": [{"url": "conda-forge", "used_env_vars": []}],
                     "platforms": platforms, "sources": ["environment.yml"]},
        "package": packages,
    }
    (folder / "conda-lock.yml").write_text(yaml.safe_dump(lock))
    return folder / "conda-lock.yml"


@pytest.fixture
def cache(tmp_path: Path) -> dict[str, str]:
    """A cache dir of the test's own (envs, packages, repodata) and its own TMPDIR."""
    (tmp_path / "tmp").mkdir()
    return {"RUNNER_CACHE_DIR": str(tmp_path / "cache"), "TMPDIR": str(tmp_path / "tmp")}


def env_prefixes(cache: dict[str, str]) -> list[Path]:
    return sorted(p for p in (Path(cache["RUNNER_CACHE_DIR"]) / "envs").iterdir() if p.is_dir())


def test_environment_yml_service_runs_on_its_environment(
    tmp_path: Path, conda_channel: Path, cache: dict[str, str]
) -> None:
    svc = write_conda_service(tmp_path / "svc", ["localpkg", "reqpkg"])
    build_wheel(svc / "wheels", "localpkg", "0.1", 'VALUE = "localpkg from pip:"\n')
    build_wheel(svc / "wheels", "reqpkg", "0.2", 'VALUE = "reqpkg from requirements"\n')
    (svc / "requirements.txt").write_text("--no-index\n--find-links wheels\nreqpkg\n")
    channel = os.path.relpath(conda_channel, svc)  # paths are relative to the file
    write_env(svc, [channel, "nodefaults"], [
        "python", "condamod", "hello-tool",
        {"pip": ["--no-index", "./wheels/localpkg-0.1-py3-none-any.whl"]},
    ])

    body, first = serve_once([svc], env=cache, timeout=90)

    [prefix] = env_prefixes(cache)
    assert body.split("|") == ["condamod 1.0 from conda", "localpkg from pip:",
                               "reqpkg from requirements", str(prefix)]
    assert (svc / "setup-out.txt").read_text().splitlines() == [
        str(prefix / "bin" / "python"), str(prefix), "hello from conda"]
    # pip is added to the specs, as conda does, for the pip: list and requirements.txt
    assert "conda: solved 4 specs to 4 packages" in first.stderr
    assert "conda: linked 4 packages" in first.stderr
    assert not list(Path(cache["TMPDIR"]).iterdir()), "temporary folders left behind"

    again = run_runner([svc, "--requirements-only"], env=cache)
    assert again.proc.returncode == 0, again.stderr
    assert "solved" not in again.stderr and "linked" not in again.stderr, again.stderr
    for step in ("environment.yml", "setup.sh", "requirements.txt"):
        assert f"{step} unchanged since the last install: skipped" in again.stderr
    assert "pip install" not in again.stderr and "localpkg" not in again.stderr

    body, code_only = serve_once([svc, "--code-only"], env=cache, timeout=90)
    assert body.endswith(f"|{prefix}")
    assert "environment.yml" not in code_only.stderr  # nothing installed, nothing said


def test_conda_lock_is_preferred_and_installed_exactly(
    tmp_path: Path, conda_channel: Path, cache: dict[str, str]
) -> None:
    svc = write_conda_service(tmp_path / "svc", ["lockedpip"])
    wheel = build_wheel(tmp_path / "wheels", "lockedpip", "1.0", 'VALUE = "lockedpip"\n')
    pip_entry = {"name": "lockedpip", "version": "1.0", "manager": "pip", "platform": SUBDIR,
                 "dependencies": {}, "url": wheel.as_uri(), "hash": {"sha256": sha256_of(wheel)},
                 "category": "main", "optional": False}
    # conda-lock locks pip itself with the packages that pip installs
    packages = lock_entries(conda_channel, ["python", "pip", "condamod", "hello-tool"])
    write_lock(svc, [*packages, pip_entry], [SUBDIR])
    (svc / "environment.yml").write_text("dependencies: [: broken")  # the lock wins

    body, runner = serve_once([svc], env=cache, timeout=90)

    [prefix] = env_prefixes(cache)
    assert body.split("|") == ["condamod 1.0 from conda", "lockedpip", str(prefix)]
    assert "solved" not in runner.stderr  # a lock is installed as it is, never solved
    assert "conda: linked 4 packages" in runner.stderr
    assert (svc / "setup-out.txt").read_text().splitlines()[0] == str(prefix / "bin" / "python")


def test_an_incomplete_environment_is_updated_in_place(
    tmp_path: Path, conda_channel: Path, cache: dict[str, str]
) -> None:
    svc = write_service(tmp_path / "svc")
    write_env(svc, [str(conda_channel)], ["python", "condamod"])
    assert run_runner([svc, "--requirements-only"], env=cache).proc.returncode == 0
    [prefix] = env_prefixes(cache)
    (prefix / ".workspace-runner.json").unlink()  # as if the run had been stopped
    (prefix / "kept.txt").write_text("a file of the old prefix")

    again = run_runner([svc, "--requirements-only"], env=cache)

    assert again.proc.returncode == 0, again.stderr
    assert f"conda: updating the environment in {prefix}" in again.stderr
    assert "solved 2 specs to 2 packages" in again.stderr
    assert "linked" not in again.stderr  # everything was there already: quiet
    assert (prefix / "kept.txt").exists()
    assert env_prefixes(cache) == [prefix]


def test_twenty_runs_in_a_row_all_exit_0(
    tmp_path: Path, conda_channel: Path, cache: dict[str, str]
) -> None:
    """rattler can crash a process at exit (one run in ~30 here); the runner must not.

    Each run asks for a slightly different spec, so every one of them solves
    and links with rattler (a reused environment would not run it at all).
    """
    svc = write_service(tmp_path / "svc")
    statuses = []
    for i in range(20):
        write_env(svc, [str(conda_channel)], ["python", f"hello-tool >=0.{i}"])
        runner = run_runner([svc, "--requirements-only"], env=cache)
        assert "conda: linked 2 packages" in runner.stderr, runner.stderr
        statuses.append(runner.proc.returncode)
    assert statuses == [0] * 20


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_channel_fails_in_seconds_naming_it(
    tmp_path: Path, cache: dict[str, str]
) -> None:
    svc = write_service(tmp_path / "svc")
    port = closed_port()
    write_env(svc, [f"http://bob:{TEST_SECRETS[0]}@127.0.0.1:{port}/chan"], ["python"])
    started = time.monotonic()
    runner = run_runner([svc, "--requirements-only"], env=cache)  # checks the secret is hidden
    assert runner.proc.returncode == 4
    assert time.monotonic() - started < 15
    line = runner.error_line()
    assert line.startswith("error: environment.yml: cannot read channel "
                           f"http://bob:***@127.0.0.1:{port}/chan: "), line
    assert "Connection refused" in line and "check the channel's name or URL" in line
    assert not (Path(cache["RUNNER_CACHE_DIR"]) / "envs").exists() or not env_prefixes(cache)
    assert not list(Path(cache["TMPDIR"]).iterdir()), "the job file (with the URL) was left"


def test_missing_local_channel_is_named(tmp_path: Path, cache: dict[str, str]) -> None:
    svc = write_service(tmp_path / "svc")
    write_env(svc, ["./no-such-channel"], ["python"])
    runner = run_runner([svc, "--requirements-only"], env=cache)
    assert runner.proc.returncode == 4
    assert runner.error_line() == (
        f"error: channel ./no-such-channel not found: {svc / 'no-such-channel'} is not a "
        "folder (channels that are paths are relative to the folder of the environment file)"
    )


def test_invalid_yaml_names_line_and_column(tmp_path: Path, cache: dict[str, str]) -> None:
    svc = write_service(tmp_path / "svc")
    (svc / "environment.yml").write_text("name: x\ndependencies:\n  - python\n   - bad: [\n")
    runner = run_runner([svc, "--requirements-only"], env=cache)
    assert runner.proc.returncode == 4
    assert runner.error_line() == (
        "error: environment.yml is not valid YAML at line 4, column 9: "
        "mapping values are not allowed in this context (fix environment.yml)"
    )


@pytest.mark.parametrize("name", ["environment.yml", "conda-lock.yml"])
def test_an_unreadable_environment_file_is_an_error_line(
    tmp_path: Path, cache: dict[str, str], name: str
) -> None:
    """As root no mode bits stop a read: a link to /proc/self/mem (a regular file whose
    read fails with EIO) stands in for a file the runner's user may not read."""
    svc = write_service(tmp_path / "svc")
    (svc / name).symlink_to("/proc/self/mem")
    runner = run_runner([svc, "--requirements-only"], env=cache)
    assert runner.proc.returncode == 4
    assert runner.error_line() == (
        f"error: {name} cannot be read (Input/output error): make {svc / name} "
        "readable by the runner's user")


def test_unsatisfiable_spec_shows_the_solvers_reason(
    tmp_path: Path, conda_channel: Path, cache: dict[str, str]
) -> None:
    svc = write_service(tmp_path / "svc")
    write_env(svc, [str(conda_channel)], ["python", "oldlib"])
    runner = run_runner([svc, "--requirements-only"], env=cache)
    assert runner.proc.returncode == 4
    line = runner.error_line()
    assert line.startswith("error: environment.yml: cannot solve python, oldlib: "), line
    assert "oldlib 1.0 would require python <3" in line and len(line) < 700, line
    assert line.endswith("(relax the versions, or add a channel that has them)")


def test_lock_with_a_wrong_sha256_is_refused(
    tmp_path: Path, conda_channel: Path, cache: dict[str, str]
) -> None:
    svc = write_service(tmp_path / "svc")
    packages = lock_entries(conda_channel, ["python", "hello-tool"])
    tool = next(p for p in packages if p["name"] == "hello-tool")
    tool["hash"]["sha256"] = "0" * 64
    write_lock(svc, packages, [SUBDIR])
    runner = run_runner([svc, "--requirements-only"], env=cache)
    assert runner.proc.returncode == 4
    line = runner.error_line()
    assert line.startswith(f"error: conda-lock.yml: package hello-tool at {tool['url']} does "
                           "not match the lock: sha256 "), line
    assert f"instead of {'0' * 64}" in line
    assert not (Path(cache["RUNNER_CACHE_DIR"]) / "envs").exists() or not any(
        (p / "conda-meta").exists() for p in env_prefixes(cache))


def test_a_lock_naming_a_device_as_a_package_is_refused_at_once(
    tmp_path: Path, conda_channel: Path, cache: dict[str, str]
) -> None:
    """`file:///dev/zero` in a fetched lock: hashing it never ended (a stuck install)."""
    svc = write_service(tmp_path / "svc")
    packages = lock_entries(conda_channel, ["python", "hello-tool"])
    next(p for p in packages if p["name"] == "hello-tool")["url"] = "file:///dev/zero"
    write_lock(svc, packages, [SUBDIR])
    runner = run_runner([svc, "--requirements-only"], env=cache, timeout=30)
    assert runner.proc.returncode == 4
    assert runner.error_line() == (
        "error: conda-lock.yml: package hello-tool at /dev/zero is not a file "
        "(re-create the lock with conda-lock)")


def test_lock_without_this_platform_names_its_platforms(
    tmp_path: Path, conda_channel: Path, cache: dict[str, str]
) -> None:
    svc = write_service(tmp_path / "svc")
    packages = [*lock_entries(conda_channel, ["hello-tool"], platform="osx-arm64"),
                *lock_entries(conda_channel, ["hello-tool"], platform="win-64")]
    write_lock(svc, packages, ["osx-arm64", "win-64"])
    runner = run_runner([svc, "--requirements-only"], env=cache)
    assert runner.proc.returncode == 4
    assert runner.error_line() == (
        f"error: conda-lock.yml has no packages for this machine's platform {SUBDIR} "
        f"(it has: osx-arm64, win-64); lock it for {SUBDIR} too: conda-lock lock -p {SUBDIR}"
    )


def test_environment_without_python_before_requirements_txt(
    tmp_path: Path, conda_channel: Path, cache: dict[str, str]
) -> None:
    svc = write_service(tmp_path / "svc")
    write_env(svc, [str(conda_channel)], ["hello-tool"])
    (svc / "requirements.txt").write_text("six\n")
    runner = run_runner([svc, "--requirements-only"], env=cache)
    assert runner.proc.returncode == 4
    assert runner.error_line() == (
        "error: environment.yml: the conda environment has no Python, but requirements.txt "
        "needs one: add python to the dependencies of environment.yml"
    )


def test_code_only_without_an_installed_environment(
    tmp_path: Path, conda_channel: Path, cache: dict[str, str]
) -> None:
    svc = write_service(tmp_path / "svc")
    write_env(svc, [str(conda_channel)], ["python"])
    runner = run_runner([svc, "--code-only"], env=cache)
    assert runner.proc.returncode == 4
    envs = Path(cache["RUNNER_CACHE_DIR"]) / "envs"
    assert runner.error_line() == (
        f"error: no conda environment for environment.yml in {envs}: run "
        "`execute-code --requirements-only` first with the same RUNNER_ENVS_DIR "
        "(or --cache-dir), or start without --code-only"
    )


def test_envs_dir_and_per_user_caches(tmp_path: Path, conda_channel: Path) -> None:
    """RUNNER_ENVS_DIR holds the env; without a cache dir, packages go to the per-user
    cache ($XDG_CACHE_HOME/workspace-runner), and nothing to rattler's own default."""
    svc = write_service(tmp_path / "svc")
    write_env(svc, [str(conda_channel)], ["python", "hello-tool"])
    home = tmp_path / "home"
    home.mkdir()
    env = {"RUNNER_CACHE_DIR": "", "RUNNER_ENVS_DIR": str(tmp_path / "envs"),
           "XDG_CACHE_HOME": str(tmp_path / "xdg"), "HOME": str(home)}
    runner = run_runner([svc, "--requirements-only"], env=env)
    assert runner.proc.returncode == 0, runner.stderr
    [prefix] = [p for p in (tmp_path / "envs").iterdir() if p.is_dir()]
    assert prefix.name.startswith("svc-") and (prefix / "bin" / "hello-tool").exists()
    packages = tmp_path / "xdg" / "workspace-runner" / "conda-pkgs"
    assert sorted(p.name for p in packages.iterdir() if p.is_dir()) == [
        "hello-tool-1.0-0", f"python-{PY_VERSION}-0_runner_test"]
    assert not any(home.iterdir()), list(home.rglob("*"))


@pytest.mark.parametrize(("name", "text", "error"), [
    ("environment.yml", "dependencies: python\n",
     "error: environment.yml: `dependencies:` must be a list (fix environment.yml)"),
    ("environment.yml", "channels: [{CHANNEL}]\ndependencies: ['python ====x']\n",
     "error: environment.yml: invalid dependency: unable to parse version spec: ====x "
     "(write it as conda does, e.g. `numpy >=1.26`)"),
    ("conda-lock.yml", "version: 2\npackage: []\n",
     "error: conda-lock.yml: expected a conda-lock file of version 1, got version 2 "
     "(make it with `conda-lock lock --kind lock`)"),
])
def test_malformed_files(
    tmp_path: Path, conda_channel: Path, cache: dict[str, str], name: str, text: str, error: str
) -> None:
    svc = write_service(tmp_path / "svc")
    (svc / name).write_text(text.replace("{CHANNEL}", str(conda_channel)))
    runner = run_runner([svc, "--requirements-only"], env=cache)
    assert runner.proc.returncode == 4
    assert runner.error_line() == error


def test_reinstall_takes_newer_packages_into_the_same_prefix(
    tmp_path: Path, cache: dict[str, str]
) -> None:
    channel = condachannel.build_channel(tmp_path / "channel")
    svc = write_service(tmp_path / "svc")
    write_env(svc, [str(channel)], ["python", "condamod"])
    assert run_runner([svc, "--requirements-only"], env=cache).proc.returncode == 0
    [prefix] = env_prefixes(cache)
    newer = condachannel.Package(
        "condamod", "2.0", noarch="python", depends=["python"],
        files={"site-packages/condamod/__init__.py": b'MESSAGE = "condamod 2.0"\n'})
    condachannel.build_package(newer, channel / "noarch")
    condachannel.index_channel(channel)
    module = next(prefix.glob("lib/python*/site-packages/condamod/__init__.py"))

    unchanged = run_runner([svc, "--requirements-only"], env=cache)
    assert "environment.yml unchanged since the last install: skipped" in unchanged.stderr
    assert "condamod 1.0" in module.read_text()

    again = run_runner([svc, "--requirements-only", "--reinstall"], env=cache)
    assert again.proc.returncode == 0, again.stderr
    assert f"conda: updating the environment in {prefix}" in again.stderr
    assert "conda: linked 1 package, removed 1 into" in again.stderr
    assert module.read_text() == 'MESSAGE = "condamod 2.0"\n'
    assert env_prefixes(cache) == [prefix]


def test_a_channel_without_pip_gets_pip_from_ensurepip(
    tmp_path: Path, cache: dict[str, str]
) -> None:
    channel = condachannel.build_channel(tmp_path / "channel", with_pip=False)
    svc = write_service(tmp_path / "svc", body="import reqpkg", reply_expr="reqpkg.VALUE")
    build_wheel(svc / "wheels", "reqpkg", "0.2", 'VALUE = "reqpkg in conda"\n')
    (svc / "requirements.txt").write_text("--no-index\n--find-links wheels\nreqpkg\n")
    write_env(svc, [str(channel)], ["python"])
    body, runner = serve_once([svc], env=cache, timeout=90)
    assert body == "reqpkg in conda"
    assert "conda: solved 1 spec to 1 package" in runner.stderr
    assert "conda: the channels have no pip: installing it with ensurepip" in runner.stderr


def test_no_pip_and_no_ensurepip_says_to_add_pip(tmp_path: Path, cache: dict[str, str]) -> None:
    subdir = current_subdir()
    channel = condachannel.build_channel(
        tmp_path / "channel", [condachannel.no_ensurepip_python(subdir)], with_pip=False)
    svc = write_service(tmp_path / "svc")
    write_env(svc, [str(channel)], ["python", {"pip": ["six"]}])
    runner = run_runner([svc, "--requirements-only"], env=cache)
    assert runner.proc.returncode == 4
    line = runner.error_line()
    assert line.startswith("error: environment.yml: the conda environment has no pip and "
                           "`python -m ensurepip` failed ("), line
    assert line.endswith("): add pip to the dependencies of environment.yml")


def test_pip_list_includes_are_relative_to_the_environment_file(
    tmp_path: Path, conda_channel: Path, cache: dict[str, str]
) -> None:
    """conda writes the pip: list beside environment.yml, so `-r`/`-c` paths are relative to it."""
    svc = write_service(tmp_path / "svc", body="import localpkg", reply_expr="localpkg.VALUE")
    build_wheel(svc / "wheels", "localpkg", "0.1", 'VALUE = "via -r"\n')
    (svc / "pip-reqs.txt").write_text("--no-index\n--find-links wheels\nlocalpkg\n")
    (svc / "pins.txt").write_text("localpkg ==0.1\n")
    write_env(svc, [str(conda_channel)], ["python", {"pip": ["-r pip-reqs.txt", "-c pins.txt"]}])
    body, _ = serve_once([svc], env=cache, timeout=90)
    assert body == "via -r"
    (svc / "pins.txt").write_text("localpkg ==0.1  # an included file changed\n")
    again = run_runner([svc, "--requirements-only"], env=cache)
    assert "installing from environment.yml" in again.stderr, again.stderr


def md5_only(entries: list[dict]) -> list[dict]:
    """As conda-lock's own test lock writes most entries: an md5 and no sha256."""
    for entry in entries:
        entry["hash"] = {"md5": entry["hash"]["md5"]}
    return entries


def test_lock_entries_with_only_an_md5_are_checked_by_md5(
    tmp_path: Path, conda_channel: Path, cache: dict[str, str]
) -> None:
    svc = write_service(tmp_path / "svc")
    write_lock(svc, md5_only(lock_entries(conda_channel, ["python", "hello-tool"])), [SUBDIR])
    ok = run_runner([svc, "--requirements-only"], env=cache)
    assert ok.proc.returncode == 0, ok.stderr
    assert "conda: linked 2 packages" in ok.stderr

    bad = tmp_path / "bad"
    write_service(bad)
    packages = md5_only(lock_entries(conda_channel, ["python", "hello-tool"]))
    tool = next(p for p in packages if p["name"] == "hello-tool")
    tool["hash"]["md5"] = "0" * 32
    write_lock(bad, packages, [SUBDIR])
    refused = run_runner([bad, "--requirements-only"], env=cache)
    assert refused.proc.returncode == 4
    assert refused.error_line().startswith(
        f"error: conda-lock.yml: package hello-tool at {tool['url']} does not match the lock: "
        "md5 "), refused.error_line()


def test_lock_entry_with_no_hash_is_refused(
    tmp_path: Path, conda_channel: Path, cache: dict[str, str]
) -> None:
    svc = write_service(tmp_path / "svc")
    packages = lock_entries(conda_channel, ["python", "hello-tool"])
    next(p for p in packages if p["name"] == "hello-tool")["hash"] = {}
    write_lock(svc, packages, [SUBDIR])
    runner = run_runner([svc, "--requirements-only"], env=cache)
    assert runner.proc.returncode == 4
    assert runner.error_line() == (
        "error: conda-lock.yml: package hello-tool lacks a name, url or hash (sha256 or md5) "
        "(re-create the lock with conda-lock)")


def test_channel_variables_are_expanded_and_their_values_hidden(
    tmp_path: Path, conda_channel: Path, cache: dict[str, str]
) -> None:
    svc = write_service(tmp_path / "svc")
    write_env(svc, ["${TEST_CHANNEL}"], ["python", "hello-tool"])
    ok = run_runner([svc, "--requirements-only"], env={**cache, "TEST_CHANNEL": str(conda_channel)})
    assert ok.proc.returncode == 0, ok.stderr

    port = closed_port()
    write_env(svc, [f"http://127.0.0.1:{port}/t/${{CONDA_TOKEN}}/chan"], ["python"])
    runner = run_runner([svc, "--requirements-only"], env={**cache, "CONDA_TOKEN": TEST_SECRETS[1]})
    assert runner.proc.returncode == 4  # finish() checked that the token is not printed
    assert runner.error_line().startswith(
        f"error: environment.yml: cannot read channel http://127.0.0.1:{port}/t/***/chan: ")


def test_an_unset_channel_variable_is_named(tmp_path: Path, cache: dict[str, str]) -> None:
    svc = write_service(tmp_path / "svc")
    write_env(svc, ["https://conda.example.com/t/${NO_SUCH_TOKEN_X}/chan"], ["python"])
    runner = run_runner([svc, "--requirements-only"], env=cache)
    assert runner.proc.returncode == 4
    assert runner.error_line() == (
        "error: environment.yml: channel https://conda.example.com/t/${NO_SUCH_TOKEN_X}/chan "
        "uses ${NO_SUCH_TOKEN_X}, which is not set: set it in the runner's environment "
        "(fix environment.yml)")


def test_pip_style_extras_in_conda_dependencies_are_dropped(
    tmp_path: Path, conda_channel: Path, cache: dict[str, str]
) -> None:
    """matplotlib's environment.yml has `nbconvert[execute]!=6.0.0`: conda drops the extras."""
    svc = write_service(tmp_path / "svc")
    write_env(svc, [str(conda_channel)], ["python", "hello-tool[extra1,extra2]!=0.9"])
    runner = run_runner([svc, "--requirements-only"], env=cache)
    assert runner.proc.returncode == 0, runner.stderr
    assert ("conda: hello-tool[extra1,extra2]!=0.9 is read as hello-tool!=0.9 (conda packages "
            "have no extras)") in runner.stderr
    assert "conda: linked 2 packages" in runner.stderr


def test_the_same_files_in_another_folder_share_the_environment(
    tmp_path: Path, conda_channel: Path, cache: dict[str, str]
) -> None:
    """Code fetched anew (a new temporary folder each run) finds its environment again,
    requirements.txt and its included files hashed by content, not by path."""
    import shutil

    first = write_service(tmp_path / "first")
    (first / "requirements.txt").write_text("-r base.txt\n")
    (first / "base.txt").write_text("")
    write_env(first, [str(conda_channel)], ["python"])
    second = tmp_path / "second"
    shutil.copytree(first, second)
    for svc in (first, second):
        runner = run_runner([svc, "--requirements-only"], env=cache)
        assert runner.proc.returncode == 0, runner.stderr
    assert len(env_prefixes(cache)) == 1
    assert "conda: environment up to date" in runner.stderr
