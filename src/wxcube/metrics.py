"""Prometheus text metrics: requests by endpoint and errcode, a latency histogram, visits."""

from __future__ import annotations

import bisect
import threading

BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)


def _label(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}
        # endpoint -> [count per bucket..., +Inf count], sum
        self.hist: dict[str, list[int]] = {}
        self.hist_sum: dict[str, float] = {}
        self.visits_ingested = 0
        self.visits_batches = 0
        self._lock = threading.Lock()

    def observe(self, endpoint: str, errcode: int, seconds: float) -> None:
        key = (endpoint, errcode)
        self.requests[key] = self.requests.get(key, 0) + 1
        h = self.hist.get(endpoint)
        if h is None:
            h = self.hist[endpoint] = [0] * (len(BUCKETS) + 1)
            self.hist_sum[endpoint] = 0.0
        h[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.hist_sum[endpoint] += seconds

    def ingested(self, visits: int) -> None:
        with self._lock:
            self.visits_ingested += visits
            self.visits_batches += 1

    def render(self, *, index_ready: bool, apps: int) -> str:
        out = [
            "# HELP wxcube_requests_total HTTP requests by endpoint and WeChat errcode "
            "(0 = success).",
            "# TYPE wxcube_requests_total counter",
        ]
        for (ep, code), n in sorted(self.requests.items()):
            out.append(f'wxcube_requests_total{{endpoint="{_label(ep)}",errcode="{code}"}} {n}')
        out += [
            "# HELP wxcube_request_duration_seconds Time to answer a request.",
            "# TYPE wxcube_request_duration_seconds histogram",
        ]
        for ep in sorted(self.hist):
            h, acc, lab = self.hist[ep], 0, _label(ep)
            for le, n in zip((*map(repr, BUCKETS), "+Inf"), h, strict=True):
                acc += n
                out.append(
                    f'wxcube_request_duration_seconds_bucket{{endpoint="{lab}",le="{le}"}} {acc}'
                )
            out.append(
                f'wxcube_request_duration_seconds_sum{{endpoint="{lab}"}} {self.hist_sum[ep]!r}'
            )
            out.append(f'wxcube_request_duration_seconds_count{{endpoint="{lab}"}} {acc}')
        out += [
            "# HELP wxcube_visits_ingested_total Visits accepted by POST /wxcube/v1/visits.",
            "# TYPE wxcube_visits_ingested_total counter",
            f"wxcube_visits_ingested_total {self.visits_ingested}",
            "# HELP wxcube_ingest_batches_total Batches accepted by POST /wxcube/v1/visits.",
            "# TYPE wxcube_ingest_batches_total counter",
            f"wxcube_ingest_batches_total {self.visits_batches}",
            "# HELP wxcube_index_ready 1 once the index has loaded.",
            "# TYPE wxcube_index_ready gauge",
            f"wxcube_index_ready {int(index_ready)}",
            "# HELP wxcube_apps Apps in the store.",
            "# TYPE wxcube_apps gauge",
            f"wxcube_apps {apps}",
        ]
        return "\n".join(out) + "\n"
