// A consumer of an external pg_async function, with pg from npm.
//
//     node consumer.js CONNINFO FUNCTION
//
// Claims up to 50 jobs at a time, waiting in async.claim for them to come;
// for each, in one transaction, writes its effect (a row of public.effects)
// and completes it.  A payload {"fail": true} is failed with async.fail.
// Runs until killed.  test/t/024_consumers.pl kills it with kill -9.
'use strict';

const { Client } = require('pg');

async function main() {
  const [conninfo, fn] = process.argv.slice(2);
  const claimer = new Client({ connectionString: conninfo });
  const worker = new Client({ connectionString: conninfo });
  await claimer.connect();
  await worker.connect();
  for (;;) {
    const { rows } = await claimer.query(
      "SELECT job_id, event_id, payload, lease FROM async.claim($1, 50, '1 second')", [fn]);
    for (const job of rows) {
      await worker.query('BEGIN');
      if (job.payload.fail) {
        await worker.query('SELECT async.fail($1, $2, $3)',
                           [job.job_id, job.lease, 'the payload asked to fail']);
        await worker.query('COMMIT');
        continue;
      }
      await worker.query("INSERT INTO public.effects (event_id, consumer) VALUES ($1, 'node')",
                         [job.event_id]);
      const done = await worker.query('SELECT async.complete($1, $2, $3) AS ok',
                                      [job.job_id, job.lease, { by: 'node' }]);
      // the lease expired meanwhile: undo the effect with the transaction
      await worker.query(done.rows[0].ok ? 'COMMIT' : 'ROLLBACK');
    }
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
