"""``vraagbaak backup PATH`` / ``vraagbaak restore PATH``: the service's whole state in one file.

The archive is a ``.tar.gz`` (mode 600) holding::

    backup.json              format version, created_at, vraagbaak version, the index
                             generation and its embedder, sha256 + size of every other file
    index/CURRENT            the generation's name
    index/gen-NNNNNN/...     the live index generation (manifest, chunks, vectors, bm25)
    data/keys.sqlite         API keys (hashes only, never the keys)
    data/feedback.sqlite
    data/audit.sqlite        when the audit log exists
    data/link-secret         when the viewer links' secret lives in data_dir
    data/uploads/...         documents uploaded through the API

**Backup while the service runs.** A generation folder never changes once published, but a
later write may garbage-collect it; so the backup takes the index's writer lock (waiting for
a running ingest to finish, at most ``lock_timeout`` seconds) just long enough to hard-link
the live generation's files into a private folder inside ``index_dir`` (a copy where hard
links are not possible), and then packs those links without the lock. The archive therefore
holds exactly one published generation: the one before or the one after a concurrent ingest.
The SQLite databases (WAL mode, in use) are copied with SQLite's online backup API, which
gives a consistent snapshot of each; never a file copy.

**Restore.** Everything is extracted into a staging folder and every file's sha256 and size
checked against ``backup.json`` first: a damaged archive is refused and nothing is changed.
An index or data folder that already holds state is only replaced with ``force``. Then:

- the generation is moved into ``index_dir`` under the writer lock, as a new generation next
  to the existing ones (numbered after the highest there, its manifest's ``generation``
  adjusted; the same name on a fresh machine), and ``CURRENT`` is switched atomically. A
  running service's readers check ``CURRENT`` and serve the restored index from their next
  query on; older generations stay until a later ingest's garbage collection.
- a database that does not exist yet is written to a temporary file and renamed into place;
  one that exists is overwritten in place *through SQLite's backup API*, in one transaction.
  (Renaming a file over a live WAL database is not safe: the service's open connections keep
  the old, unlinked file, while the ``-wal``/``-shm`` files beside it belong to the old one.)
  So a running service sees the restored keys, feedback and audit log at its next request;
  no restart is needed for them.
- ``link-secret`` is written to a temporary file (mode 600) and renamed into place. A running
  service keeps the secret it loaded at start-up: restart it, or the viewer links it signs
  keep using the old secret (and links signed with the restored one are refused).
- ``uploads/`` is swapped for the restored folder (two renames).

**PostgreSQL** (``database_url`` set, deploy/README.md): the index and the API keys, feedback,
audit log and rate-limit counters live in the database (service/pgstate.py), not in the files
above, so ``backup`` and ``restore`` refuse to run (the archive would hold stale SQLite files, a
restore would be ignored): back the database up with PostgreSQL's own tools (``pg_dump``, or
the council's usual base backups / PITR). ``data_dir`` then holds only the link secret and the
uploads.

Uploaded documents are recorded in the index with their absolute path; restored into a
``data_dir`` at another path, the viewer cannot offer their original file for download (the
text, the citations and the viewer work as before).
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from filelock import FileLock
from filelock import Timeout as FileLockTimeout

from rag.index import _fsync_dir, _fsync_tree, _gen_name, read_current

FORMAT = "vraagbaak-backup"
FORMAT_VERSION = 1
MANIFEST = "backup.json"
DATABASES = ("keys.sqlite", "feedback.sqlite", "audit.sqlite")
LINK_SECRET = "link-secret"
UPLOADS = "uploads"
_BLOCK = 1 << 20


class BackupError(Exception):
    """A backup or restore that cannot be done; the message is one line for the operator."""


class DamagedArchiveError(BackupError):
    pass


class TargetNotEmptyError(BackupError):
    pass


@dataclass
class BackupReport:
    path: Path
    size: int
    generation: str
    embedder: str
    n_documents: int
    n_chunks: int
    files: dict[str, int] = field(default_factory=dict)  # item (index, keys.sqlite, uploads, …) -> bytes
    has_link_secret: bool = False
    seconds: float = 0.0


@dataclass
class RestoreReport:
    index_dir: Path
    data_dir: Path
    generation: str  # the name it has in index_dir now
    source_generation: str  # its name in the archive
    embedder: str
    created_at: str
    restored: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # state on the target that the archive does not hold
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


# --------------------------------------------------------------------------- helpers


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("vraagbaak")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        from rag import __version__

        return __version__


def _gen_number(name: str) -> int | None:
    if name.startswith("gen-") and name[4:].isdigit():
        return int(name[4:])
    return None


def _lock(index_dir: Path, timeout: float) -> FileLock:
    """The index's writer lock (the same file ``rag.index.write_index`` holds)."""
    lock = FileLock(index_dir / ".lock")
    try:
        lock.acquire(timeout=timeout)
    except FileLockTimeout:
        raise BackupError(
            f"an ingest has held the index lock of '{index_dir}' for over {timeout:.0f} s; try again when it is done"
        ) from None
    return lock


def _link_or_copy_tree(src: Path, dst: Path) -> None:
    """Hard-link every file of ``src`` under ``dst`` (a copy where linking fails)."""
    for path in sorted(src.rglob("*")):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(folder: Path, prefix: str) -> None:
    """Remove ``prefix<pid>-…`` folders left by a killed backup or restore."""
    for p in folder.glob(prefix + "*"):
        pid = p.name[len(prefix) :].split("-", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def _private_name(prefix: str) -> str:
    return f"{prefix}{os.getpid()}-{time.time_ns()}"


def _sqlite_copy(src: Path, dst: Path) -> None:
    """A consistent copy of a live (WAL) database through SQLite's online backup API."""
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=30)
    try:
        target = sqlite3.connect(dst)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()


def _tar_add(tar: tarfile.TarFile, fh: IO[bytes], arcname: str, size: int, files: dict[str, Any]) -> None:
    digest = hashlib.sha256()
    for block in iter(lambda: fh.read(_BLOCK), b""):
        digest.update(block)
    fh.seek(0)
    info = tarfile.TarInfo(arcname)
    info.size = size
    info.mode = 0o600
    info.mtime = int(time.time())
    tar.addfile(info, fh)
    files[arcname] = {"sha256": digest.hexdigest(), "size": size}


def _tar_add_file(tar: tarfile.TarFile, path: Path, arcname: str, files: dict[str, Any]) -> int:
    """Add one file (opened once: hashed and packed from the same open file). 0 when it is gone."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return 0
    with fh:
        size = os.fstat(fh.fileno()).st_size
        _tar_add(tar, fh, arcname, size, files)
    return size


def _tar_add_bytes(tar: tarfile.TarFile, data: bytes, arcname: str, files: dict[str, Any]) -> None:
    import io

    _tar_add(tar, io.BytesIO(data), arcname, len(data), files)


def _has_files(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_file() for p in folder.rglob("*"))


# --------------------------------------------------------------------------- backup


def _refuse_postgres(settings: Any, what: str) -> None:
    """With ``database_url`` set the index, keys, feedback and audit log live in PostgreSQL:
    an archive of the index folder and the SQLite files would be stale (or, restored, ignored)."""
    from rag.store import database_url

    if database_url(settings):
        raise BackupError(
            f"cannot {what}: the index and the service's state are in PostgreSQL (VRAAGBAAK_DATABASE_URL); "
            "use the database's own backups (pg_dump, or your DBA's base backups)"
        )


def backup(settings: Any, cfg: Any, dest: Path, lock_timeout: float = 600.0) -> BackupReport:
    """Write the service's state (see the module docstring) to one archive at ``dest``.

    ``settings``: :class:`rag.settings.Settings` (``index_dir``); ``cfg``:
    :class:`service.config.ServiceSettings` (``data_dir``). ``dest`` may be an existing
    folder: the archive is then named ``vraagbaak-backup-<UTC time>.tar.gz`` inside it.
    """
    _refuse_postgres(settings, "back up")
    started = time.monotonic()
    index_dir = Path(settings.index_dir).expanduser()
    data_dir = cfg.resolve_data_dir()
    dest = Path(dest).expanduser()
    if dest.is_dir():
        dest = dest / f"vraagbaak-backup-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}.tar.gz"
    if dest.exists():
        raise BackupError(f"'{dest}' exists; choose another name (a backup never overwrites a file)")
    if not dest.parent.is_dir():
        raise BackupError(f"folder '{dest.parent}' does not exist")
    if read_current(index_dir) is None:
        raise BackupError(f"no index in '{index_dir}': nothing to back up (build one: vraagbaak ingest ...)")

    _remove_stale(index_dir, ".backup-")
    staging = index_dir / _private_name(".backup-")
    tmp_dest = dest.parent / f".{dest.name}.{_private_name('tmp-')}"
    scratch = Path(tempfile.mkdtemp(prefix=".vraagbaak-backup-", dir=dest.parent))
    try:
        # 1. pin the live generation: hard links taken under the writer lock (milliseconds)
        lock = _lock(index_dir, lock_timeout)
        try:
            gen = read_current(index_dir)
            if gen is None or not (index_dir / gen).is_dir():
                raise BackupError(f"no index in '{index_dir}': CURRENT names no generation folder")
            _link_or_copy_tree(index_dir / gen, staging / gen)
        finally:
            lock.release()
        manifest = json.loads((staging / gen / "manifest.json").read_text(encoding="utf-8"))

        # 2. consistent copies of the live databases
        dbs = {}
        for name in DATABASES:
            if (data_dir / name).is_file():
                _sqlite_copy(data_dir / name, scratch / name)
                dbs[name] = scratch / name

        # 3. the archive, under a temporary name, renamed at the end
        files: dict[str, Any] = {}
        sizes: dict[str, int] = {}
        has_secret = False
        fd = os.open(tmp_dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
                _tar_add_bytes(tar, (gen + "\n").encode(), "index/CURRENT", files)
                total = 0
                for path in sorted((staging / gen).rglob("*")):
                    if path.is_file():
                        total += _tar_add_file(
                            tar, path, f"index/{gen}/{path.relative_to(staging / gen).as_posix()}", files
                        )
                sizes["index"] = total
                for name, path in dbs.items():
                    sizes[name] = _tar_add_file(tar, path, f"data/{name}", files)
                secret = data_dir / LINK_SECRET
                if secret.is_file():
                    sizes[LINK_SECRET] = _tar_add_file(tar, secret, f"data/{LINK_SECRET}", files)
                    has_secret = f"data/{LINK_SECRET}" in files
                uploads = data_dir / UPLOADS
                if uploads.is_dir():
                    total = 0
                    for path in sorted(uploads.rglob("*")):
                        if path.is_file():  # files removed meanwhile are skipped
                            total += _tar_add_file(
                                tar, path, f"data/{UPLOADS}/{path.relative_to(uploads).as_posix()}", files
                            )
                    sizes[UPLOADS] = total
                meta = {
                    "format": FORMAT,
                    "format_version": FORMAT_VERSION,
                    "created_at": _now_iso(),
                    "vraagbaak_version": _version(),
                    "index": {
                        "generation": gen,
                        "embedder": manifest.get("embedder"),
                        "dim": manifest.get("dim"),
                        "n_documents": manifest.get("n_documents", 0),
                        "n_chunks": manifest.get("n_chunks", 0),
                    },
                    "source": {"index_dir": str(index_dir.resolve()), "data_dir": str(data_dir.resolve())},
                    "files": files,
                }
                _tar_add_bytes(tar, json.dumps(meta, indent=2, ensure_ascii=False).encode(), MANIFEST, {})
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp_dest, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_dest.unlink()
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return BackupReport(
        path=dest,
        size=dest.stat().st_size,
        generation=gen,
        embedder=str(manifest.get("embedder")),
        n_documents=int(manifest.get("n_documents", 0)),
        n_chunks=int(manifest.get("n_chunks", 0)),
        files=sizes,
        has_link_secret=has_secret,
        seconds=time.monotonic() - started,
    )


# --------------------------------------------------------------------------- restore


def _safe_member(name: str) -> PurePosixPath | None:
    p = PurePosixPath(name)
    if p.is_absolute() or not p.parts or any(part in ("", ".", "..") for part in p.parts):
        return None
    if p.as_posix() in (MANIFEST, "index/CURRENT"):
        return p
    if p.parts[0] == "index" and len(p.parts) >= 3 and _gen_number(p.parts[1]) is not None:
        return p
    if p.parts[0] == "data" and len(p.parts) == 2 and p.parts[1] in (*DATABASES, LINK_SECRET):
        return p
    if p.parts[0] == "data" and len(p.parts) >= 3 and p.parts[1] == UPLOADS:
        return p
    return None


def _extract_verified(src: Path, staging: Path) -> dict[str, Any]:
    """Unpack ``src`` into ``staging`` and check every file against backup.json; returns it."""
    got: dict[str, dict[str, Any]] = {}
    meta_bytes: bytes | None = None
    try:
        with tarfile.open(src, mode="r:gz") as tar:
            for member in tar:
                if member.isdir():
                    continue
                rel = _safe_member(member.name)
                if rel is None or not member.isfile():
                    raise DamagedArchiveError(f"unexpected entry '{member.name}' in the archive")
                if rel.as_posix() in got or (rel.as_posix() == MANIFEST and meta_bytes is not None):
                    raise DamagedArchiveError(f"entry '{member.name}' appears twice in the archive")
                fh = tar.extractfile(member)
                assert fh is not None  # a regular file
                if rel.as_posix() == MANIFEST:
                    meta_bytes = fh.read()
                    continue
                out = staging.joinpath(*rel.parts)
                out.parent.mkdir(parents=True, exist_ok=True)
                digest, size = hashlib.sha256(), 0
                with open(out, "wb") as w:
                    for block in iter(functools.partial(fh.read, _BLOCK), b""):
                        digest.update(block)
                        size += len(block)
                        w.write(block)
                got[rel.as_posix()] = {"sha256": digest.hexdigest(), "size": size}
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DamagedArchiveError(
            f"'{src}' is damaged or not a vraagbaak backup ({exc}); nothing was restored"
        ) from None
    if meta_bytes is None:
        raise DamagedArchiveError(f"'{src}' is not a vraagbaak backup (no {MANIFEST})")
    try:
        meta = json.loads(meta_bytes)
        want: dict[str, dict[str, Any]] = meta["files"]
        fmt, version = meta["format"], meta["format_version"]
        gen = meta["index"]["generation"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DamagedArchiveError(f"'{src}': {MANIFEST} is damaged ({exc})") from None
    if fmt != FORMAT:
        raise DamagedArchiveError(f"'{src}' is not a vraagbaak backup")
    if version != FORMAT_VERSION:
        raise BackupError(f"'{src}' has backup format {version}; this vraagbaak reads format {FORMAT_VERSION}")
    problems = []
    for name in sorted(set(want) | set(got)):
        if name not in got:
            problems.append(f"{name} is missing")
        elif name not in want:
            problems.append(f"{name} is not listed in {MANIFEST}")
        elif got[name]["sha256"] != want[name].get("sha256") or got[name]["size"] != want[name].get("size"):
            problems.append(f"{name} does not match its checksum")
    gens = {PurePosixPath(n).parts[1] for n in got if n.startswith("index/gen-")}
    if gens != {gen} or "index/CURRENT" not in got:
        problems.append(f"the archive should hold exactly the index generation {gen}")
    elif (staging / "index" / "CURRENT").read_text(encoding="utf-8").strip() != gen:
        problems.append("index/CURRENT does not name the archived generation")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise DamagedArchiveError(f"'{src}' is damaged: {'; '.join(problems[:3])}{more}; nothing was restored")
    return meta


def _index_has_state(index_dir: Path) -> bool:
    return read_current(index_dir) is not None or any(p.is_dir() for p in index_dir.glob("gen-*"))


def _data_state(data_dir: Path) -> list[str]:
    items = [n for n in (*DATABASES, LINK_SECRET) if (data_dir / n).exists()]
    if _has_files(data_dir / UPLOADS):
        items.append(UPLOADS + "/")
    return items


def _write_current(index_dir: Path, name: str) -> None:
    """Point CURRENT at ``name`` atomically (as rag.index.write_index does)."""
    pointer = index_dir / "CURRENT.tmp"
    with open(pointer, "w", encoding="utf-8") as fh:
        fh.write(name + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(pointer, index_dir / "CURRENT")
    _fsync_dir(index_dir)


def _install_generation(staged: Path, index_dir: Path, lock_timeout: float) -> str:
    index_dir.mkdir(parents=True, exist_ok=True)
    lock = _lock(index_dir, lock_timeout)
    try:
        numbers = [n for p in index_dir.glob("gen-*") if (n := _gen_number(p.name)) is not None]
        current = read_current(index_dir)
        if current and (n := _gen_number(current)) is not None:
            numbers.append(n)
        name = staged.name
        if numbers:  # next to the existing generations, numbered after them
            name = _gen_name(max(numbers) + 1)
            manifest_path = staged / "manifest.json"
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            manifest["generation"] = max(numbers) + 1  # the next writer numbers its generation from it
            manifest_path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
        tmp = index_dir / f".tmp-{os.getpid()}-{int(time.time() * 1000)}"  # a writer removes it if we die
        shutil.move(str(staged), str(tmp))
        _fsync_tree(tmp)
        os.rename(tmp, index_dir / name)
        _write_current(index_dir, name)
    finally:
        lock.release()
    return name


def _install_database(staged: Path, target: Path) -> None:
    if target.exists():
        # in place, in one transaction: open connections (a running service) stay valid
        source = sqlite3.connect(staged)
        try:
            live = sqlite3.connect(target, timeout=30)
            try:
                source.backup(live)
            finally:
                live.close()
        finally:
            source.close()
    else:
        for suffix in ("-wal", "-shm", "-journal"):  # left by a database deleted by hand
            with contextlib.suppress(FileNotFoundError):
                Path(f"{target}{suffix}").unlink()
        tmp = target.with_name(f".{target.name}.{_private_name('tmp-')}")
        try:
            _sqlite_copy(staged, tmp)
            tmp.chmod(0o600)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
    with contextlib.suppress(OSError):
        target.chmod(0o600)


def _install_file(staged: Path, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.{_private_name('tmp-')}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(staged.read_bytes())
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, target)


def _install_uploads(staged: Path, target: Path) -> None:
    new = target.with_name(_private_name(".uploads-restore-"))
    shutil.copytree(staged, new)
    old = target.with_name(_private_name(".uploads-old-"))
    if target.exists():
        os.rename(target, old)
    os.rename(new, target)
    shutil.rmtree(old, ignore_errors=True)


def restore(settings: Any, cfg: Any, src: Path, force: bool = False, lock_timeout: float = 600.0) -> RestoreReport:
    """Restore an archive written by :func:`backup` into ``settings.index_dir`` and
    ``cfg.data_dir`` (see the module docstring). Raises :class:`DamagedArchiveError` (nothing
    changed), :class:`TargetNotEmptyError` (without ``force``) or :class:`BackupError`."""
    _refuse_postgres(settings, "restore")
    started = time.monotonic()
    src = Path(src).expanduser()
    index_dir = Path(settings.index_dir).expanduser()
    data_dir = cfg.resolve_data_dir()
    if not src.is_file():
        raise BackupError(f"no backup at '{src}'")
    # staging beside the index (same file system: the generation is moved, not copied)
    parent = index_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(parent, ".vraagbaak-restore-")
    staging = parent / _private_name(".vraagbaak-restore-")
    staging.mkdir()
    try:
        meta = _extract_verified(src, staging)  # before anything is changed
        if not force:
            busy = []
            if _index_has_state(index_dir):
                busy.append(f"index '{index_dir}'")
            if items := _data_state(data_dir):
                busy.append(f"data folder '{data_dir}' ({', '.join(items)})")
            if busy:
                raise TargetNotEmptyError(
                    f"{' and '.join(busy)} already hold state; restore onto an empty target, or use --force to replace it"
                )
        source_gen = meta["index"]["generation"]
        report = RestoreReport(
            index_dir=index_dir,
            data_dir=data_dir,
            generation=source_gen,
            source_generation=source_gen,
            embedder=str(meta["index"].get("embedder")),
            created_at=str(meta.get("created_at")),
        )
        report.generation = _install_generation(staging / "index" / source_gen, index_dir, lock_timeout)
        report.restored.append(f"index {report.generation}")
        data_dir.mkdir(parents=True, exist_ok=True)
        staged_data = staging / "data"
        for name in DATABASES:
            if (staged_data / name).is_file():
                _install_database(staged_data / name, data_dir / name)
                report.restored.append(name)
            elif (data_dir / name).exists():
                report.kept.append(name)
        if (staged_data / LINK_SECRET).is_file():
            _install_file(staged_data / LINK_SECRET, data_dir / LINK_SECRET)
            report.restored.append(LINK_SECRET)
            if cfg.link_secret is not None:
                report.warnings.append(
                    "link_secret is set in the settings: it is used instead of the restored data_dir/link-secret"
                )
        elif (data_dir / LINK_SECRET).exists():
            report.kept.append(LINK_SECRET)
        if (staged_data / UPLOADS).is_dir():
            _install_uploads(staged_data / UPLOADS, data_dir / UPLOADS)
            report.restored.append(UPLOADS + "/")
        elif _has_files(data_dir / UPLOADS):
            report.kept.append(UPLOADS + "/")
        old_data = meta.get("source", {}).get("data_dir")
        if (staged_data / UPLOADS).is_dir() and old_data and Path(old_data) != data_dir.resolve():
            report.warnings.append(
                f"uploaded documents were indexed under {old_data}/uploads: the viewer cannot offer their "
                "original file for download here until they are uploaded again (text and citations work)"
            )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report.seconds = time.monotonic() - started
    return report
