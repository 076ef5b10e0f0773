"""A driftd plug-in package used by driftd's tests (see pyproject.toml for what it registers)."""
