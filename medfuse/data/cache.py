"""Per-case cache of preprocessed model inputs: one memory-mappable ``.npy`` file per image.

A case's image is read once (:func:`medfuse.read_volume`) and preprocessed with the model's own
transforms (:func:`medfuse.transforms.preprocess`); the float16 result ``[C, X, Y, Z]`` is
written atomically to ``<cache>/images/<kk>/<key>.npy`` beside a small ``<key>.json`` of
non-identifying facts (shape, spacing, modality, manufacturer, value range, reader warnings).

The key is the SHA-256 of the cache version, the input's fingerprint, the preprocessing config
and :data:`~medfuse.transforms.PREPROCESS_VERSION`. The fingerprint is the resolved path, size
and modification time of the file, or of every file in a DICOM folder (as build tools do: a
changed, added or removed file changes the key; the bytes are not hashed, so a cache check
costs one ``stat`` per file). A second build of the same manifest finds every key and reads
nothing.

The default cache folder is ``$MEDFUSE_CACHE_DIR``, else ``~/.cache/medfuse``; keys are global,
so one folder can serve many manifests.

Reports are small: the report labeler's output per report text is cached under
``<cache>/reports/`` (keyed by the SHA-256 of the text and the labeler's lexicon), so
``labels_from_reports`` parses each report once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = [
    "CACHE_VERSION",
    "ImageCache",
    "build_images",
    "default_cache_dir",
    "input_fingerprint",
]

log = logging.getLogger(__name__)

#: Bump when the cached arrays would differ for the same inputs and preprocessing.
CACHE_VERSION = 1


def default_cache_dir() -> Path:
    env = os.environ.get("MEDFUSE_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "medfuse"


def input_fingerprint(path: str | os.PathLike) -> list[Any]:
    """Resolved path + (relative name, size, mtime_ns) of the file or of every file below the
    folder, sorted."""
    p = Path(path).resolve()
    if p.is_file():
        st = p.stat()
        return [str(p), st.st_size, st.st_mtime_ns]
    entries = []
    for root, dirs, files in os.walk(p):
        dirs.sort()
        for name in sorted(files):
            f = Path(root) / name
            try:
                st = f.stat()
            except OSError:
                continue
            entries.append([str(f.relative_to(p)), st.st_size, st.st_mtime_ns])
    return [str(p), entries]


def _key(*parts: Any) -> str:
    blob = json.dumps([CACHE_VERSION, *parts], sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


class ImageCache:
    """The cached inputs of one preprocessing config inside a cache folder."""

    def __init__(self, folder: str | os.PathLike | None, preprocessing: Any):
        from ..transforms import PreprocessingConfig

        self.folder = Path(folder) if folder is not None else default_cache_dir()
        self.preprocessing = (
            preprocessing
            if isinstance(preprocessing, PreprocessingConfig)
            else PreprocessingConfig.from_dict(dict(preprocessing))
        )

    def key(self, image: str | os.PathLike) -> str:
        from ..transforms import PREPROCESS_VERSION

        return _key(input_fingerprint(image), self.preprocessing.to_dict(), PREPROCESS_VERSION)

    def array_path(self, key: str) -> Path:
        return self.folder / "images" / key[:2] / f"{key}.npy"

    def has(self, key: str) -> bool:
        return (
            self.array_path(key).is_file() and self.array_path(key).with_suffix(".json").is_file()
        )

    def load(self, key: str, *, mmap: bool = False) -> np.ndarray:
        """The cached ``[C, X, Y, Z]`` float16 array (memory-mapped with ``mmap``)."""
        return np.load(self.array_path(key), mmap_mode="r" if mmap else None)

    def meta(self, key: str) -> dict[str, Any]:
        return json.loads(self.array_path(key).with_suffix(".json").read_text(encoding="utf-8"))

    def build_one(self, image: str | os.PathLike, key: str | None = None) -> dict[str, Any]:
        """Read, preprocess and store one image; returns its facts (``key`` included)."""
        from .._atomic import atomic_open, atomic_write_text
        from ..io.study import read_volume
        from ..transforms import preprocess

        key = key or self.key(image)
        vol = read_volume(image)
        x, rec = preprocess(vol, self.preprocessing)
        arr = x.numpy().astype(np.float16)
        values = np.asarray(vol.array)
        meta = {
            "key": key,
            "shape": [int(s) for s in arr.shape],
            "original_shape": [int(s) for s in vol.shape],
            "spacing": [round(float(s), 4) for s in vol.spacing],
            "modality": vol.modality,
            "units": vol.units,
            "manufacturer": str(vol.meta.get("manufacturer") or ""),
            "value_range": [float(np.nanmin(values)), float(np.nanmax(values))],
            "warnings": list(vol.warnings),
            "steps": [s["name"] for s in rec.steps],
        }
        path = self.array_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path) as fh:
            np.save(fh, arr)
        atomic_write_text(path.with_suffix(".json"), json.dumps(meta) + "\n")
        return meta


# -- building many ----------------------------------------------------------------------------------
def _build_entry(folder: str, pre: dict[str, Any], image: str, key: str) -> dict[str, Any]:
    """One image, in a worker: its facts, or the reason it failed (the build goes on)."""
    from ..errors import MedfuseError

    cache = ImageCache(folder, pre)
    try:
        return {"ok": True, **cache.build_one(image, key)}
    except MedfuseError as exc:
        return {"ok": False, "error": type(exc).__name__, "reason": exc.reason, "hint": exc.hint}
    except (OSError, ValueError, RuntimeError, MemoryError, KeyError, IndexError) as exc:
        # a broken study must not abort the build: its row is left out with the reason
        return {"ok": False, "error": type(exc).__name__, "reason": str(exc) or repr(exc)}


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def build_images(
    cache: ImageCache,
    images: Sequence[Path],
    *,
    workers: int = 1,
    engine: str = "local",
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Facts of every image (``{"ok": True, "key", ...}`` or ``{"ok": False, "error",
    "reason"}``), in input order; the missing ones are built, ``workers`` at a time (processes,
    or Ray tasks with ``engine="ray"``)."""
    keys = [cache.key(p) for p in images]
    out: list[dict[str, Any] | None] = [None] * len(images)
    todo: list[int] = []
    for i, k in enumerate(keys):
        if cache.has(k):
            out[i] = {"ok": True, **cache.meta(k)}
        else:
            todo.append(i)
    done = len(images) - len(todo)
    if progress is not None:
        progress(done, len(images))
    args = [
        (str(cache.folder), cache.preprocessing.to_dict(), str(images[i]), keys[i]) for i in todo
    ]
    for i, res in zip(todo, _run(args, workers, engine), strict=True):
        out[i] = res
        done += 1
        if progress is not None:
            progress(done, len(images))
    return out  # type: ignore[return-value]


def _run(args: list[tuple], workers: int, engine: str) -> Iterator[dict[str, Any]]:
    if engine not in ("local", "ray"):
        raise ConfigError(f"engine must be 'local' or 'ray', got {engine!r}")
    if engine == "ray":
        yield from _run_ray(args, workers)
        return
    if workers <= 1 or len(args) <= 1:
        for a in args:
            yield _build_entry(*a)
        return
    import concurrent.futures as cf
    import multiprocessing as mp

    with cf.ProcessPoolExecutor(
        workers, mp_context=mp.get_context("spawn"), initializer=_worker_init, initargs=(1,)
    ) as pool:
        yield from pool.map(_build_entry, *zip(*args, strict=True), chunksize=4)


def _run_ray(args: list[tuple], workers: int) -> Iterator[dict[str, Any]]:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "the ray engine needs Ray", hint="pip install 'medfuse[ray]' (or use engine: local)"
        ) from None
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=max(1, workers), include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1)(_build_entry)
        refs = [task.remote(*a) for a in args]
        for ref in refs:
            yield ray.get(ref)
    finally:
        if started:
            ray.shutdown()


# -- report labels ----------------------------------------------------------------------------------
def cached_report_labels(
    folder: str | os.PathLike | None,
    texts: Sequence[str | None],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any] | None]:
    """The report labeler's output for each text (None stays None), parsing only the texts not
    in the cache."""
    from .._atomic import atomic_write_text
    from ..text.lexicon import FINDING_CODES
    from ..text.pipeline import parse_reports
    from .labels import labeler_output

    root = (Path(folder) if folder is not None else default_cache_dir()) / "reports"
    keys = [
        None if t is None else _key("labels", FINDING_CODES, hashlib.sha256(t.encode()).hexdigest())
        for t in texts
    ]
    out: list[dict[str, Any] | None] = [None] * len(texts)
    todo = []
    for i, k in enumerate(keys):
        if k is None:
            continue
        f = root / f"{k}.json"
        if f.is_file():
            out[i] = json.loads(f.read_text(encoding="utf-8"))
        else:
            todo.append(i)
    if todo:
        root.mkdir(parents=True, exist_ok=True)
        for n, (i, rep) in enumerate(
            zip(todo, parse_reports([texts[i] for i in todo]), strict=True), start=1
        ):
            out[i] = labeler_output(rep)
            atomic_write_text(root / f"{keys[i]}.json", json.dumps(out[i]))
            if progress is not None:
                progress(n, len(todo))
    return out
