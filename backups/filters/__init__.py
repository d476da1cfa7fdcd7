"""The dashboard's filtersets, one module per list page."""
