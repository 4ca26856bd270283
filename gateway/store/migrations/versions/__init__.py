"""Revisions, oldest first. Write each one out explicitly; never autogenerate at run time."""
