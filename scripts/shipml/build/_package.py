"""shipml itself, as the built-in image installs it: the server's third-party requirements (one
layer, reused while they do not change) and a wheel of this very shipml (shipml is not on PyPI).

The wheel is written here from the installed package's files, byte for byte the same for the same
files (fixed timestamps, sorted entries), so that an unchanged shipml reuses its layer too.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import re
import zipfile
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path

from shipml import __version__
from shipml.errors import ConfigError

#: the extra whose requirements the image installs besides shipml's own
SERVE_EXTRA = "serve"
#: core dependencies the gates need and the server never imports (tests/serve proves it by
#: serving with them blocked): left out of the image, about 80 MB
NOT_SERVED = frozenset({"pandas", "onnx", "jinja2", "requests"})
#: package data that travels with the modules (pyproject's [tool.setuptools.package-data])
_DATA_DIRS = ("schema", "templates", "example")
_DATA_SUFFIXES = (".py", ".json", ".j2", ".typed")
_EPOCH = (1980, 1, 1, 0, 0, 0)
NOT_INSTALLED = ("shipml is not installed as a package (no dist-info found); install it with "
                 "pip install -e . or pip install shipml before building an image")


def package_root() -> Path:
    """Return the folder of the ``shipml`` package this process imported."""
    return Path(str(resources.files("shipml")))


def requirements(extra: str = SERVE_EXTRA) -> list[str]:
    """Return the third-party requirements of ``shipml[extra]``, sorted, without markers; for
    the serve extra without the core dependencies in NOT_SERVED.

    From ``pyproject.toml`` when shipml runs from a checkout (its metadata may be older than
    the file), else from the installed metadata. A marker other than the extra is evaluated for
    this Python.
    """
    declared = _from_pyproject(extra)
    if declared is None:
        try:
            declared = list(importlib.metadata.distribution("shipml").requires or [])
        except importlib.metadata.PackageNotFoundError:
            raise ConfigError(NOT_INSTALLED) from None
    chosen = set(_select(declared, extra))
    if extra == SERVE_EXTRA:
        chosen = {item for item in chosen if _name(item) not in NOT_SERVED}
    return sorted(chosen, key=str.lower)


def _name(requirement: str) -> str:
    from packaging.requirements import Requirement

    return Requirement(requirement).name.lower()


def _from_pyproject(extra: str) -> list[str] | None:
    pyproject = package_root().parent.parent / "pyproject.toml"
    try:
        import tomllib
    except ImportError:  # Python 3.10
        return None
    if not pyproject.is_file():
        return None
    document = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    project = document.get("project") or {}
    if project.get("name") != "shipml":
        return None
    found = [str(item) for item in project.get("dependencies") or []]
    for item in (project.get("optional-dependencies") or {}).get(extra) or []:
        found.append(f"{item}; extra == \"{extra}\"" if ";" not in str(item)
                     else f"{item} and extra == \"{extra}\"")
    return found


def _select(declared: Iterable[str], extra: str) -> Iterator[str]:
    from packaging.requirements import InvalidRequirement, Requirement

    for text in declared:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        if requirement.name.lower() == "shipml":
            continue
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        requirement.marker = None
        yield str(requirement)


def _distribution() -> importlib.metadata.Distribution:
    try:
        return importlib.metadata.distribution("shipml")
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(NOT_INSTALLED) from None


def _package_files(root: Path) -> list[Path]:
    files = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if not path.is_file() or any(part.startswith((".", "__pycache__")) for part in relative.parts):
            continue
        in_data = any(part in _DATA_DIRS for part in relative.parts[:-1])
        if path.suffix in _DATA_SUFFIXES or in_data:
            files.append(path)
    return files


def wheel_name() -> str:
    """Return the file name of the wheel :func:`write_wheel` writes."""
    return f"shipml-{__version__}-py3-none-any.whl"


def write_wheel(folder: Path) -> Path:
    """Write a wheel of the installed shipml into ``folder`` and return its path.

    The same files give the same bytes. Raises ConfigError when shipml has no dist-info.
    """
    distribution = _distribution()
    dist_info = f"shipml-{__version__}.dist-info"
    metadata = _metadata_header(distribution.read_text("METADATA") or "")
    entry_points = distribution.read_text("entry_points.txt") or (
        "[console_scripts]\nshipml = shipml.cli:main_entry\n")
    records: list[str] = []
    path = folder / wheel_name()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        def add(name: str, data: bytes) -> None:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            records.append(f"{name},sha256={digest},{len(data)}")

        root = package_root()
        for file in _package_files(root):
            add("shipml/" + file.relative_to(root).as_posix(), file.read_bytes())
        add(f"{dist_info}/METADATA", metadata.encode())
        add(f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: shipml build\n"
                                  b"Root-Is-Purelib: true\nTag: py3-none-any\n")
        add(f"{dist_info}/entry_points.txt", entry_points.encode())
        records.append(f"{dist_info}/RECORD,,")
        info = zipfile.ZipInfo(f"{dist_info}/RECORD", date_time=_EPOCH)
        info.external_attr = 0o644 << 16
        archive.writestr(info, "\n".join(records) + "\n")
    return path


def _metadata_header(metadata: str) -> str:
    # The long description (the README) would make every README edit a new shipml layer.
    header = metadata.split("\n\n", 1)[0]
    header = re.sub(r"^Version: .*$", f"Version: {__version__}", header, flags=re.MULTILINE)
    return header.rstrip("\n") + "\n"
