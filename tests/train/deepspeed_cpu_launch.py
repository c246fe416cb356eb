"""`bbuvl` CLI for DeepSpeed tests on CPU-only machines, launched by torch.distributed.run.

accelerate 1.15 finds no process-group backend for DeepSpeed without a GPU (it looks for nccl, hccl, xccl ...),
then counts one process: the data is not sharded and `train_batch_size` comes out wrong. DeepSpeed itself
runs over gloo on the CPU accelerator, so hand accelerate that backend; GPU machines never reach this.
"""

import accelerate.state

_prepare_backend = accelerate.state.PartialState._prepare_backend


def _prepare_backend_with_gloo(self, cpu=False, sagemaker_dp=False, backend=None):
    found, distributed_type = _prepare_backend(self, cpu, sagemaker_dp, backend)
    return found or "gloo", distributed_type


accelerate.state.PartialState._prepare_backend = _prepare_backend_with_gloo

if __name__ == "__main__":
    from bbuvl.cli import app

    app()
