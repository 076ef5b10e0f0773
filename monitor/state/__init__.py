"""driftd's own state store: watermarks, check history, decisions, alert states, retrain jobs."""
