"""Assemble: a SEG is ready when every source instance it references is in the spool."""
