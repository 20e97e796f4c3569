"""The ``medfuse`` command line (typer). Heavy modules are imported inside each command."""
