"""A job's webhook goes to an address anyone who can start a job chooses: a receiver that answers a byte at a time
and never finishes held the one delivery thread for good (each read had its timeout, the whole answer none), so
every other job's webhook, and the pod's own news, were never sent. Each try now has a deadline as a whole."""

from __future__ import annotations

import socket
import threading
import time

from tests.test_trainer_worker import receiver  # noqa: F401 - a webhook receiver, a fixture
from trainer.webhooks import WebhookDispatcher


class DripServer:
    """Reads the request, then sends its answer's status line one byte at a time, forever (until closed)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.closed = threading.Event()
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self):
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn):
        with conn:
            try:
                conn.recv(65536)
                while not self.closed.wait(0.1):
                    conn.sendall(b"H")
            except OSError:
                return

    def close(self):
        self.closed.set()
        self.sock.close()


def test_a_receiver_that_never_finishes_its_answer_does_not_hold_up_the_next_webhooks(receiver):  # noqa: F811
    drip, good = DripServer(), receiver()
    try:
        dispatcher = WebhookDispatcher(None, attempts=1, base_delay_s=0.01, timeout_s=0.5, allow_private=True)
        dispatcher.send(f"{drip.url}/hook", "job.completed", {"job": {"id": "slow"}})
        dispatcher.send(f"{good.url}/hook", "job.completed", {"job": {"id": "next"}})
        deadline = time.monotonic() + 30
        while not good.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        assert good.requests, "the webhook after a dripping receiver was never sent"
        assert dispatcher.flush(10) and dispatcher.failed == 1 and dispatcher.delivered == 1
    finally:
        drip.close()
