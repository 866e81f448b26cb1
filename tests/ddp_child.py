"""A rank of tests/test_ddp.py that kills itself: ``rhosym train JOB.json`` with a deterministic SIGKILL.

    python -m torch.distributed.run --standalone --nproc_per_node N tests/ddp_child.py RANK EPOCH JOB.json

The rank ``RANK`` SIGKILLs itself in training epoch ``EPOCH`` when it asks for its second batch, i.e. after
its first optimizer step of that epoch. That step's gradient all-reduce needed every rank, so rank 0 had
finished saving the previous epoch (``last.pt``) by then. The pause is installed by wrapping
``rhosym.train.progress`` in this process only (no hook in the package); everything else is the CLI.
"""

from __future__ import annotations

import os
import signal
import sys


def main() -> int:
    victim, epoch = int(sys.argv[1]), int(sys.argv[2])
    import rhosym.train as T
    from rhosym import cli

    orig = T.progress

    def progress(iterable, desc, total=None, logger=None):
        it = orig(iterable, desc, total=total, logger=logger)
        if desc != f"epoch {epoch}" or int(os.environ.get("RANK", 0)) != victim:
            return it

        def gen():
            for i, item in enumerate(it):
                if i == 1:
                    os.kill(os.getpid(), signal.SIGKILL)
                yield item

        return gen()

    T.progress = progress
    return cli.main(["train", *sys.argv[3:]])


if __name__ == "__main__":
    sys.exit(main())
