"""The error of a configuration the user must fix (a topology file, a worker's options).

Its message is one line that names the offending key; `prfaas.cli.main` prints it without a
traceback. Import-light on purpose: the CLI imports it for every command.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type; the message names the key."""
