"""The dashboard's pages, one module per subject; shared behaviour in ``mixins``."""
