"""Exit codes of the `driftd` command, and the error that ends a command with code 3."""

OK, DRIFT, USAGE, FAILURE = 0, 1, 2, 3
UNHEALTHY = 1  # `driftd health`: what Docker's HEALTHCHECK and Kubernetes' probes read as failed


class Failure(Exception):
    """A failure with a message for the user: exit 3 (runtime), or `code` (e.g. USAGE for what
    the user can settle with an option)."""

    def __init__(self, message: str, code: int = FAILURE) -> None:
        super().__init__(message)
        self.code = code
