"""Load generation: protocol clients, workloads, load shapes and the per-request record writer.

Locust is imported only by `loadtest.locustfile`; everything else here runs without it.
"""
