#!/usr/bin/env python3
"""A consumer that passes each event of one external function on to another
function, with psycopg2.

    relay.py CONNINFO FUNCTION NEXT SECONDS

Claims the jobs of FUNCTION, waiting in async.claim for them to come; for
each, in one transaction, enqueues an event of NEXT with the same payload
and completes the job, as docs/external.md shows consumers doing.  Exits
after SECONDS, or once a claim got nothing and an event of FUNCTION was
dead-lettered as a loop.  test/t/028_loops.pl runs it.
"""
import sys
import time

import psycopg2

conninfo, function, following, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
claimer = psycopg2.connect(conninfo)
claimer.autocommit = True
worker = psycopg2.connect(conninfo)
deadline = time.monotonic() + seconds

while time.monotonic() < deadline:
    with claimer.cursor() as cur:
        cur.execute("SELECT job_id, payload::text, lease"
                    "  FROM async.claim(%s, 10, '1 second')", (function,))
        jobs = cur.fetchall()
        if not jobs:
            cur.execute("SELECT count(*) FROM async.dead_letters"
                        " WHERE function = %s AND reason = 'loop'", (function,))
            if cur.fetchone()[0] > 0:
                break
    for job_id, payload, lease in jobs:
        with worker, worker.cursor() as cur:    # one transaction
            cur.execute("INSERT INTO async.jobs (function, payload) VALUES (%s, %s::jsonb)",
                        (following, payload))
            cur.execute("SELECT async.complete(%s, %s)", (job_id, lease))
            if not cur.fetchone()[0]:
                worker.rollback()
