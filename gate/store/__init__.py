"""Spool files and the SQLAlchemy models/session."""
