"""One model's tokenizer used from several threads at once: a request thread counting tokens or decoding ids
beside the compute thread's batch (the server's background coverage check made this common at start-up)."""

from __future__ import annotations

import threading
import time

from embedkd.models import Encoder


def test_tokenizer_is_shared_safely_between_threads(tiny_model_dir) -> None:
    encoder = Encoder.load(tiny_model_dir, device="cpu")
    long_text = " ".join(["river stone cloud"] * 200)
    errors: list[BaseException] = []
    stop = threading.Event()

    def hammer(fn) -> None:
        while not stop.is_set():
            try:
                fn()
            except Exception as exc:  # noqa: BLE001  # "Already borrowed" from the Rust tokenizer
                errors.append(exc)
                return

    jobs = [
        lambda: encoder.token_counts([long_text, "short"], role="query"),
        lambda: encoder.keep_last_tokens([long_text], role="query"),
        lambda: encoder.encode([long_text, "apple"], role="document"),
        lambda: encoder.tokenize([long_text], role="query"),
        lambda: encoder.decode([[101, 2000, 102]]),
    ]
    threads = [threading.Thread(target=hammer, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    time.sleep(3)
    stop.set()
    for thread in threads:
        thread.join()
    assert not errors, errors[:1]
