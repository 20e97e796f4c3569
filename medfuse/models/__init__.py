"""Models: encoders for each modality (``medfuse.models.encoders``), fusion and heads.

Nothing here is imported by ``import medfuse``; the registries in :mod:`medfuse.registry` import
the modules that define their entries on first lookup.

This room owns the networks and their persistence: encoders, fusion, heads,
:class:`~medfuse.models.model.MedfuseModel` and its presets, the model card, the weights
(safetensors with SHA-256), ``save_model`` / ``load_model``, and the chest CT labels
(:mod:`.labels`). Its entries register in :mod:`medfuse.registry` with their metadata (``tiny``
arguments). It must not touch the readers (it receives :class:`~medfuse.types.Volume` /
:class:`~medfuse.types.Report` objects and preprocesses through :mod:`medfuse.transforms`),
explanations, exporters, workflows, training or the CLI.
"""
