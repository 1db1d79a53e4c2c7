"""``hlmat data fetch`` end to end against a local HTTP server (127.0.0.1, never the internet): fresh download
and unpack read by the loader, checksum mismatch, interrupted download and resume, the first-download hash
record, unsafe archives."""
from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import zipfile
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agents.cli import main
from hlmat_env import make_dataset
from hlmat_env.datasets import fetch as F


def _png(values: np.ndarray, mode: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(values, mode).save(buf, format="PNG" if mode != "L" else "BMP")
    return buf.getvalue()


def _grabcut_zip(seed: int = 0) -> bytes:
    """A GrabCut-layout zip (``GrabCut/data_GT`` + ``GrabCut/boundary_GT``) with two images, padded with a
    stored (incompressible) blob so that downloads take several reads."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name in ("banana", "teddy"):
            img = rng.integers(0, 256, (10, 14, 3), dtype=np.uint8)
            m = np.zeros((10, 14), np.uint8)
            m[2:8, 3:11], m[3:7, 4:10] = 128, 255
            zf.writestr(f"GrabCut/data_GT/{name}.png", _png(img, "RGB"))
            zf.writestr(f"GrabCut/boundary_GT/{name}.bmp", _png(m, "L"))
        zf.writestr("GrabCut/README.txt", rng.integers(0, 256, 300_000, dtype=np.uint8).tobytes())
    return buf.getvalue()


class _Server:
    """Serves ``files`` (path -> bytes) with HTTP Range support; ``cut[path] = n`` makes the next response for
    ``path`` close the connection after ``n`` body bytes (once)."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.ranges = True  # False: ignore Range headers (answer 200 with the whole file)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                outer.requests.append((self.path, rng))
                data = outer.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if rng and rng.startswith("bytes=") and outer.ranges:
                    start = int(rng[6:].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                n = outer.cut.pop(self.path, None)
                if n is not None:
                    self.wfile.write(body[:n])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


def _source(server: _Server, data: bytes, **kw) -> dict[str, F.Source]:
    server.files["/GrabCut.zip"] = data
    src = replace(F.SOURCES["grabcut"], urls=(server.url + "/GrabCut.zip",), **kw)
    return {"grabcut": src}


def test_fresh_download_unpacks_where_the_loader_looks_and_checks_the_published_hash(server, tmp_path):
    data = _grabcut_zip()
    sources = _source(server, data, size=len(data), sha256=hashlib.sha256(data).hexdigest())
    res = F.fetch("grabcut", tmp_path, sources=sources, progress=False)
    assert res.check == "published" and res.spec == f"grabcut:{tmp_path / 'GrabCut'}"
    ds = make_dataset(res.spec)
    assert [ds.sample_id(i) for i in range(len(ds))] == ["banana", "teddy"]
    assert (ds[0].target == -1).any() and (ds[0].target == 1).sum() == 24
    assert not (tmp_path / "GrabCut.zip").exists() and not list(tmp_path.glob("*.part"))
    again = F.fetch("grabcut", tmp_path, sources=sources, progress=False)  # already there: no download
    assert again.check == "already present" and len(server.requests) == 1


def test_checksum_mismatch_is_a_typed_error_and_unpacks_nothing(server, tmp_path):
    data = _grabcut_zip()
    sources = _source(server, data, sha256="0" * 64)
    with pytest.raises(F.ChecksumMismatch, match="published SHA-256"):
        F.fetch("grabcut", tmp_path, sources=sources, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no archive, no .part, no data
    with pytest.raises(F.ChecksumMismatch, match="bytes"):
        F.fetch("grabcut", tmp_path, sources=_source(server, data, size=len(data) + 1), progress=False)
    assert not (tmp_path / "GrabCut").exists()


def test_interrupted_download_keeps_the_part_file_and_resumes_with_a_range(server, tmp_path):
    data = _grabcut_zip()
    sources = _source(server, data, sha256=hashlib.sha256(data).hexdigest())
    server.cut["/GrabCut.zip"] = 100_000
    with pytest.raises(F.DownloadInterrupted, match="run the same command again to resume"):
        F.fetch("grabcut", tmp_path, sources=sources, progress=False, retries=0)
    part = tmp_path / "GrabCut.zip.part"
    assert part.stat().st_size == 100_000 and not (tmp_path / "GrabCut").exists()
    res = F.fetch("grabcut", tmp_path, sources=sources, progress=False)
    assert res.check == "published" and len(make_dataset(res.spec)) == 2 and not part.exists()
    assert server.requests[-1] == ("/GrabCut.zip", "bytes=100000-")


def test_a_server_without_range_support_restarts_the_download(server, tmp_path):
    data = _grabcut_zip()
    sources = _source(server, data, sha256=hashlib.sha256(data).hexdigest())
    server.ranges = False
    (tmp_path / "GrabCut.zip.part").write_bytes(b"stale bytes that must not stay in front")
    res = F.fetch("grabcut", tmp_path, sources=sources, progress=False)
    assert res.check == "published" and server.requests == [("/GrabCut.zip", "bytes=39-")]


def test_a_part_file_that_is_already_whole_is_completed_without_a_body(server, tmp_path):
    data = _grabcut_zip()
    sources = _source(server, data, sha256=hashlib.sha256(data).hexdigest())
    (tmp_path / "GrabCut.zip.part").write_bytes(data)  # interrupted just before the rename
    res = F.fetch("grabcut", tmp_path, sources=sources, progress=False)
    assert res.check == "published" and server.requests == [("/GrabCut.zip", f"bytes={len(data)}-")]


def test_automatic_retry_resumes_an_interrupted_download(server, tmp_path):
    data = _grabcut_zip()
    sources = _source(server, data, sha256=hashlib.sha256(data).hexdigest())
    server.cut["/GrabCut.zip"] = 50_000
    lines: list[str] = []
    res = F.fetch("grabcut", tmp_path, sources=sources, progress=False, retries=1, say=lines.append)
    assert res.check == "published" and any("resuming" in line for line in lines)
    assert [r for _, r in server.requests] == [None, "bytes=50000-"]


def test_first_download_hash_is_recorded_and_later_downloads_are_checked(server, tmp_path):
    data = _grabcut_zip()
    sources = _source(server, data)  # no published size or hash (the real sources' case)
    res = F.fetch("grabcut", tmp_path, sources=sources, progress=False)
    record = tmp_path / "GrabCut.zip.sha256"
    assert res.check == "recorded" and any("recorded" in m for m in res.messages)
    assert record.read_text().split() == [hashlib.sha256(data).hexdigest(), "GrabCut.zip"]
    res = F.fetch("grabcut", tmp_path, sources=sources, progress=False, force=True)
    assert res.check == "matched record" and len(make_dataset(res.spec)) == 2
    server.files["/GrabCut.zip"] = _grabcut_zip(seed=1)  # the source changed under us
    with pytest.raises(F.ChecksumMismatch, match="recorded at the first download"):
        F.fetch("grabcut", tmp_path, sources=sources, progress=False, force=True)
    assert not (tmp_path / "GrabCut.zip").exists()


def test_cli_fetch_and_list_end_to_end(server, tmp_path, monkeypatch, capsys):
    data = _grabcut_zip()
    monkeypatch.setattr(F, "SOURCES", {**F.SOURCES, **_source(server, data)})
    assert main(["data", "fetch", "grabcut", "--root", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"spec: grabcut:{tmp_path / 'GrabCut'}" in out and "recorded" in out and "2 samples" in out
    server.files["/GrabCut.zip"] = b"garbage"
    assert main(["data", "fetch", "grabcut", "--root", str(tmp_path), "--no-progress", "--force"]) == 2
    assert "ChecksumMismatch" not in capsys.readouterr().err  # one clear line, not a traceback
    assert main(["data", "fetch", "nope", "--root", str(tmp_path)]) == 2
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("grabcut", "berkeley", "davis", "coco-mval", "pascalvoc", "sbd"))


@pytest.mark.parametrize("member", ["../evil.txt", "/abs.txt"])
def test_unsafe_archive_members_are_refused_before_anything_is_written(tmp_path, member):
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:
        zf.writestr("ok/a.txt", "a")
        zf.writestr(member, "x")
    (tmp_path / "a.zip").write_bytes(zbuf.getvalue())
    with pytest.raises(F.UnsafeArchive):
        F.unpack(tmp_path / "a.zip", tmp_path / "out", "zip")
    assert not list((tmp_path / "out").iterdir())
    tbuf = io.BytesIO()
    with tarfile.open(fileobj=tbuf, mode="w:gz") as tf:
        info = tarfile.TarInfo("link")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    (tmp_path / "a.tgz").write_bytes(tbuf.getvalue())
    with pytest.raises(F.UnsafeArchive, match="link"):
        F.unpack(tmp_path / "a.tgz", tmp_path / "out2", "tar")


def test_tar_sources_unpack_and_find_the_loader_root(tmp_path):
    """An SBD-style tgz whose loader root is two levels down is found by its marker."""
    from scipy.io import savemat

    src_dir = tmp_path / "src" / "benchmark_RELEASE" / "dataset"
    (src_dir / "img").mkdir(parents=True)
    (src_dir / "inst").mkdir()
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(src_dir / "img" / "x.jpg")
    seg = np.zeros((6, 8), np.uint8)
    seg[1:3, 1:3] = 1
    savemat(str(src_dir / "inst" / "x.mat"), {"GTinst": {"Segmentation": seg}})
    (src_dir / "val.txt").write_text("x\n")
    with tarfile.open(tmp_path / "benchmark.tgz", "w:gz") as tf:
        tf.add(tmp_path / "src" / "benchmark_RELEASE", arcname="benchmark_RELEASE")
    F.unpack(tmp_path / "benchmark.tgz", tmp_path / "root", "tar")
    root = F.find_root(tmp_path / "root", F.SOURCES["sbd"])
    assert root == tmp_path / "root" / "benchmark_RELEASE" / "dataset"
    assert make_dataset(F._spec(F.SOURCES["sbd"], root)).sample_id(0) == "x#1"
