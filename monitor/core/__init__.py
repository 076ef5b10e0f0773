"""The core every layer may use: configuration, time, masking, result types, statuses, exit codes,
logging, the plug-in registry and table files. It imports nothing else of driftd."""
