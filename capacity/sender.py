"""Webhooks sent open loop from a process of their own, for ``capacity.local_check``.

    python -m capacity.sender < job.json > deliveries.json

The local stack's gateway, stream pump, moto and sandbox are threads of the process that starts it;
64 sending threads in that same process would compete with them for one interpreter lock and slow
the stack they measure. Here they do not. ``job.json``: ``{"url", "senders", "requests": [{"offset_s",
"session_id", "body", "signature"}]}``; each request is POSTed ``offset_s`` after the start, whatever
the answers before it. Out: ``[{"session_id", "sent_at_s", "ack_ms", "status"}]``, ``sent_at_s`` in
epoch seconds (the clock the items' timestamps use).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests


def send_all(job: dict[str, Any]) -> list[dict[str, Any]]:
    http = requests.Session()
    http.trust_env = False  # loopback only: no proxy, no .netrc
    senders = int(job["senders"])
    http.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=senders))
    lock, out = threading.Lock(), []
    started = time.perf_counter()

    def send(request: dict[str, Any]) -> None:
        time.sleep(max(0.0, started + float(request["offset_s"]) - time.perf_counter()))
        headers = {
            "content-type": "application/json; charset=utf-8",
            "x-webhook-signature": request["signature"],
        }
        sent_at, clock = time.time(), time.perf_counter()
        status = http.post(job["url"], data=request["body"].encode(), headers=headers, timeout=60).status_code
        ack_ms = (time.perf_counter() - clock) * 1000
        with lock:
            out.append(
                {
                    "session_id": request["session_id"],
                    "sent_at_s": sent_at,
                    "ack_ms": ack_ms,
                    "status": status,
                }
            )

    with ThreadPoolExecutor(max_workers=senders) as pool:
        list(pool.map(send, job["requests"]))
    http.close()
    return out


def main() -> None:
    json.dump(send_all(json.load(sys.stdin)), sys.stdout)


if __name__ == "__main__":
    main()
