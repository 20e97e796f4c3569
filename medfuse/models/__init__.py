"""Models: encoders for each modality (``medfuse.models.encoders``), fusion and heads.

Nothing here is imported by ``import medfuse``; the registries in :mod:`medfuse.registry` import
the modules that define their entries on first lookup.
"""
