"""medfuse's version: a leaf module (imports nothing), so that a module needing the version —
the model card, ``Prediction.model``, the PDF's creator, ``medfuse --version`` — reads it
without importing the package's public API. ``pyproject.toml`` carries the same string
(``tests/unit/test_sources_of_truth.py`` checks that they agree)."""

__version__ = "0.1.0"
