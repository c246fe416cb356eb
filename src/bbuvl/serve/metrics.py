"""Prometheus metrics of one server, in a registry of its own (two apps in one process never share counters)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from bbuvl.versions import software

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)


class ServeMetrics:
    """Requests by route and status, latency, batch sizes, queue depth, errors by kind, tokens by mode, and the
    program answering (`bbuvl_build_info`)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("bbuvl_requests", "HTTP requests answered", ["route", "status"], registry=self.registry)
        self.latency = Histogram("bbuvl_request_latency_seconds", "Time from request to answer", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("bbuvl_batch_size", "Images per forward pass", buckets=BATCH_BUCKETS, registry=self.registry)
        self.batch_seconds = Histogram("bbuvl_batch_seconds", "Time of one batched forward pass", buckets=LATENCY_BUCKETS,
                                       registry=self.registry)
        self.queue_depth = Gauge("bbuvl_queue_depth", "Images waiting for a forward pass", registry=self.registry)
        self.errors = Counter("bbuvl_errors", "Requests answered with an error, by kind", ["kind"], registry=self.registry)
        # A photo given up on while others of its batch are still awaited leaves the decode (infer/dropped_rows.py)
        self.rows_dropped = Counter("bbuvl_batch_rows_dropped", "Photos taken out of a batch computing for others, as "
                                    "no one awaited their answers any more", registry=self.registry)
        self.row_passes_saved = Counter("bbuvl_batch_row_passes_saved", "Rows of the language model's passes not "
                                        "computed: one a dropped photo and a pass of its batch after it left",
                                        registry=self.registry)
        # The answers' own `usage` summed: what a cost dashboard charges, without reading every response body.
        self.tokens = Counter("bbuvl_tokens", "Tokens the model read (prompt) and wrote (completion) for answered photos",
                              ["kind", "mode"], registry=self.registry)
        # Which program answers (bbuvl/versions.py): a dashboard tells a latency change an upgrade brought from load.
        Info("bbuvl_build", "The program answering: bbu-vl's version and its files' digest, and the libraries that "
             "compute the answers", registry=self.registry).info(software())

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
