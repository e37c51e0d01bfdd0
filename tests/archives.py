"""Build code archives in memory for the download and unpacking tests, good and bad."""

import io
import stat
import tarfile
import zipfile

from helpers import service_source


def service(reply: str) -> bytes:
    """The `__main__.py` (or single script) of a tiny service answering `reply`."""
    return service_source(reply=reply).encode()


def zip_bytes(files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A zip of `files` (names kept exactly, `..` included) and unix `links` (name -> target)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name), data, zipfile.ZIP_DEFLATED)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target, zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def tar_bytes(
    files: dict[str, bytes], extra: list[tarfile.TarInfo] | None = None, mode: str = "w:gz"
) -> bytes:
    """A tar of `files` (names kept exactly, absolute ones too) and `extra` special members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:  # type: ignore[call-overload]
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(data))
        for info in extra or []:
            tf.addfile(info)
    return buf.getvalue()


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    """A symlink (or with `kind=tarfile.LNKTYPE` a hard link) member."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def device(name: str) -> tarfile.TarInfo:
    """A character-device member (as /dev/null would be archived)."""
    info = tarfile.TarInfo(name)
    info.type = tarfile.CHRTYPE
    info.devmajor, info.devminor = 1, 3
    return info


def pax_named(name: str, **headers: str) -> tarfile.TarInfo:
    """An empty file member whose name (and `headers`) are in a pax header: any text."""
    info = tarfile.TarInfo("placeholder")
    info.pax_headers = {"path": name, **headers}
    return info
