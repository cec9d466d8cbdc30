"""facetell: tell real face photographs from AI-generated faces."""

__version__ = "0.1.0"
