"""The check: read a window, validate and sample it, compare it with the reference (drift,
quality, label-free estimates) and decide what the history calls for (policy). It knows no
MLflow, no daemon and no HTTP."""
