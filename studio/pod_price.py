"""What this machine costs an hour, so the trainer can put money beside its times: what a job cost, what the
next one will, when the queue is done and for how much. People rent the GPU by the hour; "38 min" is abstract,
"$1.58" is not.

GPU_PRICE_PER_HOUR (US dollars) wins when set: any cloud, or a price of one's own. On RunPod, otherwise, the
pod's own price is read from RunPod's REST API (`GET {RUNPOD_API_URL}/pods/{RUNPOD_POD_ID}`, with the pod's
RUNPOD_API_KEY: `adjustedCostPerHr`, what is billed, else `costPerHr`), in the background so that no request
waits on it, and read again every hour (a spot pod's price moves). Anywhere else, or when RunPod does not
answer, there is no price and nothing is shown: never a guess.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from studio.settings import Settings

log = logging.getLogger(__name__)

FRESH_S = 3600.0  # a price read is used this long
RETRY_S = 600.0  # after a failed read, the next try waits this long
TIMEOUT_S = 10.0
MAX_PER_HOUR = 1000.0  # dollars an hour: at or above this (or not a finite number above 0) it is not a price


def on_runpod(settings: Settings) -> bool:
    """RunPod sets the pod's id and a key on every pod: its price can be read and the pod stopped."""
    return bool(settings.runpod_pod_id and settings.runpod_api_key)


def dollars_per_hour(value) -> float | None:
    """`value` (a setting, RunPod's answer) as dollars an hour when it is a price: a finite number above 0 and under
    MAX_PER_HOUR; None otherwise (nothing, text, NaN, infinity: a page would show "$NaN", and JSON has no Infinity)."""
    if isinstance(value, bool):
        return None
    try:
        per_hour = float(value)
    except (TypeError, ValueError):
        return None
    return per_hour if 0 < per_hour < MAX_PER_HOUR else None


@dataclass(frozen=True)
class Price:
    per_hour: float  # US dollars
    source: str  # "setting" or "runpod"

    def public(self) -> dict:
        return {"per_hour": round(self.per_hour, 4), "source": self.source}


class PodPrice:
    """The price of one machine, from its settings; `current()` never blocks."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.setting = dollars_per_hour(settings.gpu_price_per_hour)  # GPU_PRICE_PER_HOUR, when it is a price
        if self.setting is None and settings.gpu_price_per_hour != 0:
            log.warning("GPU_PRICE_PER_HOUR=%s is not a price in dollars an hour (above 0, under %.0f): it is ignored",
                        settings.gpu_price_per_hour, MAX_PER_HOUR)
        self._lock = threading.Lock()
        self._price: Price | None = None
        self._read_at = -1e18  # monotonic time of the last read (or failed read)
        self._failed = False
        self._reading = False

    @property
    def knowable(self) -> bool:
        return self.setting is not None or on_runpod(self.settings)

    @property
    def pending(self) -> bool:
        """A first read of RunPod's price is under way: a page asks again in a moment."""
        with self._lock:
            return self._price is None and self._reading

    def current(self) -> Price | None:
        """The price as last read (None before the first read ends, or without one); a read starts in the
        background when the last one is stale."""
        if self.setting is not None:
            return Price(self.setting, "setting")
        if not self.knowable:
            return None
        with self._lock:
            wait = RETRY_S if self._failed else FRESH_S
            if not self._reading and time.monotonic() - self._read_at >= wait:
                self._reading = True
                threading.Thread(target=self._refresh, name="pod-price", daemon=True).start()
            return self._price

    def public(self) -> dict | None:
        """What the pages are given: {"per_hour", "source"}, or None while no price is known."""
        price = self.current()
        return price.public() if price else None

    def read_now(self) -> Price | None:
        """Reads the price at once (tests, the command line); the same as the background read."""
        with self._lock:
            self._reading = True
        self._refresh()
        return self._price

    def _refresh(self) -> None:
        price = None
        try:
            price = read_runpod_price(self.settings)
        finally:
            with self._lock:
                self._read_at, self._reading = time.monotonic(), False
                self._failed = price is None
                if price is not None or self._price is None:
                    self._price = price  # a failed read keeps the last price: it rarely changes


def read_runpod_price(settings: Settings) -> Price | None:
    """The pod's price from RunPod's REST API, or None (logged) when it cannot be read."""
    url = f"{settings.runpod_api_url.rstrip('/')}/pods/{settings.runpod_pod_id}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {settings.runpod_api_key}",
                                                   "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            pod = json.loads(response.read(1_000_000))
    except urllib.error.HTTPError as exc:
        log.warning("RunPod did not give this pod's price: HTTP %s", exc.code)
        return None
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        log.warning("could not read this pod's price from RunPod: %s", exc)
        return None
    for key in ("adjustedCostPerHr", "costPerHr"):
        per_hour = dollars_per_hour(pod.get(key) if isinstance(pod, dict) else None)
        if per_hour is not None:
            return Price(per_hour, "runpod")
    log.warning("RunPod's answer for this pod holds no price")
    return None
