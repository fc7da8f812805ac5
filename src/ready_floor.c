/*-------------------------------------------------------------------------
 *
 * ready_floor.c
 *	  The ready floor: a time below which no ready job waits, so that a
 *	  claim can start its walk of jobs_ready_idx there instead of at the
 *	  index's first entry.
 *
 *	  The first entries of jobs_ready_idx are those of jobs that already
 *	  ran: finishing a job leaves its entry behind until VACUUM removes it,
 *	  and while a long transaction, a pg_dump or a replication slot holds
 *	  back the xmin horizon, nothing removes it, nor can a scan mark it
 *	  dead.  A claim that walked from the start would visit every job run
 *	  since the horizon was taken, and the queue would slow down without
 *	  end (docs/design.md, "Held xmin").  With the floor a claim walks only
 *	  the entries of the jobs claimed since the last claim.
 *
 *	  The protocol, with every time kept as an ordered 64-bit key (see
 *	  floor_key):
 *
 *	  - A claim raises the floor to the run_at of the first job it found
 *	    (claims walk in run_at order), or to its own now() when it found
 *	    none.  Rows it could not see are the others' to report.
 *	  - Whatever makes a job ready below the floor lowers the floor, after
 *	    its transaction committed, so that the job is visible when a claim
 *	    looks: an enqueue, a retry, a job given back or recovered, a resume
 *	    (enqueue.c's row triggers note each job's run_at; the transaction
 *	    callback lowers the floor at commit).  A worker that exits unclean
 *	    (worker.c) and a user's aborted UPDATE or DELETE of jobs, which may
 *	    have held job rows locked past a claim, lower it to the start.
 *	  - A claim in progress cannot see jobs committed after its snapshot,
 *	    and must not raise the floor past them.  So each claim resets its
 *	    slot's 'claim_low' before its snapshot, every lowering lowers the
 *	    claim_low of every slot before the floor itself, and a claim raises
 *	    the floor no higher than its claim_low, with a compare-and-swap that
 *	    fails if a lowering came in between.
 *	  - What no trigger sees (a job row locked by SELECT ... FOR UPDATE
 *	    while a claim passed it, a prepared transaction's jobs, a restore
 *	    with its triggers disabled) is found by a sweep: a claim from the
 *	    start, every pg_async.sweep_interval (1 s), or less often when
 *	    sweeps are expensive (1% of one worker's time at most, as the look
 *	    for dead workers' jobs in recovery.c is paced).
 *
 *	  The jobs of other priorities than 0 are in jobs_priority_idx, by
 *	  priority and run_at, which has a floor of its own, with the same
 *	  protocol: its key is a priority and a time (priority_key).  A time
 *	  passes jobs from "scheduled" to "due" without any trigger, so that
 *	  floor must not pass a scheduled job of a lower priority than the ready
 *	  job a claim found: claim.c raises it only as far as it knows nothing
 *	  of that kind lies below.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_async.h"
#include "shmem.h"

#include "access/htup_details.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(pg_async_ready_floor);

/* sweeps: at most this far apart, unless pg_async.sweep_interval is longer */
#define ASYNC_SWEEP_MAX_INTERVAL_MS	600000
/*
 * A sweep may take up to 1/ASYNC_SWEEP_COST_RATIO of the time between
 * sweeps.  Under a held xmin horizon a sweep walks every job run since, for
 * seconds, and stops one worker meanwhile.
 */
#define ASYNC_SWEEP_COST_RATIO		100

/* the key of "no floor": every claim walks from the start */
#define FLOOR_BOTTOM	UINT64CONST(0)
/* the key above every time: a claim's claim_low as it begins */
#define FLOOR_TOP		PG_UINT64_MAX

/* for each floor, the lowest key of the jobs this transaction made ready */
static uint64 pending_low[ASYNC_NFLOORS] = {FLOOR_TOP, FLOOR_TOP};

/* this transaction updated or deleted jobs outside a worker */
static bool touched = false;

/* the sweep this worker's current claim does, if any */
static bool sweeping = false;
static TimestampTz sweep_start = 0;

/*
 * floor_key maps a TimestampTz onto an unsigned key of the same order, so
 * that 64-bit atomics can compare them: DT_NOBEGIN is 0, DT_NOEND the top.
 */
static inline uint64
floor_key(TimestampTz t)
{
	return (uint64) t ^ (UINT64CONST(1) << 63);
}

static inline TimestampTz
floor_time(uint64 key)
{
	return (TimestampTz) (key ^ (UINT64CONST(1) << 63));
}

/*
 * pg_async_priority_floor_key is the key of the priority floor for a job
 * of that priority and run_at: the priority, offset to be unsigned, in
 * the top 16 bits, and the time in milliseconds since 2000 in the other 48
 * (8,900 years), rounded down; a time before 2000, or DT_NOBEGIN, is 0.  A
 * key never lies above the job it was made of, so a floor made of it
 * passes no job.
 */
#define PRIORITY_TIME_BITS	48
#define PRIORITY_TIME_MASK	((UINT64CONST(1) << PRIORITY_TIME_BITS) - 1)

uint64
pg_async_priority_floor_key(int16 priority, TimestampTz t)
{
	uint64		ms = t <= 0 ? 0 : Min((uint64) (t / 1000), PRIORITY_TIME_MASK);

	return ((uint64) ((int32) priority - PG_INT16_MIN) << PRIORITY_TIME_BITS) | ms;
}

static inline void
priority_key_parts(uint64 key, int16 *priority, TimestampTz *t)
{
	uint64		ms = key & PRIORITY_TIME_MASK;

	*priority = (int16) ((int32) (key >> PRIORITY_TIME_BITS) + PG_INT16_MIN);
	*t = ms == 0 ? DT_NOBEGIN : (TimestampTz) ms * 1000;
}

/* atomic_lower lowers *var to key, if key is lower. */
static void
atomic_lower(pg_atomic_uint64 *var, uint64 key)
{
	uint64		old = pg_atomic_read_u64(var);

	while (key < old)
	{
		if (pg_atomic_compare_exchange_u64(var, &old, key))
			break;
	}
}

/*
 * floor_lower lowers floor f to key: first every claim in progress, then
 * the floor.  The caller's jobs are already visible to new snapshots.
 */
static void
floor_lower(int f, uint64 key)
{
	int			i;

	if (AsyncShmem == NULL)
		return;
	pg_memory_barrier();
	/*
	 * The floor first, for the claims that begin now; then the claims in
	 * progress; then the floor again, for a claim that raised it meanwhile
	 * (it re-reads its claim_low after its raise, see floor_raise).
	 */
	atomic_lower(&pg_async_my_db()->floors[f], key);
	for (i = 0; i < AsyncShmem->nslots; i++)
	{
		if (pg_async_same_db(&AsyncShmem->slots[i]))
			atomic_lower(&AsyncShmem->slots[i].claim_low[f], key);
	}
	atomic_lower(&pg_async_my_db()->floors[f], key);
}

/* floor_lower_all lowers every floor to the start. */
static void
floor_lower_all(void)
{
	int			f;

	for (f = 0; f < ASYNC_NFLOORS; f++)
		floor_lower(f, FLOOR_BOTTOM);
}

/*
 * floor_raise raises floor f towards found, for the claim of slot: no
 * higher than the slot's claim_low, which the lowerings since the claim
 * began have lowered.
 */
static void
floor_raise(int f, AsyncWorkerSlot *slot, uint64 found)
{
	uint64		floor = pg_atomic_read_u64(&pg_async_my_db()->floors[f]);

	for (;;)
	{
		uint64		key = Min(found, pg_atomic_read_u64(&slot->claim_low[f]));

		if (key <= floor)
			break;
		/* fails, and tries again, if a lowering came in meanwhile */
		if (pg_atomic_compare_exchange_u64(&pg_async_my_db()->floors[f], &floor, key))
		{
			/*
			 * A lowering that found the floor low enough already, and
			 * lowered only our claim_low after we read it, would be lost:
			 * take it into account now.
			 */
			atomic_lower(&pg_async_my_db()->floors[f],
						 pg_atomic_read_u64(&slot->claim_low[f]));
			break;
		}
	}
}

/*
 * pg_async_floor_note notes that the current transaction made a job ready
 * (queued, not paused, not limited) with this run_at: its commit lowers the
 * floor.
 */
void
pg_async_floor_note(TimestampTz run_at)
{
	uint64		key = floor_key(run_at);

	if (key < pending_low[ASYNC_FLOOR_READY])
		pending_low[ASYNC_FLOOR_READY] = key;
}

/*
 * pg_async_priority_floor_note notes that the current transaction made a
 * job of jobs_priority_idx ready, or scheduled one (which time will make
 * ready): its commit lowers the priority floor.
 */
void
pg_async_priority_floor_note(int16 priority, TimestampTz run_at)
{
	uint64		key = pg_async_priority_floor_key(priority, run_at);

	if (key < pending_low[ASYNC_FLOOR_PRIORITY])
		pending_low[ASYNC_FLOOR_PRIORITY] = key;
}

/*
 * pg_async_floor_note_start notes that the current transaction may have
 * made jobs ready anywhere (a pause or a limit lifted): its commit lowers
 * every floor to the start.
 */
void
pg_async_floor_note_start(void)
{
	int			f;

	for (f = 0; f < ASYNC_NFLOORS; f++)
		pending_low[f] = FLOOR_BOTTOM;
}

/*
 * pg_async_floor_note_touched notes that the current transaction, outside a
 * worker, updates or deletes jobs: the rows it locks are skipped by claims
 * meanwhile, and come back unchanged if it aborts.
 */
void
pg_async_floor_note_touched(void)
{
	touched = true;
}

/*
 * pg_async_floor_end_xact applies, at the end of a transaction, what it
 * noted: after a commit the run_at of the jobs it made ready; after an
 * abort of a transaction (or subtransaction) that updated or deleted jobs,
 * the start.  It runs from the transaction callback, after a commit is
 * visible.
 */
void
pg_async_floor_end_xact(bool commit)
{
	int			f;

	for (f = 0; f < ASYNC_NFLOORS; f++)
	{
		if (!commit && touched)
			floor_lower(f, FLOOR_BOTTOM);
		else if (commit && pending_low[f] != FLOOR_TOP)
			floor_lower(f, pending_low[f]);
		pending_low[f] = FLOOR_TOP;
	}
	touched = false;
}

/* pg_async_floor_subxact_abort: the rows an aborted subtransaction locked */
void
pg_async_floor_subxact_abort(void)
{
	if (touched)
		floor_lower_all();
}

/*
 * pg_async_floor_reset lowers the floor to the start, at once: a worker
 * exited, perhaps with job rows locked that claims passed.  If it exited in
 * the middle of a sweep, the sweep's lease ends too, so that the next
 * sweep is not put off for ASYNC_SWEEP_MAX_INTERVAL_MS.
 */
void
pg_async_floor_reset(void)
{
	floor_lower_all();
	if (sweeping && AsyncShmem != NULL)
	{
		pg_atomic_write_u64(&pg_async_my_db()->sweep_end, (uint64) GetCurrentTimestamp());
		sweeping = false;
	}
}

/*
 * pg_async_floor_claim_begin starts a claim by slot: it tells the run_at
 * the claim's walk of jobs_ready_idx starts at, and the priority and run_at
 * its walks of jobs_priority_idx start at (both the start, for a sweep).
 * It runs before the claim takes its snapshot.
 */
TimestampTz
pg_async_floor_claim_begin(AsyncWorkerSlot *slot, int16 *priority, TimestampTz *priority_run_at)
{
	uint64		floor;
	uint64		last;
	int64		interval_ms;
	TimestampTz now;
	int			f;

	for (f = 0; f < ASYNC_NFLOORS; f++)
		pg_atomic_write_u64(&slot->claim_low[f], FLOOR_TOP);
	pg_memory_barrier();
	floor = pg_atomic_read_u64(&pg_async_my_db()->floors[ASYNC_FLOOR_READY]);
	priority_key_parts(pg_atomic_read_u64(&pg_async_my_db()->floors[ASYNC_FLOOR_PRIORITY]),
					   priority, priority_run_at);

	/*
	 * One worker sweeps when it is time; the others go on from the floor.
	 * The time between sweeps is pg_async.sweep_interval, or 100 times what
	 * the last one took if that is longer, up to ASYNC_SWEEP_MAX_INTERVAL_MS.
	 */
	now = GetCurrentTimestamp();
	last = pg_atomic_read_u64(&pg_async_my_db()->sweep_end);
	interval_ms = Max((int64) pg_async_sweep_interval,
					  Min((int64) pg_atomic_read_u64(&pg_async_my_db()->sweep_us) / 1000 * ASYNC_SWEEP_COST_RATIO,
						  ASYNC_SWEEP_MAX_INTERVAL_MS));
	sweeping = false;
	/* a sweep in progress holds sweep_end in the future, as a lease */
	if ((TimestampTz) last + interval_ms * 1000 <= now &&
		pg_atomic_compare_exchange_u64(&pg_async_my_db()->sweep_end, &last,
									   (uint64) (now + (TimestampTz) ASYNC_SWEEP_MAX_INTERVAL_MS * 1000)))
	{
		sweeping = true;
		sweep_start = now;
		priority_key_parts(FLOOR_BOTTOM, priority, priority_run_at);
		return DT_NOBEGIN;
	}
	return floor_time(floor);
}

/*
 * pg_async_floor_claim_end ends a claim by slot that found its first ready
 * job at first_run_at (DT_NOEND if it found none), in a statement whose
 * now() was claim_now.  It raises the floor as far as it may.  A claim
 * that could not tell (raise false) only ends.
 */
void
pg_async_floor_claim_end(AsyncWorkerSlot *slot, bool raise,
						 TimestampTz first_run_at, TimestampTz claim_now)
{
	int			f;

	if (raise)
		floor_raise(ASYNC_FLOOR_READY, slot, floor_key(Min(first_run_at, claim_now)));
	for (f = 0; f < ASYNC_NFLOORS; f++)
		pg_atomic_write_u64(&slot->claim_low[f], FLOOR_BOTTOM);

	if (sweeping)
	{
		TimestampTz end = GetCurrentTimestamp();

		pg_atomic_write_u64(&pg_async_my_db()->sweep_us, (uint64) (end - sweep_start));
		pg_atomic_write_u64(&pg_async_my_db()->sweep_end, (uint64) end);
		sweeping = false;
	}
}

/*
 * pg_async_priority_floor_claim_end raises the priority floor, for the
 * claim of slot, to key (pg_async_priority_floor_key): claim.c found no
 * job below it that is ready or that time will make ready.  It runs
 * before pg_async_floor_claim_end, which ends the claim.
 */
void
pg_async_priority_floor_claim_end(AsyncWorkerSlot *slot, uint64 key)
{
	floor_raise(ASYNC_FLOOR_PRIORITY, slot, key);
}

/*
 * pg_async_priority_floor_current lowers (*priority, *run_at) to the
 * priority floor as it is now, if that is lower.
 */
void
pg_async_priority_floor_current(int16 *priority, TimestampTz *run_at)
{
	uint64		key = pg_atomic_read_u64(&pg_async_my_db()->floors[ASYNC_FLOOR_PRIORITY]);

	if (key < pg_async_priority_floor_key(*priority, *run_at))
		priority_key_parts(key, priority, run_at);
}

/* pg_async_floor_current is the ready floor as it is now. */
TimestampTz
pg_async_floor_current(void)
{
	return floor_time(pg_atomic_read_u64(&pg_async_my_db()->floors[ASYNC_FLOOR_READY]));
}

/*
 * pg_async_ready_floor is async._ready_floor(): the floor, and how long
 * the last sweep took, for async.health().
 */
Datum
pg_async_ready_floor(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "pg_async_ready_floor: return type must be a row type");
	if (AsyncShmem == NULL)
	{
		/* not preloaded: no claim has a floor */
		values[0] = TimestampTzGetDatum(DT_NOBEGIN);
		nulls[1] = true;
	}
	else
	{
		values[0] = TimestampTzGetDatum(floor_time(pg_atomic_read_u64(&pg_async_my_db()->floors[ASYNC_FLOOR_READY])));
		values[1] = Float8GetDatum(pg_atomic_read_u64(&pg_async_my_db()->sweep_us) / 1000.0);
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
