/*-------------------------------------------------------------------------
 *
 * consumer_depth.c
 *	  The depth of the events a consumer of external functions enqueues.
 *
 *	  A worker knows which job's handler enqueues (pg_async_current_depth).
 *	  A consumer runs outside the server, so pg_async learns it from the
 *	  transaction: the events a transaction enqueues are one deeper than
 *	  the deepest job it completes with async.complete() or
 *	  async.complete_many().  That is the documented way to consume (each
 *	  job's effects and its completion in one transaction), and it catches
 *	  the loops that go through external functions: A's consumer enqueueing
 *	  for A, or for B whose handler enqueues for A.
 *
 *	  The completion usually comes after the enqueues, so the transaction
 *	  keeps the ids of the jobs it enqueued, as ranges of consecutive ids,
 *	  and a completion raises their depth; what it enqueues after a
 *	  completion gets the depth at once (set_depth in enqueue.c).
 *
 *-------------------------------------------------------------------------
 */
#include "pg_async.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/memutils.h"

/*
 * At most this many ranges of ids are kept per transaction (16 bytes
 * each).  The ids of one INSERT ... SELECT, or of one invoke_many, are
 * mostly consecutive, so a range usually holds many jobs; the jobs of the
 * ranges past this are left at the depth they were enqueued with.
 */
#define ASYNC_MAX_ENQUEUED_RANGES	10000

/* the depth of the deepest job this transaction completed, else -1 */
static int32 completed_depth = -1;

/*
 * The values completed_depth had before the (sub)transactions that raised
 * it, so that a ROLLBACK TO SAVEPOINT past a completion undoes its depth
 * as it undoes the completion.  Past ASYNC_MAX_DEPTH_UNDO subtransactions
 * that raised it, the later ones are not recorded: rolling one of them
 * back keeps a depth too deep, which only errs towards stopping a chain.
 */
#define ASYNC_MAX_DEPTH_UNDO	16
typedef struct DepthUndo
{
	SubTransactionId subid;		/* the subtransaction that raised it */
	int32		before;			/* completed_depth before */
} DepthUndo;
static DepthUndo depth_undo[ASYNC_MAX_DEPTH_UNDO];
static int	ndepth_undo = 0;

/* true while the completion raises the depth of enqueued jobs */
static bool raising = false;

/* the ids of the jobs this transaction enqueued, in TopTransactionContext */
static int64 *range_lo = NULL;
static int64 *range_hi = NULL;
static int	nranges = 0;
static int	maxranges = 0;

/*
 * pg_async_consumer_depth is the depth of the deepest job this transaction
 * completed as a consumer, or -1: the events it enqueues are one deeper.
 */
int32
pg_async_consumer_depth(void)
{
	return completed_depth;
}

/*
 * pg_async_consumer_raising tells the triggers on async.jobs that the
 * update under way only raises the depth of jobs this transaction
 * enqueued: not a reschedule, nor rows others could claim.
 */
bool
pg_async_consumer_raising(void)
{
	return raising;
}

/*
 * pg_async_consumer_note_enqueued remembers that this transaction enqueued
 * job id, so that a later completion makes it one deeper than the job it
 * completes.  The workers do not call it: their handlers' jobs know their
 * depth (pg_async_current_depth).
 */
void
pg_async_consumer_note_enqueued(int64 id)
{
	if (nranges > 0 && range_hi[nranges - 1] + 1 == id)
	{
		range_hi[nranges - 1] = id;
		return;
	}
	if (nranges == ASYNC_MAX_ENQUEUED_RANGES)
		return;
	if (nranges == maxranges)
	{
		int			newmax = maxranges == 0 ? 16 : Min(maxranges * 2, ASYNC_MAX_ENQUEUED_RANGES);

		if (range_lo == NULL)
		{
			range_lo = MemoryContextAlloc(TopTransactionContext, newmax * sizeof(int64));
			range_hi = MemoryContextAlloc(TopTransactionContext, newmax * sizeof(int64));
		}
		else
		{
			range_lo = repalloc(range_lo, newmax * sizeof(int64));
			range_hi = repalloc(range_hi, newmax * sizeof(int64));
		}
		maxranges = newmax;
	}
	range_lo[nranges] = id;
	range_hi[nranges] = id;
	nranges++;
}

/*
 * pg_async_consumer_completed: this transaction completed jobs, the
 * deepest of them depth deep.  The jobs it enqueued so far become one
 * deeper than that, unless they are deeper already, and so will those it
 * enqueues from now on.  SPI is connected, as the extension's owner.
 *
 * Only the ids this backend's trigger saw in this transaction are raised:
 * no role can give a job's id in its INSERT (the column is not granted),
 * so they are the ids of the rows this transaction inserted.
 */
void
pg_async_consumer_completed(int32 depth)
{
	Oid			argtypes[3] = {INT8ARRAYOID, INT8ARRAYOID, INT4OID};
	Datum		args[3];
	SubTransactionId subid = GetCurrentSubTransactionId();

	if (depth < 0 || depth <= completed_depth)
		return;
	/* once per subtransaction; past the last entry, none (see above) */
	if ((ndepth_undo == 0 || depth_undo[ndepth_undo - 1].subid != subid) &&
		ndepth_undo < ASYNC_MAX_DEPTH_UNDO)
	{
		depth_undo[ndepth_undo].subid = subid;
		depth_undo[ndepth_undo].before = completed_depth;
		ndepth_undo++;
	}
	completed_depth = depth;
	if (nranges == 0)
		return;

	args[0] = pg_async_int8_array(range_lo, nranges, INT8OID);
	args[1] = pg_async_int8_array(range_hi, nranges, INT8OID);
	args[2] = Int32GetDatum(depth + 1);
	raising = true;
	PG_TRY();
	{
		int			rc;

		rc = SPI_execute_with_args("UPDATE async.jobs j SET depth = $3"
								   "  FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) r(lo, hi)"
								   " WHERE j.id OPERATOR(pg_catalog.>=) r.lo"
								   "   AND j.id OPERATOR(pg_catalog.<=) r.hi"
								   "   AND j.depth OPERATOR(pg_catalog.<) $3",
								   3, argtypes, args, NULL, false, 0);
		if (rc != SPI_OK_UPDATE)
			elog(ERROR, "pg_async: setting the depth of enqueued jobs failed: %s",
				 SPI_result_code_string(rc));
	}
	PG_FINALLY();
	{
		raising = false;
	}
	PG_END_TRY();
}

/*
 * pg_async_consumer_subxact_abort: a subtransaction that raised the depth
 * rolled back, with the completions that raised it; the depth goes back
 * to what it was before it.  (The jobs whose depth it raised have their
 * update rolled back too; a completion after this raises them again.)
 */
void
pg_async_consumer_subxact_abort(SubTransactionId subid)
{
	while (ndepth_undo > 0 && depth_undo[ndepth_undo - 1].subid >= subid)
	{
		completed_depth = depth_undo[ndepth_undo - 1].before;
		ndepth_undo--;
	}
}

/*
 * pg_async_consumer_end_job: a worker's handler ended.  The jobs of
 * external functions it completed made what it enqueued deeper, not what
 * the next handlers of its batch, perhaps other roles', enqueue in the
 * same transaction.  (The workers note no enqueued ids: their handlers'
 * jobs know their depth.)
 */
void
pg_async_consumer_end_job(void)
{
	completed_depth = -1;
	ndepth_undo = 0;
}

/* pg_async_consumer_end_xact forgets the transaction's completions and jobs. */
void
pg_async_consumer_end_xact(void)
{
	pg_async_consumer_end_job();
	raising = false;
	range_lo = NULL;
	range_hi = NULL;
	nranges = 0;
	maxranges = 0;
}
