"""`python -m facetell` runs the command line."""

from facetell.cli import app

app()
