"""``python -m tweetlm.cli.train`` (layer L6): the entry point ``torchrun`` launches, the same command as
``tweetlm train``.

    torchrun --standalone --nproc_per_node=2 -m tweetlm.cli.train --run-dir runs/demo --recipe demo_cpu \\
        --out runs/demo_ddp --set train.max_steps=100
"""

from __future__ import annotations

import sys

from tweetlm.cli.main import main


def run(argv: list[str] | None = None) -> int:
    return main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(run())
