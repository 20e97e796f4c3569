"""Workflow YAML: schema, loading and clear validation messages.

A workflow says which model to run on each study, how to find each study's report, which
explanations to compute and which files to write. It is data only: loaded with
``yaml.safe_load``, validated by the pydantic models below (unknown keys are errors), and every
name it contains is looked up in a registry — nothing is imported or evaluated from it.

    name: chest_ct_triage
    model: chest_ct_demo                  # shipped model name, or a folder (relative to this file)
    reports: {filenames: [report.txt]}    # plus optional folder / csv, see ReportSource
    explain: {methods: [gradcam, modality_shapley]}
    export: {formats: [json, html, pdf, dicom_sr, dicom_saliency, nifti, fhir]}

``docs/workflow.schema.json`` is the JSON Schema generated from these models
(``python -m medfuse.config > docs/workflow.schema.json``); ``docs/workflows.md`` explains it.

Shipped workflows live in ``medfuse/assets/workflows/<name>.yaml`` (the repository's top-level
``workflows/`` links to them): ``load_workflow("chest_ct_triage")`` reads the shipped one when no
file of that name exists (a file always wins); ``shipped_workflows()`` lists them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError
from .explain.methods import DEFAULT_METHODS

__all__ = [
    "MAX_WORKERS",
    "ExplainSection",
    "ExportSection",
    "InputSection",
    "ReportSource",
    "RunSection",
    "Workflow",
    "find_workflow",
    "load_workflow",
    "shipped_workflows",
    "workflow_schema",
]

#: Workflow files larger than this are refused before parsing.
MAX_WORKFLOW_BYTES = 1 << 20
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_max_length=4096)


class InputSection(_Strict):
    """How each study is read."""

    #: Modalities a series may have to be selected (others are listed by ``medfuse info`` but
    #: never chosen); a study without one fails with the reason.
    modalities: tuple[Literal["CT", "MR"], ...] = ("CT", "MR")
    #: Series override: SeriesInstanceUID, part key or description substring (None: the
    #: selection rules of ``medfuse info``).
    series: str | None = None
    #: "error" refuses non-uniform slice spacing; "warn" keeps the mean step with a warning.
    on_nonuniform: Literal["error", "warn"] = "error"
    #: "affine" keeps gantry-tilted stacks as an exact sheared affine; "error" refuses them.
    on_shear: Literal["affine", "error"] = "affine"
    #: "error" refuses a series with unplaceable files; "skip" drops them with a warning.
    on_bad_file: Literal["error", "skip"] = "error"
    #: Largest decoded volume accepted, in MiB (refused before any pixel is decoded).
    max_volume_mib: int = Field(16384, ge=1, le=1 << 20)

    def policy(self) -> Any:
        from .io.policy import ReadPolicy

        return ReadPolicy(
            on_nonuniform=self.on_nonuniform,
            on_shear=self.on_shear,
            on_bad_file=self.on_bad_file,
            max_bytes=self.max_volume_mib * 2**20,
        )


class ReportSource(_Strict):
    """Where a study's report is found, tried in this order:

    1. ``filenames`` in the study folder (the first that exists);
    2. ``folder``: a file named ``<AccessionNumber>.<ext>`` or ``<StudyInstanceUID>.<ext>``
       (ext: txt, json, html, md);
    3. ``csv``: a row whose ``id_column`` equals the AccessionNumber or the StudyInstanceUID,
       report text in ``text_column`` (default: the first of text / report / report_text / ...).

    Paths are relative to the workflow file unless absolute. A study without a report runs
    image-only (the prediction says so) unless ``required`` is true, which makes it an error.
    """

    filenames: tuple[str, ...] = ("report.txt", "report.json", "report.md", "report.html")
    folder: str | None = None
    csv: str | None = None
    id_column: str = "accession_number"
    text_column: str | None = None
    required: bool = False

    @field_validator("filenames")
    @classmethod
    def _plain_names(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for name in v:
            if not name or "/" in name or "\\" in name or name in (".", ".."):
                raise ValueError(f"{name!r} must be a plain file name (no folders)")
        return v


class ExplainSection(_Strict):
    """Which explanations to compute (registry ``explainers``); empty ``methods``: none."""

    methods: tuple[str, ...] = DEFAULT_METHODS
    #: Labels to explain: "positive" (the positive findings, else the most probable one), a
    #: list, or null (all of the model's labels: slower).
    labels: Literal["positive"] | tuple[str, ...] | None = "positive"
    #: Per-method keyword arguments, e.g. ``{occlusion: {levels: 2}}`` (plain values only).
    params: dict[str, dict[str, int | float | str | bool | None]] = Field(default_factory=dict)

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        from .registry import explainers

        unknown = [m for m in v if m not in explainers]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; choose from {explainers.names()}")
        return v


class ExportSection(_Strict):
    """Which files to write per study (registry ``exporters``) and what they may contain."""

    formats: tuple[str, ...] = (
        "json",
        "html",
        "pdf",
        "dicom_sr",
        "dicom_saliency",
        "nifti",
        "fhir",
    )
    #: Put patient-identifying header values in the human-readable outputs (off by default).
    include_phi: bool = False
    #: De-identify the DICOM outputs (SR, parametric maps): DICOM PS3.15 basic profile, patient
    #: name / ID = the study key, UIDs replaced consistently within the output set.
    deidentify: bool = False
    #: Labels whose saliency maps are exported (None: the positive findings with image evidence,
    #: else the most probable such label).
    saliency_labels: tuple[str, ...] | None = None
    saliency_method: str | None = None
    #: Pixels of the DICOM parametric maps: "jpeg-ls" (JPEG-LS Lossless) or "none"
    #: (uncompressed); the stored values are the same.
    dicom_saliency_compression: Literal["jpeg-ls", "none"] = "jpeg-ls"

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        from .registry import exporters

        unknown = [f for f in v if f not in exporters]
        if unknown:
            raise ValueError(f"unknown format(s) {unknown}; choose from {exporters.names()}")
        if len(set(v)) != len(v):
            raise ValueError("formats are listed more than once")
        return v

    def options(self) -> Any:
        from .export.base import ExportOptions

        return ExportOptions(
            include_phi=self.include_phi,
            deidentify=self.deidentify,
            saliency_labels=self.saliency_labels,
            saliency_method=self.saliency_method,
            dicom_saliency_compression=self.dicom_saliency_compression,
        )


#: The most worker processes a run may have (``run.workers``, ``--workers``, ``auto``)
MAX_WORKERS = 64


class RunSection(_Strict):
    """How studies are scheduled (command-line options override these)."""

    #: Worker processes (each loads the model once); 1 runs in this process; "auto": one per
    #: CPU core, at most one per two studies to run and per 2 GiB of available memory.
    workers: Annotated[int, Field(ge=1, le=MAX_WORKERS)] | Literal["auto"] = "auto"
    #: Torch threads per worker (None: CPUs / workers).
    threads: int | None = Field(None, ge=1, le=256)
    #: "local" (this machine) or "ray" (Ray actors; needs ``medfuse[ray]``).
    engine: Literal["local", "ray"] = "local"
    #: Address of an existing Ray cluster (None: start a local one).
    address: str | None = Field(None, max_length=256)
    #: Device for the model: "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d{1,2})?)$")
    #: When the studies run in this process, write the DICOM outputs (SR, parametric maps) in a
    #: second process beside it: "auto", for studies of 512² × 32 voxels or more with two CPUs
    #: or more; true, for every study; false, never.
    export_worker: bool | Literal["auto"] = "auto"

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, v: Any) -> Any:
        ok = v == "auto" or (
            isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_WORKERS
        )
        if not ok:
            raise ValueError(
                f"a number of worker processes from 1 to {MAX_WORKERS}, or auto; got {v!r}"
            )
        return v

    @field_validator("export_worker", mode="before")
    @classmethod
    def _export_worker(cls, v: Any) -> Any:
        if not (isinstance(v, bool) or v == "auto"):
            raise ValueError(f"true, false or auto; got {v!r}")
        return v


class Workflow(_Strict):
    """A workflow file (see the module docstring and ``docs/workflows.md``)."""

    version: Literal[1] = 1
    name: str = Field(pattern=_NAME)
    description: str = ""
    #: Shipped model name (``medfuse/assets/models``) or a model folder written by save_model.
    model: str = Field(min_length=1, max_length=1024)
    input: InputSection = Field(default_factory=InputSection)
    reports: ReportSource = Field(default_factory=ReportSource)
    explain: ExplainSection = Field(default_factory=ExplainSection)
    export: ExportSection = Field(default_factory=ExportSection)
    run: RunSection = Field(default_factory=RunSection)
    #: Folder the workflow was read from (relative paths resolve against it); not in the YAML.
    base_dir: str = Field("", exclude=True)

    def resolve(self, path: str | None) -> Path | None:
        """``path`` relative to the workflow file's folder (absolute paths unchanged)."""
        if path is None:
            return None
        p = Path(os.path.expanduser(path))
        return p if p.is_absolute() else Path(self.base_dir or ".") / p

    def model_ref(self) -> str:
        """The model as ``load_model`` takes it: a folder next to the workflow if one exists,
        else the shipped model name."""
        candidate = self.resolve(self.model)
        if candidate is not None and candidate.is_dir():
            return str(candidate)
        return self.model


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ())) or "(top level)"
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            msg = "unknown key"
        elif err.get("type") == "missing":
            msg = "required key is missing"
        lines.append(f"{where}: {msg}")
    return "; ".join(lines)


def _shipped_dir() -> Path:
    return Path(__file__).resolve().parent / "assets" / "workflows"


def shipped_workflows() -> dict[str, Path]:
    """The workflows shipped in the package, ``{name: path}`` sorted by name."""
    return {p.stem: p for p in sorted(_shipped_dir().glob("*.yaml")) if p.is_file()}


def find_workflow(ref: str | os.PathLike) -> Path:
    """The file a workflow reference names: an existing path as given (a file always wins), else
    the shipped workflow of that name (``chest_ct_triage`` or ``chest_ct_triage.yaml``).

    Raises :class:`~medfuse.errors.ConfigError` when it is neither, listing the shipped names.
    """
    path = Path(ref)
    if os.path.lexists(path):
        return path
    text = os.fspath(ref)
    name = text[:-5] if text.endswith(".yaml") else text
    shipped = shipped_workflows()
    if re.fullmatch(_NAME, name) and name in shipped:
        return shipped[name]
    raise ConfigError(
        "cannot read workflow: no such file, and no shipped workflow of that name",
        path=path,
        hint=f"shipped workflows: {', '.join(shipped) or 'none'}; see medfuse workflows list",
    )


def load_workflow(source: str | os.PathLike | dict[str, Any]) -> Workflow:
    """Read and validate a workflow from a YAML file, a shipped workflow's name (when no file of
    that name exists; see :func:`find_workflow`) or an already parsed mapping.

    Relative paths in the workflow resolve against the folder of the file it was read from.
    Raises :class:`~medfuse.errors.ConfigError` naming the file and every invalid key.
    """
    import yaml

    base = ""
    path: Path | None = None
    if isinstance(source, dict):
        data: Any = dict(source)
    else:
        path = find_workflow(source)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise ConfigError(f"cannot read workflow: {exc.strerror or exc}", path=path) from None
        if not path.is_file():
            raise ConfigError("workflow must be a YAML file", path=path)
        if size > MAX_WORKFLOW_BYTES:
            raise ConfigError(
                f"workflow file is {size} bytes (limit {MAX_WORKFLOW_BYTES})", path=path
            )
        try:
            data = yaml.safe_load(path.read_bytes())
        except yaml.YAMLError as exc:
            raise ConfigError(f"not valid YAML: {exc}", path=path) from None
        except (OSError, UnicodeDecodeError, RecursionError) as exc:
            raise ConfigError(f"cannot read workflow: {exc}", path=path) from None
        base = str(path.resolve().parent)
    if not isinstance(data, dict):
        raise ConfigError(
            f"a workflow is a mapping of keys, not {type(data).__name__}",
            path=path,
            hint="see medfuse workflows show chest_ct_triage",
        )
    try:
        wf = Workflow.model_validate({**data, "base_dir": base})
    except ValidationError as exc:
        raise ConfigError(
            f"invalid workflow: {_format_errors(exc)}",
            path=path,
            hint="see docs/workflows.md and docs/workflow.schema.json",
        ) from None
    except RecursionError:
        raise ConfigError("invalid workflow: nested too deeply", path=path) from None
    return wf


def workflow_schema() -> dict[str, Any]:
    """The JSON Schema of workflow files."""
    schema = Workflow.model_json_schema()
    schema["properties"].pop("base_dir", None)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "medfuse workflow"
    return schema


if __name__ == "__main__":  # pragma: no cover
    import json

    print(json.dumps(workflow_schema(), indent=2))
