"""The pixels of the full-size photos a server keeps while they wait for the model, bounded like request bodies.

With `--fewshot` (whose crops are cut from the upload) or tiles and zoom (whose regions are), every photo keeps its
upload's decoded pixels until it is answered; without a bound, memory grew with `--queue-size` x the pixel limit (64
waiting photos at 100 MP held 18 GiB). A photo's pixels are counted from its header, before a pixel is decoded, and
past `--max-waiting-mp` the request is answered 503 with Retry-After, as a full queue is (docs/serving.md, "Bad input").
"""

from __future__ import annotations

import threading

from bbuvl.serve.errors import ApiError


class Held:
    """One photo's share of a `PixelBudget`, given back once (by whoever is done with the photo last)."""

    def __init__(self, budget: "PixelBudget", pixels: int):
        self._budget, self.pixels = budget, pixels

    def release(self) -> None:
        """Give the pixels back; a second call does nothing."""
        if self._budget is not None:
            self._budget._give_back(self)


class PixelBudget:
    """The pixels of full-size photos held at once by every request together, up to `limit`."""

    def __init__(self, limit: int):
        self.limit, self.held = limit, 0
        self._lock = threading.Lock()  # taken on the decoding threads, given back on the worker's and the event loop's

    def take(self, pixels: int) -> Held:
        """Hold `pixels` for one photo; ApiError 503 (Retry-After) when the budget has no room for them now, 413 when
        it never will (a photo of more pixels than the whole budget)."""
        if pixels > self.limit:
            raise ApiError(413, "image_too_large", f"the image has {pixels} pixels; this server keeps every waiting photo's "
                           f"own pixels (for --fewshot or tiles) and holds at most {self.limit} of them "
                           "(--max-waiting-mp): scale it down first")
        with self._lock:
            if self.held + pixels > self.limit:
                raise ApiError(503, "queue_full", f"the photos waiting hold {self.held / 1e6:.2f} MP of full-size "
                               f"pixels already and this one has {pixels / 1e6:.2f} MP, past the bound of "
                               f"{self.limit / 1e6:g} MP (--max-waiting-mp); retry in a moment", {"Retry-After": "1"})
            self.held += pixels
        return Held(self, pixels)

    def _give_back(self, held: Held) -> None:
        with self._lock:
            if held._budget is self:  # under the lock: a photo given back from two threads at once counts once
                held._budget = None
                self.held -= held.pixels
