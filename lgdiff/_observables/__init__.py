"""Observables: scalar (magnetisation, correlators, estimators), gauge (loops, topology, clover), Wilson flow."""
