"""Unpacking downloaded code safely: `runner.archive` called directly on real archive files.

The end-to-end runs through the runner are in test_lab.py; here every unsafe
shape is fed to the unpacker itself, and each test checks both the error and
that nothing landed outside (or, for the pre-checks, inside) the target.
"""

import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest
from archives import device, link, pax_named, service, tar_bytes, zip_bytes

from runner import archive
from runner.config import Config
from runner.errors import ResolveError

CONFIG = Config()
WHAT = "the archive"


def unpack(tmp_path: Path, name: str, data: bytes, config: Config = CONFIG) -> Path:
    """Write `data` as a download named `name`, unpack it into tmp_path/out/target."""
    file = tmp_path / "download"
    file.write_bytes(data)
    target = tmp_path / "out" / "target"
    target.mkdir(parents=True)
    return archive.unpack(file, name, target, config, WHAT)


def refused(tmp_path: Path, name: str, data: bytes, config: Config = CONFIG) -> str:
    """Unpack must fail; return its message after checking nothing escaped."""
    with pytest.raises(ResolveError) as caught:
        unpack(tmp_path, name, data, config)
    outside = [p for p in (tmp_path / "out").rglob("*") if "target" not in p.parts]
    assert outside == [], f"written outside the target: {outside}"
    return str(caught.value)


def short_id(value: object) -> str:
    """Readable test ids: archive bytes are not."""
    return "data" if isinstance(value, bytes) else str(value)[:40]


def target_empty(tmp_path: Path) -> bool:
    return list((tmp_path / "out" / "target").iterdir()) == []


def test_script_is_saved_under_its_own_name_only(tmp_path: Path) -> None:
    path = unpack(tmp_path, "../../svc.py", service("s"))
    assert path == tmp_path / "out" / "target" / "svc.py"
    assert path.read_bytes() == service("s")


def test_single_top_folder_is_the_code_root(tmp_path: Path) -> None:
    data = zip_bytes({"svc/__main__.py": b"", "svc/lib/x.py": b"", "__MACOSX/._svc": b""})
    assert unpack(tmp_path, "svc.zip", data) == tmp_path / "out" / "target" / "svc"


def test_files_at_the_top_make_the_target_the_root(tmp_path: Path) -> None:
    data = tar_bytes({"__main__.py": b"", "lib/x.py": b"X = 1\n"})
    root = unpack(tmp_path, "svc.tgz", data)
    assert root == tmp_path / "out" / "target"
    assert (root / "lib" / "x.py").read_text() == "X = 1\n"


def test_zip_keeps_the_executable_bit(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("setup.sh")
        info.create_system = 3
        info.external_attr = 0o100755 << 16
        zf.writestr(info, "#!/bin/sh\n")
        zf.writestr("__main__.py", "")
    root = unpack(tmp_path, "a.zip", buf.getvalue())
    assert os.access(root / "setup.sh", os.X_OK)
    assert not os.access(root / "__main__.py", os.X_OK)


def test_zip_link_inside_the_archive_is_kept(tmp_path: Path) -> None:
    root = unpack(tmp_path, "a.zip", zip_bytes({"src/__main__.py": b""}, {"main": "src"}))
    assert os.readlink(root / "main") == "src"
    assert (root / "main" / "__main__.py").is_file()


def test_kind_from_content_when_the_name_says_nothing(tmp_path: Path) -> None:
    root = unpack(tmp_path, "download", zip_bytes({"svc/__main__.py": b""}))
    assert root.name == "svc"


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("a.zip", zip_bytes({"../evil.py": b"x"}),
         "member '../evil.py' points outside the archive (..)"),
        ("a.zip", zip_bytes({"ok/../../evil.py": b"x"}), "'ok/../../evil.py' points outside"),
        ("a.zip", zip_bytes({"..\\evil.py": b"x"}), "points outside the archive"),
        ("a.zip", zip_bytes({"/tmp/evil.py": b"x"}), "member '/tmp/evil.py' has an absolute path"),
        ("a.zip", zip_bytes({"C:/evil.py": b"x"}), "has an absolute path"),
        ("a.zip", zip_bytes({"__main__.py": b""}, {"etc": "/etc"}),
         "link 'etc' points outside the archive (to /etc)"),
        ("a.zip", zip_bytes({}, {"sub/up": "../../evil"}), "link 'sub/up' points outside"),
        ("a.tar", tar_bytes({"/tmp/evil.py": b"x"}, mode="w"),
         "member '/tmp/evil.py' has an absolute path"),
        ("a.tar.gz", tar_bytes({"../evil.py": b"x"}), "member '../evil.py' points outside"),
        ("a.tgz", tar_bytes({"__main__.py": b""}, [link("conf", "/etc")]),
         "link 'conf' points outside the archive (to /etc)"),
        ("a.tgz", tar_bytes({}, [link("a/b/up", "../../../etc")]), "link 'a/b/up' points outside"),
        ("a.tgz", tar_bytes({}, [link("pw", "/etc/passwd", tarfile.LNKTYPE)]),
         "link 'pw' points outside the archive (to /etc/passwd)"),
        ("a.tgz", tar_bytes({}, [link("pw", "../evil", tarfile.LNKTYPE)]), "link 'pw' points out"),
        ("a.tgz", tar_bytes({}, [device("null")]), "member 'null' is a device or special file"),
        ("a.zip", zip_bytes({"": b"x"}), "member '' has no name"),
        ("a.tar", tar_bytes({"__main__.py": b""}, [pax_named("a\0b")]),
         "member 'a\\x00b' has a NUL byte in its name"),
        ("a.zip", zip_bytes({"__main__.py": b""}, {"l": "a\0b"}), "link 'l' has a NUL byte"),
        ("a.zip", zip_bytes({"__main__.py": b""}, {"l": ""}), "link 'l' has an empty target"),
        ("a.tgz", tar_bytes({"__main__.py": b""}, [link("x", "missing", tarfile.LNKTYPE)]),
         "hard link 'x' names 'missing', which is no earlier member"),
        ("a.tgz", tar_bytes({"__main__.py": b""}, [link("x", "x", tarfile.LNKTYPE)]),
         "hard link 'x' names 'x', which is no earlier member"),
    ],
    ids=short_id,
)
def test_unsafe_members_are_refused_before_anything_is_written(
    tmp_path: Path, name: str, data: bytes, expected: str
) -> None:
    message = refused(tmp_path, name, data)
    assert message.startswith(f"{WHAT} is unsafe to unpack: ")
    assert expected in message
    assert "nothing was unpacked" in message
    assert target_empty(tmp_path)


@pytest.mark.parametrize("mtime", ["1e300", "nan", "-inf", "-1e20"])
def test_a_modification_time_no_file_can_have_is_refused(tmp_path: Path, mtime: str) -> None:
    """A pax `mtime` is any number; setting it on the file was an OverflowError traceback."""
    data = tar_bytes({}, [pax_named("svc/__main__.py", mtime=mtime)], mode="w")
    message = refused(tmp_path, "a.tar", data)
    assert message == (f"{WHAT} is not a valid tar archive (member 'svc/__main__.py' has "
                       f"the modification time {float(mtime)!r}): upload it again, or check "
                       "that it is a complete .py script, or .zip, .tar, .tar.gz or .tgz archive")
    assert target_empty(tmp_path)


def test_fifo_is_refused(tmp_path: Path) -> None:
    fifo = tarfile.TarInfo("pipe")
    fifo.type = tarfile.FIFOTYPE
    assert "member 'pipe' is a device or special file" in refused(
        tmp_path, "a.tar", tar_bytes({}, [fifo], mode="w"))


def test_link_through_a_link_is_stopped_by_the_data_filter(tmp_path: Path) -> None:
    """`y -> x/..` is the root itself; `w -> y/..` then points above it.

    Each name looks inside when read alone; only following `y` shows that `w`
    leads out, which the standard library's 'data' filter does while extracting.
    """
    data = tar_bytes({"x/keep.py": b""}, [link("y", "x/.."), link("w", "y/..")])
    message = refused(tmp_path, "a.tgz", data)
    assert "is unsafe to unpack" in message and "unpacking stopped" in message
    assert not (tmp_path / "out" / "target" / "w").exists()


def test_zip_link_through_a_link_is_refused(tmp_path: Path) -> None:
    data = zip_bytes({"x/keep.py": b""}, {"y": "x/..", "w": "y/.."})
    message = refused(tmp_path, "a.zip", data)
    assert "link 'w' points outside the archive; unpacking stopped" in message
    assert not os.path.lexists(tmp_path / "out" / "target" / "w")


def test_zip_write_through_a_link_made_outside_later_is_refused(tmp_path: Path) -> None:
    """`b -> c/..` is inside while `c` does not exist; `c -> .` then moves `b` out."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, target in (("b", "c/.."), ("c", ".")):
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = 0o120777 << 16
            zf.writestr(info, target)
        zf.writestr("b/evil.py", "boom")
    message = refused(tmp_path, "a.zip", buf.getvalue())
    assert "member 'b/evil.py' would be written outside the archive; unpacking stopped" in message
    assert not list(tmp_path.rglob("evil.py"))


def test_a_zip_link_with_a_huge_target_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """A link member's data is its target, read whole: 64 MB of it would be held in memory
    (a 1.5 MB zip of such a member took 3 GB and 17 s before the fix)."""
    import tracemalloc

    data = zip_bytes({"svc/__main__.py": b""}, {"svc/link": "a" * 64 * 1024 * 1024})
    assert len(data) < 200_000
    tracemalloc.start()
    try:
        message = refused(tmp_path, "a.zip", data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert message == (
        f"{WHAT} is unsafe to unpack: link 'svc/link' has a target of {64 * 1024 * 1024} bytes "
        f"(over {archive.MAX_LINK_TARGET}); nothing was unpacked: rebuild the archive with "
        "relative paths inside one folder"
    )
    assert peak < 16 * 1024 * 1024, f"peak {peak} bytes"
    assert target_empty(tmp_path)


BIG = b"\0" * 3_000_000  # compresses to a few kB: the shape of an archive bomb


@pytest.mark.parametrize(("name", "data"), [
    ("bomb.zip", zip_bytes({"__main__.py": b"", "w.bin": BIG})),
    ("bomb.tar.gz", tar_bytes({"__main__.py": b"", "w.bin": BIG})),
], ids=short_id)
def test_declared_size_over_limit_is_refused_before_extracting(
    tmp_path: Path, name: str, data: bytes
) -> None:
    assert len(data) < 100_000
    message = refused(tmp_path, name, data, Config(max_unpacked_bytes=1_000_000))
    assert message == (f"{WHAT} would unpack to more than 1000000 bytes, over the limit: "
                       "if that is expected, raise RUNNER_MAX_UNPACKED_BYTES")
    assert target_empty(tmp_path)


@pytest.mark.parametrize(("name", "data"), [
    ("many.zip", zip_bytes({f"f{i}.py": b"" for i in range(11)})),
    ("many.tar", tar_bytes({f"f{i}.py": b"" for i in range(11)}, mode="w")),
], ids=short_id)
def test_member_count_over_limit_is_refused(tmp_path: Path, name: str, data: bytes) -> None:
    message = refused(tmp_path, name, data, Config(max_archive_members=10))
    assert message == (f"{WHAT} has more than 10 members, over the limit: "
                       "if that is expected, raise RUNNER_MAX_ARCHIVE_MEMBERS")
    assert target_empty(tmp_path)


def test_limits_at_exactly_the_limit_pass(tmp_path: Path) -> None:
    data = zip_bytes({"__main__.py": b"x" * 10, "b.py": b"y" * 10})
    unpack(tmp_path, "a.zip", data, Config(max_unpacked_bytes=20, max_archive_members=2))


@pytest.mark.parametrize(("name", "data"), [
    ("empty.zip", zip_bytes({})),
    ("empty.tar", tar_bytes({}, mode="w")),
    ("empty.tgz", tar_bytes({})),
    ("junk.zip", zip_bytes({"__MACOSX/._x": b""})),
], ids=short_id)
def test_empty_archive(tmp_path: Path, name: str, data: bytes) -> None:
    assert refused(tmp_path, name, data) == (
        f"{WHAT} is an empty archive: put your code (with a __main__.py) in it and upload it again"
    )


@pytest.mark.parametrize(("name", "data", "kind"), [
    ("a.zip", b"PK\x03\x04" + b"\x00" * 100, "zip"),
    ("a.zip", zip_bytes({"__main__.py": service("x")})[:-30], "zip"),
    ("a.tar.gz", tar_bytes({"__main__.py": service("x") * 100})[:200], "tar"),
    ("a.tgz", b"\x1f\x8b not gzip at all", "tar"),
], ids=short_id)
def test_corrupt_archive(tmp_path: Path, name: str, data: bytes, kind: str) -> None:
    message = refused(tmp_path, name, data)
    assert message.startswith(f"{WHAT} is not a valid {kind} archive (")
    assert message.endswith("upload it again, or check that it is a complete .py script, "
                            "or .zip, .tar, .tar.gz or .tgz archive")


@pytest.mark.parametrize(("name", "data", "said"), [
    ("a.zip", zip_bytes({"svc/a": b"x", "svc/a/b.py": b""}), "svc/a: File exists"),
    ("a.tar", tar_bytes({"svc/a": b"x", "svc/a/b.py": b""}, mode="w"),
     "svc/a/b.py: Not a directory"),
    ("a.tar", tar_bytes({"svc/a/b.py": b"", "svc/a": b"x"}, mode="w"), "svc/a: Is a directory"),
], ids=short_id)
def test_a_file_and_a_folder_of_one_name_are_named_in_the_error(
    tmp_path: Path, name: str, data: bytes, said: str
) -> None:
    """Not a disk or download problem (as the error used to suggest): two members clash."""
    assert refused(tmp_path, name, data) == (
        f"{WHAT}: cannot unpack {said}: rebuild the archive so that no file and folder "
        "share a name")


def test_a_name_over_the_system_limit_is_named_in_the_error(tmp_path: Path) -> None:
    long = "a" * 300 + ".py"
    assert refused(tmp_path, "a.zip", zip_bytes({f"svc/{long}": b""})) == (
        f"{WHAT}: cannot unpack svc/{long[:60]}…: File name too long: rebuild the archive "
        "with shorter names")


def test_neither_script_nor_archive(tmp_path: Path) -> None:
    assert refused(tmp_path, "notes.txt", b"hello\n") == (
        f"{WHAT} (notes.txt) is neither a Python script nor a known archive: "
        "upload the code as a .py script, or .zip, .tar, .tar.gz or .tgz archive"
    )


def test_a_garbled_tar_is_refused_in_one_line(tmp_path: Path) -> None:
    """tarfile's own message lists every method it tried on lines of their own."""
    message = refused(tmp_path, "a.tgz", b"not a tar at all " * 40)
    assert "\n" not in message
    assert message.startswith(f"{WHAT} is not a valid tar archive (file could not be opened "
                              "successfully: - method gz: ")


def _pax_bomb(path: Path, header_size: int) -> None:
    """A .tgz whose first header is a pax header of `header_size` bytes (zeros: tiny gzipped)."""
    import gzip

    pax = tarfile.TarInfo("././@PaxHeader")
    pax.type = tarfile.XHDTYPE
    pax.size = header_size
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(pax.tobuf(format=tarfile.USTAR_FORMAT))
        block = b"\0" * (1024 * 1024)
        for _ in range(header_size // len(block)):
            out.write(block)
        out.write(tar_bytes({"svc/__main__.py": service("x")}, mode="w"))


@pytest.mark.parametrize("name", ["bomb.tgz", "no-extension"])
def test_a_huge_tar_header_is_refused_before_it_is_read(tmp_path: Path, name: str) -> None:
    """The 256 MB pax header of a ~260 KB .tgz, unpacked in a child to read its peak memory."""
    import subprocess
    import sys

    bomb = tmp_path / "bomb"
    _pax_bomb(bomb, 256 * 1024 * 1024)
    assert bomb.stat().st_size < 2 * 1024 * 1024
    (tmp_path / "target").mkdir()
    child = subprocess.run([sys.executable, "-c", f"""
import re, sys
from pathlib import Path
from runner import archive
from runner.config import Config
from runner.errors import ResolveError
try:
    archive.unpack(Path({str(bomb)!r}), {name!r}, Path({str(tmp_path / 'target')!r}),
                   Config(), "the archive")
except ResolveError as exc:
    print(exc)
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so it would show pytest's own size
print(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text())[1])
"""], capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(archive.__file__).parent.parent)})
    assert child.returncode == 0, child.stderr
    message, peak_kb = child.stdout.splitlines()
    assert message == (
        f"{WHAT} is unsafe to unpack: a tar extension header of {256 * 1024 * 1024} bytes "
        f"(over {archive.MAX_TAR_HEADER}); nothing was unpacked: rebuild the archive with "
        "relative paths inside one folder"
    )
    assert int(peak_kb) < 100 * 1024, f"peak {peak_kb} kB"
    assert list((tmp_path / "target").iterdir()) == []
