"""The gate's exception tree; third-party errors are wrapped at the boundary (``raise ... from``)."""


class GateError(Exception):
    """Base of every error the gate raises on purpose."""


class ConfigError(GateError):
    """The administrator's configuration is missing or invalid."""


class InvalidObjectError(GateError):
    """A DICOM object is malformed or not what it claims to be; the message says why."""


class SpoolError(GateError):
    """The spool could not store or read an object."""
