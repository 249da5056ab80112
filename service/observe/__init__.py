"""Telemetry: Prometheus metrics, drift signals, the access log and the payload log. A leaf: it
knows no registry, kind or protocol; the layers above hand it what to record."""
