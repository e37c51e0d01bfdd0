"""Code from git, Mercurial, Subversion and Bazaar URLs, run up to its first HTTP 200.

Every repository is real, built with the real client in a temp folder and
served by file:// URL (or by `git http-backend` for the private-repo cases).
Each history is the same: `v1` (tagged), `r2` (the pinned revision, which
also adds `sub/svc`), `head` on the default branch, `dev` on a branch; the
service's reply says which one was checked out.
"""

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from githttp import GitHttpServer
from helpers import (
    TEST_SECRETS,
    RunnerProcess,
    run_runner,
    serve_once,
    wait_for,
    write_service,
)

CLIENT_ENV = {
    "HGPLAIN": "1",
    "HGRCPATH": "",
    "BRZ_EMAIL": "Tester <tester@example.com>",
    "BRZ_LOG": "/dev/null",
    "GIT_AUTHOR_NAME": "Tester",
    "GIT_AUTHOR_EMAIL": "tester@example.com",
    "GIT_COMMITTER_NAME": "Tester",
    "GIT_COMMITTER_EMAIL": "tester@example.com",
    "GIT_CONFIG_GLOBAL": "/dev/null",
}
#: The runner line that names the revision it checked out.
RESOLVED = {
    "git": r"\] git\+file://\S+: (revision '.+'|the default branch) is commit [0-9a-f]{40}\n",
    "hg": r"\] hg\+file://\S+: (revision '.+'|the default branch) is changeset [0-9a-f]{40}\n",
    "svn": r"\] svn\+file://\S+: (revision '.+'|the latest revision) is revision \d+\n",
    "bzr": r"\] bzr\+file://\S+: (revision '.+'|the latest revision) is revision \d+ \(\S+\)\n",
}
CASES = ("default", "tag", "branch", "revision", "subdirectory")
REPLIES = {"default": "head", "tag": "v1", "branch": "dev", "revision": "r2",
           "subdirectory": "sub", "short-sha": "r2"}


def sh(*argv: str | Path, cwd: Path | None = None) -> str:
    """Run a client to build a test repository; its stdout."""
    done = subprocess.run([os.fspath(a) for a in argv], cwd=cwd, env={**os.environ, **CLIENT_ENV},
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout}{done.stderr}"
    return done.stdout.strip()


def build_git(root: Path) -> dict[str, str]:
    repo = root / "git repo"
    sh("git", "init", "-q", "-b", "main", repo)
    write_service(repo, reply="v1")
    (repo / "escape").symlink_to("../..")
    sh("git", "add", ".", cwd=repo)
    sh("git", "commit", "-q", "-m", "v1", cwd=repo)
    sh("git", "tag", "-a", "v1", "-m", "release 1", cwd=repo)
    write_service(repo, reply="r2")
    write_service(repo / "sub" / "svc", reply="sub")
    sh("git", "add", ".", cwd=repo)
    sh("git", "commit", "-q", "-m", "r2", cwd=repo)
    sha = sh("git", "rev-parse", "HEAD", cwd=repo)
    write_service(repo, reply="head")
    sh("git", "commit", "-q", "-am", "head", cwd=repo)
    sh("git", "checkout", "-q", "-b", "dev", cwd=repo)
    write_service(repo, reply="dev")
    sh("git", "commit", "-q", "-am", "dev", cwd=repo)
    sh("git", "checkout", "-q", "main", cwd=repo)
    base = f"git+{repo.as_uri()}"
    return {"default": base, "tag": f"{base}@v1", "branch": f"{base}@dev",
            "revision": f"{base}@{sha}", "subdirectory": f"{base}#subdirectory=sub/svc",
            "short-sha": f"{base}@{sha[:9]}", "path": str(repo)}


def build_hg(root: Path) -> dict[str, str]:
    repo = root / "hg"
    user = ("--config", "ui.username=Tester <tester@example.com>")
    sh("hg", "init", repo)
    write_service(repo, reply="v1")
    sh("hg", "commit", "-q", "-A", "-m", "v1", *user, cwd=repo)
    sh("hg", "tag", "v1", *user, cwd=repo)
    write_service(repo, reply="r2")
    write_service(repo / "sub" / "svc", reply="sub")
    sh("hg", "commit", "-q", "-A", "-m", "r2", *user, cwd=repo)
    node = sh("hg", "log", "-r", ".", "-T", "{node}", cwd=repo)
    write_service(repo, reply="head")
    sh("hg", "commit", "-q", "-m", "head", *user, cwd=repo)
    sh("hg", "branch", "-q", "dev", cwd=repo)
    write_service(repo, reply="dev")
    sh("hg", "commit", "-q", "-m", "dev", *user, cwd=repo)
    sh("hg", "update", "-q", "default", cwd=repo)
    base = f"hg+{repo.as_uri()}"
    return {"default": base, "tag": f"{base}@v1", "branch": f"{base}@dev",
            "revision": f"{base}@{node}", "subdirectory": f"{base}#subdirectory=sub/svc"}


def build_svn(root: Path) -> dict[str, str]:
    repo, wc = root / "svnrepo", root / "svnwc"
    svn = ("svn", "--config-dir", root / "svnconfig", "--non-interactive")
    sh("svnadmin", "create", repo)
    url = repo.as_uri()
    sh(*svn, "mkdir", "-q", "-m", "layout", f"{url}/trunk", f"{url}/branches", f"{url}/tags")
    sh(*svn, "checkout", "-q", f"{url}/trunk", wc)
    write_service(wc, reply="v1")
    sh(*svn, "add", "-q", wc / "__main__.py")
    sh(*svn, "commit", "-q", "-m", "v1", wc)
    sh(*svn, "copy", "-q", "-m", "tag v1", f"{url}/trunk", f"{url}/tags/v1")
    write_service(wc, reply="r2")
    write_service(wc / "sub" / "svc", reply="sub")
    sh(*svn, "add", "-q", wc / "sub")
    sh(*svn, "commit", "-q", "-m", "r2", wc)
    sh(*svn, "update", "-q", wc)
    rev = sh(*svn, "info", "--show-item", "revision", wc)
    write_service(wc, reply="head")
    sh(*svn, "commit", "-q", "-m", "head", wc)
    sh(*svn, "copy", "-q", "-m", "branch dev", f"{url}/trunk", f"{url}/branches/dev")
    sh(*svn, "switch", "-q", f"{url}/branches/dev", wc)
    write_service(wc, reply="dev")
    sh(*svn, "commit", "-q", "-m", "dev", wc)
    base = f"svn+{url}"
    return {"default": f"{base}/trunk", "tag": f"{base}/tags/v1", "branch": f"{base}/branches/dev",
            "revision": f"{base}/trunk@{rev}", "subdirectory": f"{base}/trunk#subdirectory=sub/svc"}


def build_bzr(root: Path) -> dict[str, str]:
    trunk, dev = root / "bzr" / "trunk", root / "bzr" / "dev"
    sh("brz", "init", "-q", "--create-prefix", trunk)
    write_service(trunk, reply="v1")
    sh("brz", "add", "-q", cwd=trunk)
    sh("brz", "commit", "-q", "-m", "v1", cwd=trunk)
    sh("brz", "tag", "-q", "v1", cwd=trunk)
    write_service(trunk, reply="r2")
    write_service(trunk / "sub" / "svc", reply="sub")
    sh("brz", "add", "-q", cwd=trunk)
    sh("brz", "commit", "-q", "-m", "r2", cwd=trunk)
    revid = sh("brz", "revision-info", "-d", trunk).split()[1]
    write_service(trunk, reply="head")
    sh("brz", "commit", "-q", "-m", "head", cwd=trunk)
    sh("brz", "branch", "-q", trunk, dev)
    write_service(dev, reply="dev")
    sh("brz", "commit", "-q", "-m", "dev", cwd=dev)
    base = f"bzr+{trunk.as_uri()}"
    assert "@" in revid  # written %40 in the URL, the quirk this case covers
    return {"default": base, "tag": f"{base}@tag:v1", "branch": f"bzr+{dev.as_uri()}",
            "revision": f"{base}@revid:{urllib.parse.quote(revid, safe=':')}",
            "subdirectory": f"{base}#subdirectory=sub/svc"}


BUILDERS = {"git": build_git, "hg": build_hg, "svn": build_svn, "bzr": build_bzr}


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    root = tmp_path_factory.mktemp("vcs")
    return {vcs: build(root) for vcs, build in BUILDERS.items()}


@pytest.fixture
def tmpdir_env(tmp_path: Path) -> dict[str, str]:
    """The runner's TMPDIR, to check that it leaves nothing behind."""
    (tmp_path / "tmp").mkdir()
    return {**CLIENT_ENV, "TMPDIR": str(tmp_path / "tmp")}


def leftovers(env: dict[str, str]) -> list[str]:
    return os.listdir(env["TMPDIR"])


RUN_CASES = [(vcs, case) for vcs in BUILDERS for case in CASES] + [("git", "short-sha")]


@pytest.mark.parametrize(("vcs", "case"), RUN_CASES, ids=[f"{v}-{c}" for v, c in RUN_CASES])
def test_serves_the_revision_the_url_names(
    repos: dict[str, dict[str, str]], vcs: str, case: str, tmpdir_env: dict[str, str]
) -> None:
    reply, runner = serve_once([repos[vcs][case]], env=tmpdir_env)
    assert reply == REPLIES[case]
    assert re.search(RESOLVED[vcs], runner.stderr), f"no resolved revision:\n{runner.stderr}"
    assert leftovers(tmpdir_env) == []


def test_git_logs_the_commit_and_reuses_the_cache(
    repos: dict[str, dict[str, str]], tmp_path: Path, tmpdir_env: dict[str, str]
) -> None:
    url = repos["git"]["tag"]
    sha = sh("git", "rev-parse", "v1^{commit}", cwd=Path(repos["git"]["path"]))
    args = [url, "--requirements-only", "--cache-dir", tmp_path / "cache"]
    first = run_runner(args, env=tmpdir_env)
    second = run_runner(args, env=tmpdir_env)
    assert (first.proc.returncode, second.proc.returncode) == (0, 0)
    assert f"revision 'v1' is commit {sha}" in first.stderr
    assert f"revision 'v1' is commit {sha}" in second.stderr
    assert "fetching" in first.stderr
    assert "fetching" not in second.stderr and "using cached vcs" in second.stderr
    assert leftovers(tmpdir_env) == []


@pytest.mark.parametrize(("vcs", "logged"), [
    ("hg", "revision 'v1' is changeset "),
    ("svn", "revision '{rev}' is revision {rev}"),
    ("bzr", "revision 'tag:v1' is revision 1 ("),
])
def test_other_clients_reuse_the_cache(repos: dict[str, dict[str, str]], tmp_path: Path,
                                       vcs: str, logged: str) -> None:
    url = repos[vcs]["revision" if vcs == "svn" else "tag"]
    logged = logged.format(rev=url.rsplit("@", 1)[-1])
    args = [url, "--requirements-only", "--cache-dir", tmp_path / "cache"]
    first = run_runner(args, env=CLIENT_ENV)
    second = run_runner(args, env=CLIENT_ENV)
    assert (first.proc.returncode, second.proc.returncode) == (0, 0), first.stderr
    assert logged in first.stderr and logged in second.stderr
    assert "fetching" in first.stderr
    assert "fetching" not in second.stderr and "using cached vcs" in second.stderr


def test_git_submodules_are_checked_out(tmp_path: Path, tmpdir_env: dict[str, str]) -> None:
    lib, app = tmp_path / "lib", tmp_path / "app"
    sh("git", "init", "-q", "-b", "main", lib)
    (lib / "data.txt").write_text("from the submodule")
    sh("git", "add", ".", cwd=lib)
    sh("git", "commit", "-q", "-m", "lib", cwd=lib)
    sh("git", "init", "-q", "-b", "main", app)
    write_service(app, "open('lib/data.txt').read()", reply="with submodule")
    sh("git", "-c", "protocol.file.allow=always", "submodule", "add", "-q", lib.as_uri(), "lib",
       cwd=app)
    sh("git", "add", ".", cwd=app)
    sh("git", "commit", "-q", "-m", "app", cwd=app)
    (tmp_path / "lib").rename(tmp_path / "lib-moved")  # the checkout must use the URL, not a path
    sh("git", "-C", app, "config", "-f", ".gitmodules", "submodule.lib.url", "../lib-moved")
    sh("git", "-C", app, "commit", "-q", "-am", "relative submodule URL")
    reply, _ = serve_once([f"git+{app.as_uri()}"], env=tmpdir_env)
    assert reply == "with submodule"


def test_a_submodule_that_cannot_be_fetched_is_named(
    tmp_path: Path, tmpdir_env: dict[str, str]
) -> None:
    """The repository itself was read: the error used to say "cannot read repository"."""
    lib, app = tmp_path / "lib", tmp_path / "app"
    sh("git", "init", "-q", "-b", "main", lib)
    (lib / "data.txt").write_text("lib")
    sh("git", "add", ".", cwd=lib)
    sh("git", "commit", "-q", "-m", "lib", cwd=lib)
    sh("git", "init", "-q", "-b", "main", app)
    write_service(app)
    sh("git", "-c", "protocol.file.allow=always", "submodule", "add", "-q", lib.as_uri(), "lib",
       cwd=app)
    sh("git", "-C", app, "config", "-f", ".gitmodules", "submodule.lib.url", "../gone")
    sh("git", "add", ".", cwd=app)
    sh("git", "commit", "-q", "-m", "app", cwd=app)
    runner = run_runner([f"git+{app.as_uri()}"], env=tmpdir_env)
    assert runner.proc.returncode == 3
    line = runner.error_line()
    assert line.startswith(f"error: a submodule of git+{app.as_uri()} could not be fetched: "
                           "check its URL in .gitmodules and your access to it (git said: "), line
    assert f"{tmp_path / 'gone'}" in line
    assert leftovers(tmpdir_env) == []


# ---------------------------------------------------------------- bad input


def expect_error(args: Sequence[str | Path], line: str, env: dict[str, str] | None = None,
                 timeout: float = 60) -> RunnerProcess:
    runner = run_runner(args, env=env, timeout=timeout)
    assert runner.proc.returncode == 3, runner.stderr
    assert runner.error_line() == f"error: {line}"
    return runner


@pytest.mark.parametrize("cached", [False, True], ids=["no-cache", "cache"])
def test_git_at_head_is_the_default_branch_with_or_without_a_cache(
    repos: dict[str, dict[str, str]], tmp_path: Path, tmpdir_env: dict[str, str], cached: bool
) -> None:
    """`@HEAD` worked only with --cache-dir (ls-remote lists HEAD; `clone --branch` has none)."""
    cache = ["--cache-dir", str(tmp_path / "cache")] if cached else []
    reply, runner = serve_once([f"{repos['git']['default']}@HEAD", *cache], env=tmpdir_env)
    assert reply == "head", runner.stderr
    assert "revision 'HEAD' is commit " in runner.stderr


def test_unknown_git_revision(repos: dict[str, dict[str, str]]) -> None:
    base = repos["git"]["default"]
    expect_error([f"{base}@nope"], f"revision 'nope' not found in {base}: give a branch, tag "
                 "or commit sha that exists there")


def test_unknown_git_commit(repos: dict[str, dict[str, str]]) -> None:
    base = repos["git"]["default"]
    expect_error([f"{base}@{'ab' * 20}"], f"revision {'ab' * 20!r} not found in {base}: give a "
                 "branch, tag or commit sha that exists there")


@pytest.mark.parametrize(("vcs", "said"), [
    ("hg", "abort: unknown revision 'nope'"),
    ("svn", "svn: E205000: Syntax error parsing peg revision 'nope'"),
    ("bzr", "brz: ERROR: Requested revision: 'nope' does not exist in branch:"),
])
def test_unknown_revision_of_other_clients(
    repos: dict[str, dict[str, str]], vcs: str, said: str
) -> None:
    base = repos[vcs]["default"]
    runner = run_runner([f"{base}@nope"])
    assert runner.proc.returncode == 3
    line = runner.error_line()
    assert line.startswith(f"error: revision 'nope' not found in {base}: give a branch, tag or "
                           f"revision that exists there ({vcs} said: ")
    assert said in line


@pytest.mark.parametrize("vcs", BUILDERS)
def test_repository_not_found(tmp_path: Path, vcs: str) -> None:
    url = f"{vcs}+{(tmp_path / 'missing').as_uri()}"
    runner = run_runner([url])
    assert runner.proc.returncode == 3
    if vcs == "git":
        assert runner.error_line() == (f"error: repository {url} not found: check the URL "
                                       "(for a private repository set GIT_TOKEN)")
    else:
        assert runner.error_line().startswith(
            f"error: cannot read repository {url}: check the URL and your access to it "
            f"({vcs} said: ")


def test_empty_git_repository(tmp_path: Path) -> None:
    sh("git", "init", "-q", "--bare", tmp_path / "empty.git")
    url = f"git+{(tmp_path / 'empty.git').as_uri()}"
    expect_error([url], f"{url} has no default branch (is it empty?): push a commit, or name "
                 "a branch or tag with @")


def test_hg_repository_without_a_default_branch_serves_its_tip(
    tmp_path: Path, tmpdir_env: dict[str, str]
) -> None:
    """All commits on a named branch: `hg clone` checks out the tip; the runner said
    "unknown revision 'default'"."""
    repo = tmp_path / "hg stable"
    sh("hg", "init", repo)
    sh("hg", "branch", "-q", "stable", cwd=repo)
    write_service(repo, reply="stable")
    sh("hg", "commit", "-q", "-A", "-m", "stable", "-u", "Tester", cwd=repo)
    reply, _ = serve_once([f"hg+{repo.as_uri()}"], env={**tmpdir_env, **CLIENT_ENV})
    assert reply == "stable"


def test_empty_hg_repository(tmp_path: Path) -> None:
    sh("hg", "init", tmp_path / "empty")
    url = f"hg+{(tmp_path / 'empty').as_uri()}"
    expect_error([url], f"{url} has no commits (is it empty?): push a commit, or name a "
                 "revision with @", env=CLIENT_ENV)


def test_subdirectory_that_does_not_exist(repos: dict[str, dict[str, str]],
                                          tmpdir_env: dict[str, str]) -> None:
    base = repos["git"]["default"]
    expect_error([f"{base}@v1#subdirectory=nope"], f"subdirectory 'nope' does not exist in "
                 f"{base} at revision 'v1': give a path relative to the repository root",
                 env=tmpdir_env)
    assert leftovers(tmpdir_env) == []


@pytest.mark.parametrize("sub", ["../outside", "/etc", "escape"])
def test_subdirectory_outside_the_checkout(repos: dict[str, dict[str, str]], sub: str) -> None:
    base = repos["git"]["default"]
    runner = run_runner([f"{base}@v1#subdirectory={sub}"])
    assert runner.proc.returncode == 3
    line = runner.error_line()
    if sub == "escape":  # a symlink in the repository that points out of it
        assert line == (f"error: subdirectory 'escape' of {base} is a link out of the "
                        "repository: give a folder inside it")
    else:
        assert line.startswith(f"error: subdirectory {sub!r} in {base}@v1#subdirectory={sub} "
                               "is not a path inside the repository")
        assert "fetching" not in runner.stderr  # refused before any network traffic


def test_unsupported_scheme() -> None:
    expect_error(["git+ftp://example.com/repo.git"], "unsupported scheme git+ftp:// in "
                 "git+ftp://example.com/repo.git: use one of git+https://, git+http://, "
                 "git+ssh://, git+git://, git+file://")


@pytest.mark.parametrize(("vcs", "package"), [
    ("hg", "pip install mercurial"),
    ("svn", "apt-get install subversion"),
    ("bzr", "pip install breezy"),
    ("git", "apt-get install git"),
])
def test_missing_client_names_its_package(tmp_path: Path, vcs: str, package: str) -> None:
    """PATH holds only git (or nothing, for the git case): the client is not installed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if vcs != "git":
        (bin_dir / "git").symlink_to(sh("sh", "-c", "command -v git"))
    url = f"{vcs}+{(tmp_path / 'repo').as_uri()}"
    binary = {"bzr": "brz"}.get(vcs, vcs)
    expect_error([url], f"{binary} is not installed, and {url} needs it: install it with "
                 f"`{package}`", env={"PATH": str(bin_dir)})


@pytest.mark.parametrize("vcs", ["hg", "svn", "bzr"])
def test_credentials_in_other_clients_urls_are_refused(vcs: str) -> None:
    url = f"{vcs}+https://alice:{TEST_SECRETS[1]}@127.0.0.1:9/repo"
    runner = run_runner([url])
    assert runner.proc.returncode == 3
    assert f"credentials in {vcs}+ URLs are not supported" in runner.error_line()


# ------------------------------------------------------ private repo, secrets


@pytest.fixture(scope="module")
def private_repo(tmp_path_factory: pytest.TempPathFactory,
                 repos: dict[str, dict[str, str]]) -> Iterator[tuple[GitHttpServer, str]]:
    root = tmp_path_factory.mktemp("githttp")
    sh("git", "clone", "-q", "--bare", repos["git"]["path"], root / "private.git")
    accounts = {"alice": TEST_SECRETS[1], "x-access-token": TEST_SECRETS[0]}
    with GitHttpServer(root, accounts) as server:
        yield server, f"{server.url}/private.git"


def test_private_repo_without_credentials_fails_at_once(
    private_repo: tuple[GitHttpServer, str]
) -> None:
    server, url = private_repo
    server.requests.clear()
    started = time.monotonic()
    env = {"GIT_TOKEN": ""}
    expect_error([f"git+{url}"], f"git+{url} needs credentials: set GIT_TOKEN, or put "
                 "USER:TOKEN@ before the host in the URL", env=env, timeout=20)
    assert time.monotonic() - started < 10
    assert server.requests and not any(ok for _, ok in server.requests)


def test_private_repo_with_git_token(private_repo: tuple[GitHttpServer, str],
                                     tmpdir_env: dict[str, str]) -> None:
    _, url = private_repo
    # serve_once fails if the token is in any output (RunnerProcess.finish checks)
    reply, _ = serve_once([f"git+{url}@dev"], env={**tmpdir_env, "GIT_TOKEN": TEST_SECRETS[0]})
    assert reply == "dev"
    assert leftovers(tmpdir_env) == []


def test_private_repo_with_url_credentials_leaves_no_secret(
    private_repo: tuple[GitHttpServer, str], tmp_path: Path, tmpdir_env: dict[str, str]
) -> None:
    server, url = private_repo
    host_path = url.split("://", 1)[1]
    spec = f"git+http://alice:{TEST_SECRETS[1]}@{host_path}@v1"
    cache = tmp_path / "cache"
    # A git first on PATH that writes down every argument list it gets, then runs git.
    wrapper_dir, argv_log = tmp_path / "bin", tmp_path / "git-argv.log"
    wrapper_dir.mkdir()
    real_git = sh("sh", "-c", "command -v git")
    (wrapper_dir / "git").write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{argv_log}"\nexec "{real_git}" "$@"\n')
    (wrapper_dir / "git").chmod(0o755)
    env = {**tmpdir_env, "PATH": f"{wrapper_dir}:{os.environ['PATH']}"}
    runner = run_runner([spec, "--requirements-only", "--cache-dir", cache], env=env)
    assert runner.proc.returncode == 0, runner.stderr
    assert any(ok for _, ok in server.requests)
    assert f"git+http://alice:***@{host_path}@v1" in runner.stderr
    for path in cache.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert TEST_SECRETS[1].encode() not in path.read_bytes(), f"secret in {path}"
    config = next(cache.rglob(".git/config")).read_text()
    assert f"url = {url}\n" in config
    argvs = argv_log.read_text()
    assert "ls-remote" in argvs and "clone" in argvs
    assert TEST_SECRETS[1] not in argvs


def test_wrong_url_credentials_are_not_printed(private_repo: tuple[GitHttpServer, str]) -> None:
    _, url = private_repo
    spec = f"git+http://alice:{TEST_SECRETS[0]}@{url.split('://', 1)[1]}"
    expect_error([spec], f"git+{url} refused the credentials given: check the token and its "
                 "access to the repository")


def _cmdlines() -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            with contextlib.suppress(OSError):
                found.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                             .decode(errors="replace"))
    return found


# ------------------------------------------------------------- hung remotes


@pytest.fixture
def silent_server() -> Iterator[tuple[int, list[socket.socket]]]:
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1], accepted
    listener.shutdown(socket.SHUT_RDWR)  # close() alone leaves accept() waiting, still listening
    listener.close()
    for conn in accepted:
        conn.close()


@pytest.mark.parametrize("url", ["git+http://127.0.0.1:{port}/repo.git",
                                 "git+git://127.0.0.1:{port}/repo.git",
                                 "hg+http://127.0.0.1:{port}/repo",
                                 "svn+http://127.0.0.1:{port}/repo",
                                 "bzr+http://127.0.0.1:{port}/repo"])
def test_silent_remote_times_out(silent_server: tuple[int, list[socket.socket]], url: str,
                                 tmpdir_env: dict[str, str]) -> None:
    port, accepted = silent_server
    url = url.format(port=port)
    started = time.monotonic()
    expect_error([url, "--network-timeout", "1"], f"{url} did not answer for 1 s: check the URL "
                 "and the network, or allow longer with --network-timeout "
                 "(RUNNER_NETWORK_TIMEOUT)", env=tmpdir_env, timeout=30)
    assert time.monotonic() - started < 10
    assert accepted, "the client never connected"
    assert leftovers(tmpdir_env) == []


def test_stop_while_fetching_leaves_nothing(silent_server: tuple[int, list[socket.socket]],
                                            tmp_path: Path, tmpdir_env: dict[str, str]) -> None:
    port, accepted = silent_server
    url = f"git+http://127.0.0.1:{port}/stuck.git"
    runner = RunnerProcess([url, "--network-timeout", "60"], env=tmpdir_env)
    wait_for(lambda: accepted, 20, "git to connect")
    runner.signal(signal.SIGTERM)
    assert runner.finish(timeout=15) == 128 + signal.SIGTERM
    assert leftovers(tmpdir_env) == []
    wait_for(lambda: not any(f"{port}/stuck" in argv for argv in _cmdlines()), 5,
             "git processes to end")


# ---------------------------------------------------------------- option injection


def test_hg_rev_cannot_load_an_extension(repos: dict[str, dict[str, str]], tmp_path: Path) -> None:
    """hg reads `--config` anywhere in its argument list, `--` or not: refuse it before hg runs."""
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.py"
    evil.write_text(f"open({str(marker)!r}, 'w').close()\n")
    base = repos["hg"]["default"]
    rev = f"--config=extensions.x={evil}"
    expect_error([f"{base}@{rev}"], f"revision {rev!r} of {base} starts with '-': hg would "
                 "read it as an option; name a branch, tag or revision that does not start "
                 "with '-'", env=CLIENT_ENV)
    assert not marker.exists()


@pytest.mark.parametrize(("vcs", "rev"), [
    ("git", "--upload-pack=touch"), ("hg", "--debugger"), ("svn", "-r1"), ("bzr", "-Derror"),
])
def test_a_rev_that_looks_like_an_option_is_refused(
    repos: dict[str, dict[str, str]], vcs: str, rev: str
) -> None:
    base = repos[vcs]["default"]
    client = {"bzr": "brz"}.get(vcs, vcs)
    expect_error([f"{base}@{rev}"], f"revision {rev!r} of {base} starts with '-': {client} "
                 "would read it as an option; name a branch, tag or revision that does not "
                 "start with '-'", env=CLIENT_ENV)


def test_a_git_url_that_looks_like_an_option_is_refused() -> None:
    expect_error(["git+-oProxyCommand=touch@host:org/repo.git"],
                 "the URL -oProxyCommand=touch@host:org/repo.git starts with '-': git would "
                 "read it as an option; give a URL that starts with a scheme such as https://")
