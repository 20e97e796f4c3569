"""The ``medfuse`` command line (typer). Heavy modules are imported inside each command.

This room owns the command line: options, progress bars, printed tables and exit codes;
every command calls the other rooms' public functions. It must not hold logic another room
needs, and library code must not import it (the one exception, the training API's progress
bars, is listed in ``tests/unit/test_import_structure.py``).
"""
