#!/usr/bin/env python3
"""A consumer of an external pg_async function, with psycopg2.

    consumer.py CONNINFO FUNCTION

Claims up to 20 jobs at a time, waiting in async.claim for them to come;
for each, in one transaction, writes its effect (a row of public.effects)
and completes it, so that the effect and the completion commit together.
A payload {"fail": true} is a job that fails: async.fail, and no effect.
Runs until killed.  test/t/024_consumers.pl kills it with kill -9.
"""
import json
import sys

import psycopg2

conninfo, function = sys.argv[1], sys.argv[2]
claimer = psycopg2.connect(conninfo)
claimer.autocommit = True
worker = psycopg2.connect(conninfo)

while True:
    with claimer.cursor() as cur:
        cur.execute("SELECT job_id, event_id, payload, lease"
                    "  FROM async.claim(%s, 20, '1 second')", (function,))
        jobs = cur.fetchall()
    for job_id, event_id, payload, lease in jobs:
        with worker, worker.cursor() as cur:    # one transaction
            if payload.get("fail"):
                cur.execute("SELECT async.fail(%s, %s, %s)",
                            (job_id, lease, "the payload asked to fail"))
                continue
            cur.execute("INSERT INTO public.effects (event_id, consumer) VALUES (%s, 'python')",
                        (event_id,))
            cur.execute("SELECT async.complete(%s, %s, %s)",
                        (job_id, lease, json.dumps({"by": "python"})))
            if not cur.fetchone()[0]:
                # the lease expired meanwhile: undo the effect with the transaction
                worker.rollback()
