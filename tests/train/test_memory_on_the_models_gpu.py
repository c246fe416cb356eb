"""Memory is sampled on the GPU the model is on: read on the current CUDA device only, a model on cuda:1 (`bbuvl doctor
memory --device cuda:1`, a run on a second GPU) read 0 MB there and a leak went unseen. The GPU's own reading is in
tests/train/test_cuda_training.py; here, which device is read."""

from __future__ import annotations

import pytest
import torch
from transformers import TrainerControl, TrainerState

from bbuvl.config import MonitorConfig
from bbuvl.diagnostics.memory import measure_memory
from bbuvl.train.monitors import HealthLog, MemoryMonitor, cuda_memory_device, process_memory_mb


@pytest.mark.parametrize("device, read", [
    ("cuda:1", torch.device("cuda", 1)), (torch.device("cuda", 1), torch.device("cuda", 1)),
    ("cuda:0", torch.device("cuda", 0)), ("cuda", torch.device("cuda")),
    (None, torch.device("cuda")),  # no device named: the current one, as before
    ("cpu", None), (torch.device("cpu"), None), ("meta", None),
])
def test_the_cuda_device_read_is_the_one_named(device, read):
    assert cuda_memory_device(device) == read


def test_a_model_on_the_cpu_reads_no_cuda_memory_in_the_monitor_or_the_doctor():
    health = HealthLog()
    model = torch.nn.Linear(4, 4)
    monitor = MemoryMonitor(MonitorConfig(memory_growth_mb=48, every_steps=1), health, model=model)
    state, control = TrainerState(), TrainerControl()
    for step in (1, 2):
        state.global_step = step
        monitor.on_step_end(None, state, control)
    assert [sorted(sample) for _, sample in monitor.samples] == [["rss"]]
    assert sorted(process_memory_mb("cpu")) == ["rss"]
    assert sorted(measure_memory(lambda i: None, n=5, warmup=2, device="cpu").samples) == ["rss"]
