"""Exit codes of the `driftd` command, and the error that ends a command with code 3."""

OK, DRIFT, USAGE, FAILURE = 0, 1, 2, 3
UNHEALTHY = 1  # `driftd health`: what Docker's HEALTHCHECK and Kubernetes' probes read as failed


class Failure(Exception):
    """A runtime failure with a message for the user (exit 3)."""
