"""A separate process that appends to the ledger, for the multi-process tests.

Usage: python -m tests.ledger.appender DATABASE_URL SIGNER_KEY_FILE COUNT TASKS
Prints the indices it was given, one per line, after all are committed.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from ledger.log import TransparencyLog
from ledger.note import Signer, parse_signer_key
from tests.factories import make_entry, make_subject


async def main(url: str, signer: Signer, count: int, tasks: int) -> list[int]:
    log = await TransparencyLog.open(url, signer, signer.name)
    indices: list[int] = []

    async def worker(n: int) -> None:
        for _ in range(n):
            subject = make_subject()
            indices.append((await log.append(make_entry(subject), subject)).index)

    try:
        await asyncio.gather(*(worker(count // tasks) for _ in range(tasks)))
    finally:
        await log.close()
    return indices


if __name__ == "__main__":
    url, key_file, count, tasks = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    signer = parse_signer_key(Path(key_file).read_text())
    for index in asyncio.run(main(url, signer, count, tasks)):
        print(index)
