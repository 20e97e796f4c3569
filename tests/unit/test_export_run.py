"""medfuse.export runs the exporters in threads: they overlap, the result keeps the order of the
formats, and a failure is raised after the other formats have written their files."""

from __future__ import annotations

import threading

import pytest

import medfuse
from medfuse.errors import ConfigError, ExportError
from medfuse.export import (
    ExportContext,
    ExportOptions,
    export_each,
    exporter_of,
    prepare_context,
    register_exporter,
)
from medfuse.export.base import default_workers, output_path
from medfuse.prediction import Prediction
from medfuse.registry import exporters


@pytest.fixture
def register():
    names: list[str] = []

    def add(name, fn):
        exporters.register(name, fn, overwrite=True)
        names.append(name)

    yield add
    for name in names:
        exporters._entries.pop(name, None)


def _pred() -> Prediction:
    return Prediction(key="k", findings=[], risk=None, modalities_used=(), model={})


def _meeting(barrier: threading.Barrier, file: str):
    def exporter(prediction, out_dir, options, context):
        barrier.wait()  # returns only when the other exporter is running at the same time
        path = output_path(out_dir, file)
        path.write_text(threading.current_thread().name)
        return [path]

    return exporter


def test_exporters_overlap_and_keep_the_format_order(register, tmp_path):
    barrier = threading.Barrier(2, timeout=10)
    register("test_a", _meeting(barrier, "a.txt"))
    register("test_b", _meeting(barrier, "b.txt"))
    out = medfuse.export(
        _pred(), tmp_path, formats=["test_b", "test_a"], options=ExportOptions(), workers=2
    )
    assert list(out) == ["test_b", "test_a"]
    assert (tmp_path / "a.txt").read_text().startswith("medfuse-export")
    pred = _pred()
    one = threading.Barrier(2, timeout=0.5)
    register("test_c", _meeting(one, "c.txt"))
    register("test_d", _meeting(one, "d.txt"))
    with pytest.raises(ExportError, match="BrokenBarrierError"):  # one after another
        medfuse.export(pred, tmp_path, formats=["test_c", "test_d"], workers=1)
    with pytest.raises(ConfigError):
        medfuse.export(pred, tmp_path, formats=["test_c"], workers=0)


def test_a_failure_is_raised_after_the_others_wrote_their_files(register, tmp_path):
    def broken(prediction, out_dir, options, context):
        raise ValueError("boom")

    def slow(prediction, out_dir, options, context):
        threading.Event().wait(0.3)
        path = output_path(out_dir, "slow.txt")
        path.write_text("done")
        return [path]

    register("test_broken", broken)
    register("test_slow", slow)
    pred = _pred()
    with pytest.raises(ExportError, match="test_broken export failed: ValueError: boom"):
        medfuse.export(pred, tmp_path, formats=["test_broken", "test_slow"], workers=2)
    assert (tmp_path / "slow.txt").read_text() == "done"
    # the timings are the result's: the exporters never change the prediction
    result = export_each(pred, tmp_path, formats=["test_broken", "test_slow"], workers=2)
    assert set(result.timings) == {"test_broken", "test_slow"} and result.timings["test_slow"] > 0
    assert list(result.failed) == ["test_broken"] and pred.timings == {}


def test_every_exporter_of_an_output_set_gets_one_context(register, tmp_path):
    """A third-party exporter, registered with a ``prepare`` hook or as a plain function, is
    called like the built-in ones: with the output set's one context, which holds what its
    hook prepared."""
    seen = []

    def hook(context):
        return ("prepared for", context.options.manufacturer)

    def with_hook(prediction, out_dir, options, context):
        seen.append((context, context.take_prepared("test_hooked")))
        return []

    def plain(prediction, out_dir, options, context):
        seen.append((context, None))
        return []

    register_exporter("test_hooked", prepare=hook, overwrite=True)(with_hook)
    register("test_hooked", exporters.get("test_hooked"))  # taken out after the test
    register("test_plain", plain)
    assert exporter_of("test_hooked").prepare is hook and exporter_of("test_plain").prepare is None
    opts = ExportOptions(manufacturer="site")
    pred = _pred()
    ctx = prepare_context(["test_plain", "test_hooked"], opts)
    assert ctx.prepared == {"test_hooked": ("prepared for", "site")}
    export_each(pred, tmp_path, ["test_hooked", "test_plain"], opts, context=ctx, workers=2)
    assert {id(c) for c, _ in seen} == {id(ctx)}
    assert ("prepared for", "site") in [p for _, p in seen] and ctx.prepared == {}
    seen.clear()  # without a context, export makes one for the set, with nothing prepared
    export_each(pred, tmp_path, ["test_hooked", "test_plain"], opts, workers=2)
    assert len({id(c) for c, _ in seen}) == 1 and [p for _, p in seen] == [None, None]
    ctx_for_volume = ExportContext(opts, volume=object())  # made for another study
    with pytest.raises(ConfigError, match="another study"):
        export_each(pred, tmp_path, ["test_plain"], opts, context=ctx_for_volume)


@pytest.mark.parametrize(("cpus", "threads"), [(None, 1), (1, 1), (2, 1), (3, 1), (16, 8)])
def test_exporters_take_half_the_cpus_by_default(monkeypatch, cpus, threads):
    """Their heavy parts have thread pools of their own; on two cores one exporter thread
    beat two (docs/exports.md)."""
    monkeypatch.setattr("os.cpu_count", lambda: cpus)
    assert default_workers() == threads
