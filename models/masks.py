"""Random input masks u ~ U[0, 1) for the SNN, drawn fast on every device.

On a GPU, ``torch.rand`` on the device is already fast. On the CPU, PyTorch's
uniform generator runs on one thread and costs about as much as the SNN's matmuls
(100 million numbers per batch of 1000 at T = 128), so the draw is split into a
fixed number of chunks, each filled by its own generator on a pool of threads
(``uniform_`` releases the GIL). The chunk seeds come from the global generator,
so a run is reproducible under ``torch.manual_seed`` whatever the thread count.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import torch

CHUNKS = 8  # fixed, so the numbers drawn do not depend on how many threads fill them
MIN_PARALLEL = 1 << 20  # below a million numbers one thread is quicker than handing out work

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads()), thread_name_prefix="masks")
        return _pool


def uniform_(out: torch.Tensor) -> torch.Tensor:
    """Fill ``out`` with U[0, 1) in place; parallel on the CPU. Returns ``out``."""
    if out.device.type != "cpu" or out.numel() < MIN_PARALLEL:
        return out.uniform_()
    seeds = torch.randint(0, 2**62, (CHUNKS,)).tolist()  # from the global generator: seeded runs repeat
    chunks = out.view(-1).chunk(CHUNKS)

    def fill(i: int) -> None:
        chunks[i].uniform_(generator=torch.Generator().manual_seed(seeds[i]))

    if torch.get_num_threads() == 1:
        for i in range(len(chunks)):
            fill(i)
    else:
        list(_executor().map(fill, range(len(chunks))))
    return out
