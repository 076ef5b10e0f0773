"""What the outside sees: the Prometheus metrics collector and gauges, the HTTP server, alerts
and their channels."""
