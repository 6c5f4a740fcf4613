"""MRD streaming server: ``fastrecon serve --model NAME --port 9002`` (see :mod:`fastrecon.serve.server`),
and a small client (:mod:`fastrecon.serve.client`)."""

from fastrecon.serve.server import MRDServer, ServeOptions, latency_summary

__all__ = ["MRDServer", "ServeOptions", "latency_summary"]
