"""Download the standard interactive-segmentation sets from their public sources and unpack them where the
loaders of :mod:`hlmat_env.datasets.benchmarks` look (``hlmat data fetch NAME --root DIR``).

:data:`SOURCES` lists each set: the archive URLs the interactive-segmentation projects link to (f-BRS / RITM
for GrabCut, Berkeley, DAVIS and COCO-MVal; the original hosts for PascalVOC and SBD), the archive type, the
licence, and where the loader's root lies inside the archive.

**Checks.** Where a source publishes the archive's size and SHA-256 (``size`` / ``sha256`` set in its
:class:`Source`), the download is checked against them. None of the sources below publishes a SHA-256 that we
could confirm, so for them the SHA-256 of the **first** download is recorded beside the data, in
``DIR/ARCHIVE.sha256`` (``sha256sum`` format), and every later download is checked against that record; the
result says which check was made. A mismatch raises :class:`ChecksumMismatch`, deletes the bad archive and
unpacks nothing.

**Resume.** The archive is written to ``DIR/ARCHIVE.part`` and renamed when complete. An interrupted
download keeps the ``.part`` file; the next run (or the automatic retries) asks the server for the rest with an
HTTP ``Range`` request, and starts over when the server does not honour it.

**Unpacking.** Every member of the archive is checked before anything is written: absolute paths, ``..``
components, links, devices and other special members are refused (:class:`UnsafeArchive`). The archive is
unpacked into a staging folder inside ``DIR``, then moved into place.
"""
from __future__ import annotations

import hashlib
import http.client
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

from hlmat_env.errors import DatasetError, HLMATError, unknown_name


class FetchError(HLMATError):
    """A download or unpacking failed; the message says what to do (usually: run the command again)."""


class DownloadInterrupted(FetchError):
    """The connection ended before the whole archive arrived; the ``.part`` file is kept for a resume."""


class ChecksumMismatch(FetchError):
    """The downloaded archive's size or SHA-256 differs from the published or recorded one (nothing unpacked)."""


class UnsafeArchive(FetchError):
    """The archive holds a member that would be written outside its folder, a link or a special file."""


@dataclass(frozen=True)
class Source:
    """Where a set comes from and how it unpacks.

    Attributes:
        name: the name ``hlmat data fetch`` takes.
        urls: archive URLs, tried in order (mirrors).
        filename: the archive's file name under ``--root``.
        archive: ``"zip"`` or ``"tar"`` (any compression ``tarfile`` reads).
        kind: the dataset spec kind that reads it (``grabcut``, ``pascalvoc``...).
        marker: a path that exists in the loader's root (to find it after unpacking).
        root: the loader's root relative to ``--root`` as we expect the archive to unpack (searched for by
            ``marker`` when it is not there).
        licence: the licence or terms of use, in words.
        homepage: the set's page.
        size: published archive size in bytes, or None.
        sha256: published archive SHA-256 (hex), or None: the first download's hash is recorded instead.
        split: the default split appended to the spec (``pascalvoc:ROOT,val``), or "".
        note: what is assumed about this source (shown by ``hlmat data list``).
    """

    name: str
    urls: tuple[str, ...]
    filename: str
    archive: str
    kind: str
    marker: str
    root: str
    licence: str
    homepage: str
    size: int | None = None
    sha256: str | None = None
    split: str = ""
    note: str = ""


_FBRS = "https://github.com/saic-vul/fbrs_interactive_segmentation/releases/download/v1.0/"
_ASSUMED = "URL and archive layout as linked from the f-BRS/RITM READMEs (not re-checked here); no published SHA-256"

SOURCES: dict[str, Source] = {s.name: s for s in (
    Source("grabcut", (_FBRS + "GrabCut.zip",), "GrabCut.zip", "zip", "grabcut", "boundary_GT", "GrabCut",
           "research use (Rother et al. 2004, Microsoft Research); no explicit licence",
           "https://www.microsoft.com/en-us/research/project/image-understanding/", note=_ASSUMED),
    Source("berkeley", (_FBRS + "Berkeley.zip",), "Berkeley.zip", "zip", "berkeley", "masks", "Berkeley",
           "research use (McGuinness and O'Connor 2010, on BSDS images); no explicit licence",
           "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/bsds/", note=_ASSUMED),
    Source("davis", (_FBRS + "DAVIS.zip",), "DAVIS.zip", "zip", "davis", "gt", "DAVIS",
           "DAVIS 2016 terms of use (research use); see the homepage",
           "https://davischallenge.org/davis2016/code.html", note=_ASSUMED),
    Source("coco-mval", (_FBRS + "COCO_MVal.zip",), "COCO_MVal.zip", "zip", "coco-mval", "gt", "COCO_MVal",
           "COCO: annotations CC BY 4.0, images under their Flickr licences",
           "https://cocodataset.org/#termsofuse", note=_ASSUMED),
    Source("pascalvoc", ("http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",),
           "VOCtrainval_11-May-2012.tar", "tar", "pascalvoc", "SegmentationObject", "VOCdevkit/VOC2012",
           "PASCAL VOC 2012: images under the Flickr terms of use; annotations for research use",
           "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/", split="val",
           note="URL and layout from the VOC2012 page (not re-checked here); the page publishes no SHA-256"),
    Source("sbd", ("http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/"
                   "benchmark.tgz",),
           "benchmark.tgz", "tar", "sbd", "inst", "benchmark_RELEASE/dataset",
           "research use (Hariharan et al. 2011, on PASCAL VOC images); no explicit licence",
           "http://home.bharathh.info/pubs/codes/SBD/download.html", split="val",
           note="URL and layout from the SBD page (not re-checked here); the page publishes no SHA-256"),
)}
"""The sets ``hlmat data fetch`` knows, by name."""


@dataclass
class FetchResult:
    """What :func:`fetch` did.

    Attributes:
        name: the set.
        spec: the dataset spec that reads it (``grabcut:DIR/GrabCut``).
        data_root: the loader's root folder.
        sha256: the archive's SHA-256 ("" when nothing was downloaded).
        check: ``"published"``, ``"recorded"`` (first download, hash written), ``"matched record"`` or
            ``"already present"``.
        messages: lines for the user (what was checked, recorded, skipped).
    """

    name: str
    spec: str
    data_root: Path
    sha256: str = ""
    check: str = ""
    messages: list[str] = field(default_factory=list)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, dest: str | Path, *, progress: bool = True, timeout: float = 60.0,
             chunk: int = 1 << 16, desc: str = "") -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming a partial ``.part`` with an HTTP Range.

    Args:
        url: the file's URL (``http``, ``https`` or ``file``).
        dest: where the complete file goes.
        progress: show a tqdm bar (bytes, rate, time left).
        timeout: socket timeout in seconds.
        chunk: read size in bytes.
        desc: the bar's label.

    Returns:
        ``dest``.

    Raises:
        DownloadInterrupted: the connection ended early (the ``.part`` file is kept for the next call).
        FetchError: an HTTP error or an unreachable host, naming the URL.
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "hlmat-data-fetch", "Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # nothing left to send: the .part may already be whole
            total = (e.headers.get("Content-Range") or "").rpartition("/")[2]
            if total.isdigit() and int(total) == start:
                part.replace(dest)
                return dest
            part.unlink()
            return download(url, dest, progress=progress, timeout=timeout, chunk=chunk, desc=desc)
        raise FetchError(f"download of {url} failed: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise FetchError(f"download of {url} failed: {getattr(e, 'reason', e)}") from e
    with resp:
        status = getattr(resp, "status", 200)
        if start and status == 206:
            content_range = resp.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {start}-"):
                raise FetchError(f"download of {url}: the server resumed at {content_range!r}, not at byte {start}")
            mode = "ab"
        else:
            start, mode = 0, "wb"  # a fresh download, or a server that ignores Range: start over
        length = resp.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        got = 0
        bar = tqdm(total=None if expected is None else start + expected, initial=start, unit="B", unit_scale=True,
                   unit_divisor=1024, desc=desc or dest.name, disable=not progress, leave=False)
        try:
            with open(part, mode) as f:
                while True:
                    try:
                        data = resp.read(chunk)
                    except (http.client.IncompleteRead, OSError, http.client.HTTPException) as e:
                        data = getattr(e, "partial", b"") or b""
                        f.write(data)
                        got += len(data)
                        raise DownloadInterrupted(_interrupted(url, part, start + got, expected and start + expected)) from e
                    if not data:
                        break
                    f.write(data)
                    got += len(data)
                    bar.update(len(data))
        finally:
            bar.close()
        if expected is not None and got < expected:
            raise DownloadInterrupted(_interrupted(url, part, start + got, start + expected))
    part.replace(dest)
    return dest


def _interrupted(url: str, part: Path, have: int, total: int | None) -> str:
    of = f" of {total}" if total else ""
    return (f"download of {url} was interrupted after {have}{of} bytes; {part} is kept: run the same command "
            "again to resume")


def _check_members(names: list[tuple[str, str]], archive: Path) -> None:
    """Refuse absolute paths, ``..`` and non-regular members; ``names`` is ``[(name, type)]`` with type
    ``"file"``, ``"dir"`` or what else the member is."""
    for name, typ in names:
        p = PurePosixPath(name.replace("\\", "/"))
        if p.is_absolute() or ".." in p.parts or (p.parts and ":" in p.parts[0]):
            raise UnsafeArchive(f"{archive}: member {name!r} would be written outside the target folder; "
                                "nothing was unpacked")
        if typ not in ("file", "dir"):
            raise UnsafeArchive(f"{archive}: member {name!r} is a {typ}, which is not unpacked; nothing was unpacked")


def unpack(archive: str | Path, dest: str | Path, kind: str) -> list[Path]:
    """Unpack ``archive`` into ``dest`` after checking every member (see the module docstring).

    Args:
        archive: a zip or tar file.
        dest: the folder to unpack into (created).
        kind: ``"zip"`` or ``"tar"``.

    Returns:
        The top-level paths written in ``dest``.

    Raises:
        UnsafeArchive: a member with an absolute path, a ``..`` component, a link or a special file.
        FetchError: the file is not a readable archive of that kind.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                infos = zf.infolist()
                types = []
                for i in infos:
                    mode = (i.external_attr >> 16) & 0o170000
                    types.append((i.filename, "dir" if i.is_dir() else
                                  "symlink" if mode == 0o120000 else "file"))
                _check_members(types, archive)
                zf.extractall(dest)
                names = [i.filename for i in infos]
        else:
            with tarfile.open(archive, "r:*") as tf:
                members = tf.getmembers()
                _check_members([(m.name, "file" if m.isfile() else "dir" if m.isdir() else
                                 "link" if m.issym() or m.islnk() else "special file") for m in members], archive)
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(dest, filter="data")
                else:  # pragma: no cover - Python without extraction filters; members checked above
                    tf.extractall(dest)
                names = [m.name for m in members]
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as e:
        raise FetchError(f"{archive} is not a readable {kind} archive: {e}") from e
    tops = sorted({PurePosixPath(n.replace("\\", "/")).parts[0] for n in names if n.strip("/.")})
    return [dest / t for t in tops]


def find_root(base: str | Path, source: Source, depth: int = 4) -> Path | None:
    """The loader's root under ``base``: ``base/source.root`` when it holds ``source.marker``, else the
    shallowest folder that does (at most ``depth`` levels down), else None."""
    base = Path(base)
    if (base / source.root / source.marker).exists():
        return base / source.root
    frontier = [base]
    for _ in range(depth + 1):
        nxt = []
        for d in sorted(frontier):
            if (d / source.marker).exists():
                return d
            nxt += [c for c in d.iterdir() if c.is_dir() and not c.name.startswith(".")] if d.is_dir() else []
        frontier = nxt
    return None


def _spec(source: Source, data_root: Path) -> str:
    return f"{source.kind}:{data_root}" + (f",{source.split}" if source.split else "")


def fetch(name: str, root: str | Path, *, sources: dict[str, Source] | None = None, force: bool = False,
          keep_archive: bool = False, progress: bool = True, retries: int = 2, timeout: float = 60.0,
          say: Callable[[str], None] = lambda line: None) -> FetchResult:
    """Download set ``name`` into ``root``, check it, unpack it where its loader looks and return its spec.

    Args:
        name: a key of ``sources``.
        root: the folder to put it in (created).
        sources: the table to look ``name`` up in (default :data:`SOURCES`).
        force: download and unpack again even when the set is already there.
        keep_archive: keep the archive after unpacking (default: delete it; the hash record stays).
        progress: show a download progress bar.
        retries: automatic resumes after an interrupted download (each continues the ``.part`` file).
        timeout: socket timeout in seconds.
        say: called with each line worth telling the user.

    Returns:
        A :class:`FetchResult` with the spec and which check was made.

    Raises:
        UnknownName: ``name`` is not in ``sources``.
        ChecksumMismatch: the size or SHA-256 differs from the published or recorded one (archive deleted,
            nothing unpacked).
        DownloadInterrupted: still interrupted after ``retries`` resumes (the ``.part`` file is kept).
        UnsafeArchive: see :func:`unpack`.
        FetchError: every URL failed, or the unpacked archive lacks the loader's layout.
    """
    table = SOURCES if sources is None else sources
    if name not in table:
        raise unknown_name("data set", name, table)
    src, root = table[name], Path(root)
    root.mkdir(parents=True, exist_ok=True)
    existing = find_root(root, src)
    if existing is not None and not force:
        spec = _spec(src, existing)
        res = FetchResult(name, spec, existing, check="already present",
                          messages=[f"{name} is already in {existing} (pass --force to download it again)"])
        say(res.messages[0])
        return res
    archive = root / src.filename
    messages: list[str] = []

    def tell(line: str) -> None:
        messages.append(line)
        say(line)

    if not archive.exists():
        errors = []
        for url in src.urls:
            for attempt in range(retries + 1):
                try:
                    download(url, archive, progress=progress, timeout=timeout, desc=name)
                    break
                except DownloadInterrupted as e:
                    if attempt == retries:
                        raise
                    tell(f"{e}; resuming ({attempt + 1}/{retries})")
                except FetchError as e:
                    errors.append(str(e))
                    break
            if archive.exists():
                break
        if not archive.exists():
            raise FetchError(f"could not download {name}: " + "; ".join(errors))
    else:
        tell(f"using the archive already at {archive}")
    size = archive.stat().st_size
    if src.size is not None and size != src.size:
        archive.unlink()
        raise ChecksumMismatch(f"{name}: {archive.name} has {size} bytes, the source publishes {src.size}; the "
                               "download was deleted and nothing was unpacked")
    digest = _sha256(archive)
    record = root / f"{src.filename}.sha256"
    if src.sha256:
        expected, check = src.sha256.lower(), "published"
    elif record.exists():
        expected, check = record.read_text().split()[0].lower(), "matched record"
    else:
        expected, check = None, "recorded"
    if expected is not None and digest != expected:
        archive.unlink()
        what = "the published SHA-256" if check == "published" else f"the SHA-256 recorded at the first download ({record})"
        raise ChecksumMismatch(f"{name}: {archive.name} has SHA-256 {digest}, not {what} {expected}; the download "
                               "was deleted and nothing was unpacked")
    if check == "published":
        tell(f"{archive.name}: size and SHA-256 match the published ones")
    elif check == "matched record":
        tell(f"{archive.name}: no published checksum; SHA-256 matches the one recorded at the first download ({record})")
    else:
        record.write_text(f"{digest}  {src.filename}\n")
        tell(f"{archive.name}: the source publishes no checksum; recorded this first download's SHA-256 in "
             f"{record}: later downloads are checked against it")
    staging = root / f".{name}.unpacking"
    if staging.exists():
        shutil.rmtree(staging)
    try:
        tops = unpack(archive, staging, src.archive)
        for top in tops:
            target = root / top.name
            if target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
            top.replace(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    data_root = find_root(root, src)
    if data_root is None:
        raise FetchError(f"{name}: unpacked {archive.name} into {root}, but found no folder holding "
                         f"{src.marker!r} (the {src.kind} layout); the archive is kept")
    if not keep_archive:
        archive.unlink()
    spec = _spec(src, data_root)
    try:
        from hlmat_env.datasets import make_dataset

        tell(f"{spec}: {len(make_dataset(spec))} samples")
    except DatasetError as e:
        tell(f"{spec}: unpacked, but the loader refuses it: {e}")
    return FetchResult(name, spec, data_root, digest, check, messages)
