"""`bbuvl train CONFIG` whose last rank ends training 3 s after the others (its loader or disk slower), each rank
writing the end-of-training entry it logged to `rank<N>.json` beside the run, for the two-process tests (launched by
torch.distributed.run)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from transformers import TrainerCallback

from bbuvl.config import load_config
from bbuvl.train.trainer import train


class SlowLastRank(TrainerCallback):
    """Keeps each rank's last logged entry; the last rank ends 3 s late."""

    def on_train_end(self, args, state, control, **kwargs):
        Path(args.output_dir).parent.joinpath(f"rank{args.process_index}.json").write_text(
            json.dumps(state.log_history[-1]), encoding="utf-8")
        if args.process_index == args.world_size - 1:
            time.sleep(3)


if __name__ == "__main__":
    train(load_config(sys.argv[1]), progress=False, callbacks=[SlowLastRank()])
