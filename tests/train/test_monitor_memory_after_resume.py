"""The memory alarm names the step its growth is measured from: this process's first, which for a run resumed from
checkpoint-N is N + 1. It said "since step 1" there, a step the resumed process never took nor measured."""

from __future__ import annotations

import torch
from transformers import TrainerControl, TrainerState

from bbuvl.config import MonitorConfig
from bbuvl.train.monitors import HealthLog, MemoryMonitor


def test_a_resumed_runs_memory_alarm_names_its_first_step_after_the_checkpoint():
    health, kept = HealthLog(), []
    monitor = MemoryMonitor(MonitorConfig(memory_growth_mb=48), health)
    state, control = TrainerState(), TrainerControl()
    for step in (5, 6):  # resumed from checkpoint-4
        state.global_step = step
        if step == 6:  # 96 MB that nothing frees
            kept.append(torch.ones(96 * 2**18))
        monitor.on_step_end(None, state, control)
    [alarm] = health.alarms
    assert alarm.step == 6 and "resident memory grew" in alarm.message
    assert " MB since step 5 (" in alarm.message, alarm.message
