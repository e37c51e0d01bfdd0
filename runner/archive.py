"""Turn a downloaded file into runnable code: a single script, or an unpacked archive.

Archives come from other people's uploads, so unpacking is defensive: every
member is checked BEFORE anything is written (no name outside the target,
no link pointing out, no device files, declared sizes and member count under
the limits), so a bad archive fails with nothing on disk; tar extraction then
also runs through the standard library's 'data' filter as a second line.
"""

import errno
import math
import os
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from runner.config import Config
from runner.errors import ResolveError

SCRIPT, ZIP, TAR = "script", "zip", "tar"
#: Bytes a tar extension header (pax, GNU long name or link) may hold. Real
#: ones hold a name and a few attributes; tarfile reads one whole into memory,
#: so a 256 MB one in a small .tgz must be refused before it is read.
MAX_TAR_HEADER = 1024 * 1024
_TAR_HEADER_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                     tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
#: Bytes a zip link member (its target path) may hold: the system's PATH_MAX. A
#: link's data is read whole to check where it points, so it is bounded first.
MAX_LINK_TARGET = 4096
KNOWN = ".py script, or .zip, .tar, .tar.gz or .tgz archive"
#: Seconds a file's modification time may be from 1970, either way: well inside what
#: `utime` takes (a pax `mtime` or a base-256 header field can say anything).
_MAX_MTIME = 2**62
#: Folders some archivers add beside the real content; not code.
_JUNK = frozenset({"__MACOSX"})


def kind_of(name: str, file: Path, what: str) -> str:
    """SCRIPT, ZIP or TAR: by the name first, by the content when the name says nothing."""
    lower = name.lower()
    if lower.endswith(".py"):
        return SCRIPT
    if lower.endswith(".zip"):
        return ZIP
    if lower.endswith((".tar", ".tar.gz", ".tgz")):
        return TAR
    if zipfile.is_zipfile(file):
        return ZIP
    if _is_tar(file):
        return TAR
    named = "" if name and name in what else f" ({name or 'no file name'})"
    raise ResolveError(
        f"{what}{named} is neither a Python script nor a known archive: "
        f"upload the code as a {KNOWN}"
    )


def unpack(file: Path, name: str, target: Path, config: Config, what: str) -> Path:
    """Put the code of `file` into the empty folder `target`; return the code path in it."""
    kind = kind_of(name, file, what)
    if kind == SCRIPT:
        shutil.copyfile(file, target / script_name(name))
    else:
        try:
            if kind == ZIP:
                _unpack_zip(file, target, config, what)
            else:
                _unpack_tar(file, target, config, what)
        except (zipfile.BadZipFile, tarfile.ReadError, tarfile.CompressionError,
                EOFError, zlib.error) as exc:
            said = " ".join(str(exc).split()) or type(exc).__name__  # tarfile's has newlines
            raise ResolveError(
                f"{what} is not a valid {kind} archive ({said}): "
                "upload it again, or check that it is a complete " + KNOWN
            ) from None
        except _HeaderTooLarge as exc:
            raise _unsafe(what, str(exc)) from None
        except tarfile.FilterError as exc:  # found while extracting: links through links
            raise _unsafe(what, str(exc), "unpacking stopped") from None
        except OSError as exc:
            raise _write_failed(what, target, exc) from None
    return code_path(target, name, what)


#: What to do when a member cannot be written, by errno; else the download or disk is at fault.
_WRITE_ADVICE = {
    errno.EEXIST: "rebuild the archive so that no file and folder share a name",
    errno.ENOTDIR: "rebuild the archive so that no file and folder share a name",
    errno.EISDIR: "rebuild the archive so that no file and folder share a name",
    errno.ENAMETOOLONG: "rebuild the archive with shorter names",
}
#: Characters of a member's name an error shows (names may be thousands long).
_NAME_SHOWN = 64


def _write_failed(what: str, target: Path, exc: OSError) -> ResolveError:
    """The error for a member that could not be written, naming it."""
    member = ""
    for root in (target, target.resolve()):
        if exc.filename and Path(os.fsdecode(exc.filename)).is_relative_to(root):
            member = str(Path(os.fsdecode(exc.filename)).relative_to(root))
            break
    if len(member) > _NAME_SHOWN:
        member = member[:_NAME_SHOWN] + "…"
    advice = _WRITE_ADVICE.get(exc.errno or 0,
                               "check that the archive is complete and the disk has space")
    at = f" {member}" if member else ""
    return ResolveError(f"{what}: cannot unpack{at}: {exc.strerror or exc}: {advice}")


#: The longest file name the system takes (NAME_MAX, in bytes).
_NAME_MAX = 255


def script_name(name: str) -> str:
    """The file name a downloaded script is saved under: never a path, always a `.py` name
    the system takes (a server's Content-Disposition may say `svc\0.py` or 300 letters)."""
    base = PurePosixPath(name.replace("\\", "/")).name
    usable = (base.endswith(".py") and base != ".py" and "\0" not in base
              and len(os.fsencode(base)) <= _NAME_MAX)
    return base if usable else "main.py"


def code_path(target: Path, name: str, what: str) -> Path:
    """The code inside an unpacked `target`: the script, the single top folder, or `target`.

    Also used on a cached entry, so it depends only on what is on disk and the name.
    """
    if name.lower().endswith(".py"):
        return target / script_name(name)
    entries = [e for e in target.iterdir() if e.name not in _JUNK]
    if not entries:
        raise ResolveError(f"{what} is an empty archive: put your code (with a __main__.py) "
                           "in it and upload it again")
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return target


def _unsafe(what: str, detail: str, done: str = "nothing was unpacked") -> ResolveError:
    return ResolveError(f"{what} is unsafe to unpack: {detail}; {done}: "
                        "rebuild the archive with relative paths inside one folder")


def _check_name(name: str, what: str) -> PurePosixPath:
    """A member name as a relative path that stays inside the target, or an error."""
    if not name:
        raise _unsafe(what, f"member {name!r} has no name")
    if "\0" in name:  # a pax header may hold one; no file name can
        raise _unsafe(what, f"member {name!r} has a NUL byte in its name")
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise _unsafe(what, f"member {name!r} has an absolute path")
    if ".." in path.parts:
        raise _unsafe(what, f"member {name!r} points outside the archive (..)")
    return path


def _check_link(member: PurePosixPath, link: str, relative_to_member: bool, what: str) -> None:
    """A link must name something inside the target, relative to where it is."""
    if not link:
        raise _unsafe(what, f"link {str(member)!r} has an empty target")
    if "\0" in link:
        raise _unsafe(what, f"link {str(member)!r} has a NUL byte in its target")
    if link.startswith("/") or PurePosixPath(link).is_absolute():
        raise _unsafe(what, f"link {str(member)!r} points outside the archive (to {link})")
    base = member.parent if relative_to_member else PurePosixPath()
    depth = 0
    for part in (*base.parts, *PurePosixPath(link).parts):
        depth += -1 if part == ".." else 0 if part == "." else 1
        if depth < 0:
            raise _unsafe(what, f"link {str(member)!r} points outside the archive (to {link})")


class _Budget:
    """The archive-bomb limits, counted from the members' declared sizes."""

    def __init__(self, config: Config, what: str) -> None:
        self.config = config
        self.what = what
        self.members = 0
        self.bytes = 0

    def add(self, size: int) -> None:
        self.members += 1
        self.bytes += size
        if self.members > self.config.max_archive_members:
            raise ResolveError(
                f"{self.what} has more than {self.config.max_archive_members} members, over the "
                "limit: if that is expected, raise RUNNER_MAX_ARCHIVE_MEMBERS"
            )
        if self.bytes > self.config.max_unpacked_bytes:
            raise ResolveError(
                f"{self.what} would unpack to more than {self.config.max_unpacked_bytes} bytes, "
                "over the limit: if that is expected, raise RUNNER_MAX_UNPACKED_BYTES"
            )


def _unpack_zip(file: Path, target: Path, config: Config, what: str) -> None:
    with zipfile.ZipFile(file) as zf:
        members = _checked_zip(zf, config, what)
        root = target.resolve()
        for info, path in members:
            _extract_zip_member(zf, info, root, path, what)


def _zip_mode(info: zipfile.ZipInfo) -> int:
    return info.external_attr >> 16 if info.create_system == 3 else 0


def _checked_zip(
    zf: zipfile.ZipFile, config: Config, what: str
) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    budget = _Budget(config, what)
    checked = []
    for info in zf.infolist():
        budget.add(info.file_size)
        path = _check_name(info.filename, what)
        mode = _zip_mode(info)
        # Many zip writers leave the type bits 0 for plain files: only a set
        # special type counts.
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            raise _unsafe(what, f"member {info.filename!r} is a device or special file")
        if stat.S_ISLNK(mode):
            if info.file_size > MAX_LINK_TARGET:
                raise _unsafe(what, f"link {info.filename!r} has a target of {info.file_size} "
                                    f"bytes (over {MAX_LINK_TARGET})")
            _check_link(path, os.fsdecode(zf.read(info)), True, what)
        checked.append((info, path))
    return checked


def _extract_zip_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, root: Path, path: PurePosixPath, what: str
) -> None:
    dest = root.joinpath(*path.parts) if path.parts else root
    # Links made by earlier members must not lead a later one out of the target.
    if not dest.resolve().is_relative_to(root):
        raise _unsafe(what, f"member {info.filename!r} would be written outside the archive",
                      "unpacking stopped")
    mode = _zip_mode(info)
    if info.is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    if stat.S_ISLNK(mode):
        os.symlink(os.fsdecode(zf.read(info)), dest)
        if not dest.resolve().is_relative_to(root):  # through an earlier link
            dest.unlink()
            raise _unsafe(what, f"link {info.filename!r} points outside the archive",
                          "unpacking stopped")
        return
    with zf.open(info) as src, dest.open("wb") as out:
        shutil.copyfileobj(src, out, 1024 * 1024)
    if mode & 0o100:
        dest.chmod(0o755)


class _HeaderTooLarge(Exception):
    """A tar extension header over `MAX_TAR_HEADER`; the text says which."""


class _BoundedTarInfo(tarfile.TarInfo):
    """A tar header that refuses to read an extension header over `MAX_TAR_HEADER`.

    `_proc_member` is where tarfile reads the extended data of a header (its
    `size` is then known, its data not yet read); it is the one hook tarfile
    has between the two.
    """

    def _proc_member(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _TAR_HEADER_TYPES and self.size > MAX_TAR_HEADER:
            raise _HeaderTooLarge(f"a tar extension header of {self.size} bytes "
                                  f"(over {MAX_TAR_HEADER})")
        return super()._proc_member(tarfile)


def _open_tar(file: Path) -> tarfile.TarFile:
    return tarfile.open(file, "r:*", tarinfo=_BoundedTarInfo)


def _is_tar(file: Path) -> bool:
    """`tarfile.is_tarfile`, with the header bound (a tar, if one too large)."""
    try:
        with _open_tar(file):
            return True
    except tarfile.TarError:
        return False
    except _HeaderTooLarge:
        return True


def _unpack_tar(file: Path, target: Path, config: Config, what: str) -> None:
    with _open_tar(file) as tf:
        members = _checked_tar(tf, config, what)
        tf.extractall(target, members=members, filter="data")


def _checked_tar(tf: tarfile.TarFile, config: Config, what: str) -> list[tarfile.TarInfo]:
    budget = _Budget(config, what)
    checked = []
    seen = set()  # names as tarfile finds a hard link's target: normalized, earlier members
    for member in tf:  # one pass over the headers; stops at the first limit crossed
        budget.add(member.size if member.isreg() else 0)
        path = _check_name(member.name, what)
        if member.issym():
            _check_link(path, member.linkname, True, what)
        elif member.islnk():
            _check_link(path, member.linkname, False, what)
            if os.path.normpath(member.linkname) not in seen:  # tarfile: a KeyError
                raise _unsafe(what, f"hard link {member.name!r} names {member.linkname!r}, "
                                    "which is no earlier member")
        elif not (member.isreg() or member.isdir()):
            raise _unsafe(what, f"member {member.name!r} is a device or special file")
        if not (math.isfinite(member.mtime) and abs(member.mtime) < _MAX_MTIME):
            raise tarfile.ReadError(f"member {member.name!r} has the modification time "
                                    f"{member.mtime!r}")
        seen.add(os.path.normpath(member.name))
        checked.append(member)
    return checked
