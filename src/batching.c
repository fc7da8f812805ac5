/*-------------------------------------------------------------------------
 *
 * batching.c
 *	  The batching policy of a worker: how many jobs its next claim takes,
 *	  whether that claim waits to take more together, and whether jobs
 *	  committed meanwhile are left to it or handed to an idle colleague.
 *
 *	  The worker loop asks; the policy answers from moving averages of
 *	  what the worker saw: run time per job, commit time, jobs per claim,
 *	  time between claims, and the rate at which all commits make jobs
 *	  ready.  Each threshold below was measured on a 2-core machine to
 *	  help the workload it names; the reason stands beside each.
 *
 *-------------------------------------------------------------------------
 */
#include "worker_internal.h"

#include "miscadmin.h"
#include "utils/timestamp.h"

/*
 * How long a batch should take.  Jobs claimed together wait for each other,
 * so a worker whose handlers are slow claims fewer at a time and leaves the
 * rest to its colleagues.
 */
#define ASYNC_BATCH_TARGET_US		100000
/*
 * A claim that finds ASYNC_STREAM_JOBS jobs or more, but fewer than it may
 * take, while jobs have been coming at ASYNC_STREAM_RATE a second or faster
 * (over the last few claims, so that one burst is no stream), was fed by a
 * stream of enqueues: the next claim waits for pg_async.batch_wait.  Slower
 * streams are claimed as each job comes, with a worker's transaction or two
 * per job, which two cores pay for without trouble at such rates, and
 * without a wait in the latency of their jobs.
 */
#define ASYNC_STREAM_JOBS			4
#define ASYNC_STREAM_RATE			2000
/*
 * A worker whose claims get fewer jobs than this on average (the same moving
 * average) is fed one job at a time: jobs that come while it commits are
 * better started by an idle colleague than left to its next claim, unless
 * jobs are committed at ASYNC_HANDOFF_RATE a second or faster in all: two
 * workers that share such a flow each see fewer jobs per claim, and with
 * them sharing 2,000 jobs/s the benchmark's soak saw indexes of async.jobs
 * grow by half.  The rate is taken over ASYNC_RATE_INTERVAL_US or more.
 */
#define ASYNC_SINGLE_JOBS			2.0
#define ASYNC_HANDOFF_RATE			1500
#define ASYNC_RATE_INTERVAL_US		10000

/* average run time of one job, in microseconds (exponential moving average) */
static double avg_job_us = 0;

/* average time a batch's finishing commit takes, WAL flush included (same) */
static double avg_commit_us = 0;

/* the most jobs the last claim could take (pg_async_batch_limit() then) */
static int	last_claim_limit = 1;

/*
 * When the last claim that got jobs started, and whether the next waits for
 * pg_async.batch_wait after it (pg_async_claim_due).
 */
static TimestampTz last_claim_at = 0;
static bool last_claim_streaming = false;
static bool last_claim_full = false;

/* jobs per claim, and microseconds between claims (moving averages) */
static double stream_jobs = 0;
static double stream_gap_us = USECS_PER_SEC;

/* jobs made ready a second by all commits (see ASYNC_HANDOFF_RATE) */
static double commit_rate = 0;
static uint64 rate_jobs = 0;		/* the database's jobs_committed at rate_since */
static TimestampTz rate_since = 0;

/*
 * pg_async_batch_limit is how many jobs to claim next: pg_async.batch_size,
 * fewer when recent jobs were slow, so that one batch lasts about
 * ASYNC_BATCH_TARGET_US. The claim that asks takes at most that many.
 */
int
pg_async_batch_limit(void)
{
	int			limit = pg_async_batch_size;

	if (avg_job_us * limit > ASYNC_BATCH_TARGET_US)
		limit = Max(1, (int) (ASYNC_BATCH_TARGET_US / avg_job_us));
	last_claim_limit = limit;
	return limit;
}

/*
 * pg_async_batch_was_full tells whether a claim that got njobs took all
 * that pg_async_batch_limit allowed it: more may be waiting.  That limit is
 * smaller than pg_async.batch_size while handlers are slow, which is when
 * a colleague's help matters most.
 */
bool
pg_async_batch_was_full(int njobs)
{
	return njobs >= last_claim_limit;
}

/*
 * pg_async_claim_due returns when the next claim may start.  Jobs enqueued in
 * a stream, one transaction each, would otherwise be claimed a few at a time,
 * as they commit: every batch costs transactions of the worker's, which on a
 * small machine take the processor from the very sessions enqueueing.  So
 * after a claim fed by a stream (ASYNC_STREAM_RATE), the next waits until
 * pg_async.batch_wait after it, and takes what came meanwhile together.
 * Without a stream jobs are claimed as soon as they come; after a full claim
 * more are waiting, and the next claim is due at once.
 */
TimestampTz
pg_async_claim_due(void)
{
	if (!last_claim_streaming || pg_async_batch_wait <= 0)
		return 0;
	return last_claim_at + (TimestampTz) (pg_async_batch_wait * 1000.0);
}

/*
 * pg_async_batch_note_claim notes a claim that got n jobs, started at
 * claim_start, for pg_async_claim_due: whether it was fed by a stream.  The
 * rate the jobs came at is taken over the last few claims, as the ratio of the
 * moving averages of jobs per claim and of time between claims (an average of
 * each claim's own rate would make a stream of close pairs out of jobs that
 * come at random).  A full claim found a backlog, not a stream: the claim after
 * it, which takes the rest of the backlog, does not count as one either.
 */
void
pg_async_batch_note_claim(int n, TimestampTz claim_start)
{
	bool		full = (n >= last_claim_limit);

	stream_jobs = 0.8 * stream_jobs + 0.2 * (double) n;
	stream_gap_us = 0.8 * stream_gap_us +
		0.2 * (double) Min(claim_start - last_claim_at, USECS_PER_SEC);
	last_claim_streaming = (n >= ASYNC_STREAM_JOBS && !full && !last_claim_full &&
							stream_jobs * USECS_PER_SEC >=
							ASYNC_STREAM_RATE * stream_gap_us);
	last_claim_full = full;
	last_claim_at = claim_start;
}

/*
 * keeps_new_jobs tells, at now, whether jobs committed while this worker
 * finishes its batch should be left to its next claim rather than to an
 * idle colleague (see ASYNC_SINGLE_JOBS): while it batches a stream, while
 * its claims get several jobs each, or while jobs come fast in all.
 */
static bool
keeps_new_jobs(TimestampTz now)
{
	if (now - rate_since >= ASYNC_RATE_INTERVAL_US)
	{
		uint64		committed = pg_atomic_read_u64(&pg_async_my_db()->jobs_committed);

		if (rate_since > 0)
			commit_rate = (double) (committed - rate_jobs) * USECS_PER_SEC /
				(double) (now - rate_since);
		rate_jobs = committed;
		rate_since = now;
	}
	return pg_async_claim_due() > 0 || stream_jobs >= ASYNC_SINGLE_JOBS ||
		commit_rate >= ASYNC_HANDOFF_RATE;
}

/*
 * colleague_claims_first tells whether a worker of lower rank is awake
 * and will claim by 'when'.  Only lower ranks count, so that two workers
 * never both leave the jobs to the other.  An awake worker takes a new
 * snapshot for a claim before it sleeps, so jobs committed before we sleep
 * are not left behind, even those whose committer left them to us.  A
 * colleague taking its last look (ASYNC_SLOT_CLAIMING) does not count: its
 * snapshot may be older than such a job.
 */
static bool
colleague_claims_first(TimestampTz when)
{
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	for (i = 0; i < AsyncShmem->nslots; i++)
	{
		AsyncWorkerSlot *slot = &AsyncShmem->slots[i];

		if (pg_async_same_db(slot) && slot->rank < MyAsyncSlot->rank &&
			pg_async_slot_looks_by(slot, when, now))
			return true;
	}
	return false;
}

/*
 * pg_async_batch_leave_to_colleague tells whether this worker, about to
 * wait for pg_async_claim_due() before it claims, should rather sleep: a
 * stream of jobs is one worker's to batch, and a colleague in a lower slot
 * is awake and claims first.  That one wakes it when its claims come back
 * full.
 */
bool
pg_async_batch_leave_to_colleague(void)
{
	TimestampTz due = pg_async_claim_due();

	return due > GetCurrentTimestamp() &&
		colleague_claims_first(due + pg_async_wake_slack());
}

/*
 * pg_async_batch_forget_stream makes the next claim come at once, not
 * after pg_async.batch_wait: for a worker woken from its sleep.
 */
void
pg_async_batch_forget_stream(void)
{
	last_claim_streaming = false;
}

/* pg_async_batch_note_job notes the run time of one job. */
void
pg_async_batch_note_job(int64 duration_us)
{
	avg_job_us = 0.8 * avg_job_us + 0.2 * (double) duration_us;
}

/*
 * pg_async_batch_expected_end is when a batch of njobs started at start
 * should end, as long as recent jobs took.
 */
TimestampTz
pg_async_batch_expected_end(TimestampTz start, int njobs)
{
	return start + (TimestampTz) (njobs * avg_job_us);
}

/*
 * pg_async_batch_overran tells whether a batch started at batch_start has,
 * at now, taken twice as long as a batch should.  A batch is sized by the
 * run time of recent jobs, which says little when slow jobs follow fast
 * ones: a worker fresh from no-op jobs claims a full batch of one-second
 * jobs and would run them one after the other while its colleagues sleep.
 * The worker gives the rest of such a batch back.
 */
bool
pg_async_batch_overran(TimestampTz batch_start, TimestampTz now)
{
	return now - batch_start > 2 * ASYNC_BATCH_TARGET_US;
}

/*
 * pg_async_batch_next_look is when the worker, committing at commit_start
 * a batch and the claim of the next (nnext jobs), should announce it will
 * look at the queue again: soon, while it keeps new jobs (keeps_new_jobs),
 * so that committers leave theirs to it; PG_INT64_MAX otherwise, so that
 * they wake a sleeping colleague, who starts them at once rather than after
 * our flush and our next batch.
 */
TimestampTz
pg_async_batch_next_look(TimestampTz commit_start, int nnext)
{
	if (!keeps_new_jobs(commit_start))
		return PG_INT64_MAX;
	return Max(commit_start + (TimestampTz) (avg_commit_us + nnext * avg_job_us),
			   pg_async_claim_due());
}

/* pg_async_batch_note_commit notes how long a batch's commit took. */
void
pg_async_batch_note_commit(int64 commit_us)
{
	avg_commit_us = 0.8 * avg_commit_us + 0.2 * (double) commit_us;
}
