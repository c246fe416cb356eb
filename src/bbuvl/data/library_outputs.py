"""The outputs of a library function that writes files from inputs (split, teachers, COCO in and out, tile, convert,
viz): checked and held as a command's are, whoever calls it (bbuvl/outputs.py, docs/outputs.md).

`bbuvl data split` and its siblings claim their outputs before they call these functions (cli/common.py
`claim_outputs`), but a notebook or a user's script calls the functions themselves (docs/architecture.md names
them), and `split_dataset("sp/train.jsonl", "sp")` wrote its 30-line train.jsonl over its own 40-line input. So each
function checks and holds its own outputs as well; under a command the locks are the command's own, taken again
(`OutputLock` is re-entrant within a thread). What stays the command's alone is its ledger and `--overwrite`: a
library call replaces what its caller names there, as it always did.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from bbuvl.outputs import (check_not_inputs, hold_outputs, refuse_inputs_being_written, refuse_outputs_being_read,
                           release_readings)


@contextmanager
def holding_outputs(command: str, inputs: Mapping[str, str | Path | None], files: Iterable[str | Path] = (),
                    folders: Iterable[str | Path] = (), read: Mapping[str, str | Path | None] | None = None
                    ) -> Iterator[None]:
    """Check the outputs of one call of the library function behind `bbuvl COMMAND`, then hold them against other
    processes until the block ends; raises OutputConflict (a ValueError) before anything is written.

    Refused, as `claim_outputs` refuses them: an output that is one of `inputs` (the same real path, or the same
    inode: a link or a hard link to it), a folder written into that holds one, an output inside an input folder
    (`check_not_inputs`); an input, or one of `read`, that another process is writing now; an output another
    process writes, or one a live reader of another process holds. `inputs` and `read` map the parameter's name to
    its path (None is skipped); `read` are inputs an output may lie inside (convert's export folder, whose own
    check is narrower: data/convert.py). Both are registered as read for as long as the block runs."""
    files, folders = [Path(p) for p in files], [Path(p) for p in folders]
    given = {what: Path(p) for what, p in inputs.items() if p is not None}
    check_not_inputs(given, files, folders)
    refuse_inputs_being_written({**given, **{what: Path(p) for what, p in (read or {}).items() if p is not None}})
    try:
        claim = hold_outputs(command, [*files, *folders])
    except BaseException:
        release_readings()  # what was registered above, where the hold refused before adopting it
        raise
    succeeded = False
    try:
        refuse_outputs_being_read({str(p): p for p in [*files, *folders]})
        yield
        succeeded = True
    finally:
        claim.finish(succeeded)
