import os

import pytest
import torch

# Tests run two at a time on a 2-core machine: one torch thread each.
torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield
