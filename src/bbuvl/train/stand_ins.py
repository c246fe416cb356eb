"""Each epoch trains every photo once over the data-parallel processes: the batches that even out the last turn are
stand-ins, trained at zero weight.

Every process must take as many micro-batches as the others (DDP reduces the gradients of each backward, and the
step's loss denominators are summed over the processes), so an epoch of N photos in batches of B over W processes
has ceil(N / (W * B)) * W * B places. accelerate filled the places past N with the epoch's first photos again
(`even_batches`): 9 photos, batch 2, two processes drew 12 samples an epoch, three photos twice, some twice on one
process with the same crop and mirror, and the step's denominators counted them. Here the places past N are
stand-ins: the collator leaves them out of a batch that holds a real sample, and a batch of stand-ins alone is run
for the collectives and weighed zero (encode/collate.py `Batch.stand_in`, model/loss_scale.py, train/trainer.py), so
each step's update is what one process would take over the same photos. An epoch whose photos fill every place
(N a multiple of W * B, as the demo's are) is drawn exactly as accelerate draws it.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler


def stand_ins(samples: int, processes: int, batch: int) -> int:
    """The places past `samples` in an epoch of `processes` x `batch` turns (0 for one process)."""
    if processes <= 1 or samples <= 0:
        return 0
    return -samples % (processes * batch)


class StandInSampler(Sampler[int]):
    """Each epoch's photos shuffled as accelerate's seedable sampler shuffles them (a permutation seeded by seed +
    epoch), then `stand_ins` indices past the dataset's end: ConversationDataset serves index `n + k` as a stand-in."""

    def __init__(self, samples: int, stand_ins: int, seed: int):
        self.samples, self.stand_ins, self.seed = samples, stand_ins, seed
        self.epoch = 0

    def __len__(self) -> int:
        """Places in an epoch: the photos and their stand-ins."""
        return self.samples + self.stand_ins

    def __iter__(self) -> Iterator[int]:
        """This epoch's order; the next epoch's after a whole pass, as accelerate's sampler goes on."""
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        yield from torch.randperm(self.samples, generator=generator).tolist()
        yield from range(self.samples, self.samples + self.stand_ins)
        self.set_epoch(self.epoch + 1)

    def set_epoch(self, epoch: int) -> None:
        """Draw epoch `epoch`'s order next (the trainer sets it at each epoch and on a resume)."""
        self.epoch = epoch
