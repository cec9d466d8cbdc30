"""The `facetell` command line: a thin door that parses, calls the library and renders.

One module per command, on the one typer app of `common`; importing them registers the commands
in the order `facetell --help` lists them. Modules that need torch, scikit-learn or matplotlib
are imported inside the commands that use them, so `facetell predict` starts without paying for
training and reporting code.
"""

# imported for their @app.command registrations, in help order
from facetell.cli import audit, train, predict, evaluate, calibrate, serve, ensemble, info  # noqa: F401, I001
from facetell.cli.common import Commands, LoggedProgress, app
from facetell.cli.predict import CSV_COLUMNS

__all__ = ["CSV_COLUMNS", "Commands", "LoggedProgress", "app"]
