"""Split a cosmic-ray session between workers, and merge their results back.

cosmic-ray's local distributor runs one mutant at a time. To use every core, each worker
gets its own copy of the tree (a mutant is written into the files it tests) and its own
copy of the session, in which the jobs of the other workers are marked as done.

    python scripts/mutation_shards.py split SESSION N   # SESSION.0 ... SESSION.N-1
    python scripts/mutation_shards.py merge SESSION     # their results into SESSION
    python scripts/mutation_shards.py survivors-again SESSION COPY   # COPY: SESSION, survivors pending
"""
import glob
import os
import shutil
import sqlite3
import sys

OTHER_WORKER = "left to another worker"


def pending_jobs(db):
    return [job for (job,) in db.execute(
        "SELECT job_id FROM work_items WHERE job_id NOT IN (SELECT job_id FROM work_results)"
        " ORDER BY job_id")]


def split(session, workers):
    with sqlite3.connect(session) as db:
        jobs = pending_jobs(db)
    for worker in range(workers):
        shard = f"{session}.{worker}"
        shutil.copyfile(session, shard)
        others = [job for i, job in enumerate(jobs) if i % workers != worker]
        with sqlite3.connect(shard) as db:
            db.executemany(
                "INSERT INTO work_results (worker_outcome, output, test_outcome, diff, job_id)"
                " VALUES ('SKIPPED', ?, NULL, NULL, ?)", [(OTHER_WORKER, job) for job in others])
    print(f"mutation: {len(jobs)} pending mutants split between {workers} workers")


def merge(session):
    shards = sorted(glob.glob(f"{session}.[0-9]*"))
    if not shards:
        return
    with sqlite3.connect(session) as db:
        for shard in shards:
            db.execute("ATTACH DATABASE ? AS shard", (shard,))
            db.execute(
                "INSERT OR IGNORE INTO work_results SELECT * FROM shard.work_results"
                " WHERE output IS NOT ?", (OTHER_WORKER,))
            db.commit()
            db.execute("DETACH DATABASE shard")
    for shard in shards:
        # a worker that was stopped keeps what it finished: merged above, run again next time
        os.remove(shard)


def survivors_again(session, copy):
    shutil.copyfile(session, copy)
    with sqlite3.connect(copy) as db:
        again = db.execute("DELETE FROM work_results WHERE test_outcome = 'SURVIVED'").rowcount
    print(f"mutation: {again} survivors of {session} to run again")


if __name__ == "__main__":
    command, session, *rest = sys.argv[1:]
    if command == "split":
        split(session, int(rest[0]))
    elif command == "merge":
        merge(session)
    elif command == "survivors-again":
        survivors_again(session, rest[0])
    else:
        sys.exit(f"mutation_shards: unknown command {command!r}; use split, merge or survivors-again")
