// test/bench/consumers.js: the measurements of test/bench/consumers.sh, in
// Node.js, with pg and graphile-worker from npm (NODE_PATH names them).
//
//   node consumers.js drain-pg URL JOBS CONSUMERS BATCH
//       JOBS no-op jobs of an external function, enqueued in one INSERT,
//       drained by CONSUMERS connections that each claim BATCH jobs at a
//       time (waiting in async.claim) and complete them with complete_many;
//       prints the jobs/s from the INSERT's commit to the last completion.
//   node consumers.js drain-graphile URL JOBS PROCESSES CONCURRENCY
//       the same JOBS as Graphile Worker jobs (add_jobs), drained by
//       PROCESSES worker processes of CONCURRENCY jobs each, with its
//       batching on (a local queue of GRAPHILE_LOCAL_QUEUE jobs, default
//       500, and batched completions); prints jobs/s.
//   node consumers.js drain-workers URL JOBS
//       JOBS no-op jobs of an SQL function (public.bench_noop, registered
//       as bench_workers), enqueued in one INSERT and run by the server's
//       own workers (pg_async.workers); prints the jobs/s from the INSERT's
//       commit until async.function_stats counts them succeeded, looked at
//       every 20 ms, as drain-graphile looks at Graphile Worker's table.
//   node consumers.js latency-pg URL RATE SECONDS [on|off|claims]
//       a consumer waits in async.claim (and completes what it got on a
//       second connection, not waiting for it); a producer calls
//       async.invoke RATE times a second for SECONDS; prints the percentiles
//       of the time from the call of async.invoke to the return of the claim
//       that got it, and the median of each second (a rise shows a cost
//       that grows as the jobs go through).  The last argument is
//       synchronous_commit on the claiming connection (default on): off
//       spares each claim the wait for its commit's WAL flush, and loses
//       nothing that matters, since a claim lost in a crash only hands its
//       jobs out again, as an expired lease does, and the completion's
//       commit (synchronous) flushes the claim's with it.  claims keeps
//       synchronous_commit on and sets pg_async.claim_synchronous_commit
//       to off instead (0.18): the transactions of nothing but claims do
//       not wait, the session's others do.
'use strict';

const { Client } = require('pg');
const { fork } = require('child_process');

const now = () => Number(process.hrtime.bigint()) / 1e6;	// ms

async function connect(url) {
  const c = new Client({ connectionString: url });
  await c.connect();
  return c;
}

async function drainPg(url, jobs, consumers, batch) {
  const admin = await connect(url);
  await admin.query(`SELECT async.register_external('bench_noop', timeout => '5 minutes')
                      WHERE NOT EXISTS (SELECT FROM async.functions WHERE name = 'bench_noop')`);
  await admin.query(`INSERT INTO async.jobs (function, payload)
                     SELECT 'bench_noop', '{}' FROM generate_series(1, $1)`, [jobs]);
  const t0 = now();
  let done = 0;
  const loop = async () => {
    const c = await connect(url);
    while (done < jobs) {
      const { rows } = await c.query(
        "SELECT job_id, lease FROM async.claim('bench_noop', $1, '0.1 seconds')", [batch]);
      if (rows.length === 0)
        continue;
      const r = await c.query('SELECT async.complete_many($1::bigint[], $2::uuid[]) AS n',
                              [rows.map((j) => j.job_id), rows.map((j) => j.lease)]);
      done += r.rows[0].n;
    }
    await c.end();
  };
  await Promise.all(Array.from({ length: consumers }, loop));
  const secs = (now() - t0) / 1000;
  await admin.end();
  console.log(JSON.stringify({ jobs, seconds: secs, jobs_per_s: jobs / secs }));
}

async function drainWorkers(url, jobs) {
  const admin = await connect(url);
  await admin.query('SET client_min_messages = warning');
  await admin.query("CREATE OR REPLACE FUNCTION public.bench_noop(e jsonb) RETURNS void LANGUAGE sql AS 'SELECT'");
  await admin.query(`SELECT async.register('public.bench_noop(jsonb)', name => 'bench_workers')
                      WHERE NOT EXISTS (SELECT FROM async.functions WHERE name = 'bench_workers')`);
  // the counters live in shared memory and are added to at commit: reading
  // them costs nothing beside the drain, where a look at async.jobs would
  const counts = async () => {
    const { rows } = await admin.query(
      `SELECT COALESCE(sum(succeeded), 0)::bigint AS ok,
              COALESCE(sum(failed + dead_lettered), 0)::bigint AS bad
         FROM async.function_stats WHERE function = 'bench_workers'`);
    return { ok: Number(rows[0].ok), bad: Number(rows[0].bad) };
  };
  const base = await counts();
  await admin.query(`INSERT INTO async.jobs (function, payload)
                     SELECT 'bench_workers', '{}' FROM generate_series(1, $1)`, [jobs]);
  const t0 = now();
  let last = base.ok;
  let lastMove = t0;
  for (;;) {
    const c = await counts();
    if (c.bad !== base.bad)
      throw new Error(`drain-workers: ${c.bad - base.bad} jobs of bench_workers failed`);
    if (c.ok < last)
      throw new Error('drain-workers: the counters went back (a restart?)');
    if (c.ok - base.ok >= jobs)
      break;
    if (c.ok !== last) {
      last = c.ok;
      lastMove = now();
    } else if (now() - lastMove > 60000)
      throw new Error(`drain-workers: no job finished for 60 s (${c.ok - base.ok} of ${jobs});`
                      + ' are pg_async.workers running?');
    await new Promise((r) => setTimeout(r, 20));
  }
  const secs = (now() - t0) / 1000;
  await admin.end();
  console.log(JSON.stringify({ jobs, seconds: secs, jobs_per_s: jobs / secs }));
}

async function graphileWorker(url, concurrency) {
  const { run, Logger } = require('graphile-worker');
  const runner = await run({
    connectionString: url,
    logger: new Logger(() => () => {}),	// quiet: a line per job would be the cost measured
    concurrency,
    noHandleSignals: true,
    pollInterval: 1000,
    preset: {
      worker: {
        localQueue: { size: Number(process.env.GRAPHILE_LOCAL_QUEUE || 500) },
        completeJobBatchDelay: 0,
        failJobBatchDelay: 0,
      },
    },
    taskList: { noop: async () => {} },
  });
  process.on('message', async () => {
    await runner.stop();
    process.exit(0);
  });
  process.send('ready');
}

async function drainGraphile(url, jobs, processes, concurrency) {
  const admin = await connect(url);
  const workers = [];
  for (let i = 0; i < processes; i++) {
    const w = fork(__filename, ['graphile-worker', url, String(concurrency)]);
    workers.push(w);
    await new Promise((resolve) => w.once('message', resolve));
  }
  await admin.query(`SELECT graphile_worker.add_jobs(ARRAY(
                       SELECT json_populate_record(NULL::graphile_worker.job_spec,
                                json_build_object('identifier', 'noop', 'payload', '{}'::json))
                         FROM generate_series(1, $1)))`, [jobs]);
  const t0 = now();
  for (;;) {
    const { rows } = await admin.query('SELECT count(*)::int AS n FROM graphile_worker._private_jobs');
    if (rows[0].n === 0)
      break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const secs = (now() - t0) / 1000;
  for (const w of workers)
    w.send('stop');
  await Promise.all(workers.map((w) => new Promise((r) => w.once('exit', r))));
  await admin.end();
  console.log(JSON.stringify({ jobs, seconds: secs, jobs_per_s: jobs / secs }));
}

async function latencyPg(url, rate, seconds, syncCommit) {
  const admin = await connect(url);
  await admin.query(`SELECT async.register_external('bench_latency', timeout => '5 minutes')
                      WHERE NOT EXISTS (SELECT FROM async.functions WHERE name = 'bench_latency')`);
  const consumer = await connect(url);
  await consumer.query(`SET synchronous_commit = ${syncCommit === 'off' ? 'off' : 'on'}`);
  if (syncCommit === 'claims')
    await consumer.query('SET pg_async.claim_synchronous_commit = off');
  const finisher = await connect(url);
  const producer = await connect(url);
  const sent = new Map();
  const latencies = [];
  const bySecond = [];	// the latencies of the events sent in each second
  const total = rate * seconds;
  let stop = false;
  let finishing = Promise.resolve();

  const t0 = now();
  const consume = (async () => {
    while (!stop) {
      const { rows } = await consumer.query(
        "SELECT job_id, event_id, lease FROM async.claim('bench_latency', 100, '1 second')");
      const t = now();
      for (const j of rows) {
        if (sent.has(j.event_id)) {
          const l = t - sent.get(j.event_id);
          const s = Math.floor((sent.get(j.event_id) - t0) / 1000);
          latencies.push(l);
          (bySecond[s] = bySecond[s] || []).push(l);
        }
      }
      // completed on another connection, while this one claims again
      if (rows.length > 0)
        finishing = finishing.then(() => finisher.query(
          'SELECT async.complete_many($1::bigint[], $2::uuid[])',
          [rows.map((j) => j.job_id), rows.map((j) => j.lease)]));
    }
  })();

  for (let i = 0; i < total; i++) {
    // paced: the i-th call at t0 + i / rate
    const wait = t0 + (i * 1000) / rate - now();
    if (wait > 0)
      await new Promise((r) => setTimeout(r, wait));
    const id = `lat-${process.pid}-${i}`;
    sent.set(id, now());
    await producer.query("SELECT async.invoke('bench_latency', '{}', $1)", [id]);
  }
  const deadline = now() + 10000;
  while (latencies.length < total && now() < deadline)
    await new Promise((r) => setTimeout(r, 50));
  stop = true;
  await consume;
  await finishing;
  const pct = (a, p) => {
    a.sort((x, y) => x - y);
    return a[Math.min(a.length - 1, Math.floor((p / 100) * a.length))];
  };
  const ms = (x) => Math.round(x * 100) / 100;
  console.log(JSON.stringify({ events: total, received: latencies.length, rate,
                               claim_synchronous_commit: ['off', 'claims'].includes(syncCommit) ? syncCommit : 'on',
                               p50_ms: ms(pct(latencies, 50)), p99_ms: ms(pct(latencies, 99)),
                               max_ms: ms(pct(latencies, 100)),
                               p50_ms_by_second: bySecond.map((a) => ms(pct(a, 50))) }));
  await Promise.all([admin.end(), consumer.end(), finisher.end(), producer.end()]);
}

async function main() {
  const [mode, url, ...args] = process.argv.slice(2);
  const n = args.map(Number);
  if (mode === 'drain-pg')
    await drainPg(url, n[0], n[1], n[2]);
  else if (mode === 'drain-workers')
    await drainWorkers(url, n[0]);
  else if (mode === 'drain-graphile')
    await drainGraphile(url, n[0], n[1], n[2]);
  else if (mode === 'graphile-worker')
    await graphileWorker(url, n[0]);
  else if (mode === 'latency-pg')
    await latencyPg(url, n[0], n[1], args[2]);
  else
    throw new Error(`unknown mode ${mode}`);
}

main().catch((e) => { console.error(e); process.exit(1); });
