/*-------------------------------------------------------------------------
 *
 * claim_commit.c
 *	  A consumer's transaction that wrote nothing but its claims
 *	  (async.claim()) of functions without a limit commits without waiting
 *	  for its WAL to be flushed, when the session sets
 *	  pg_async.claim_synchronous_commit to off (the default, on, keeps every
 *	  claim durable at its commit, as synchronous_commit does).  The
 *	  consumer's other transactions, its async.complete() among them, still
 *	  wait: what synchronous_commit = off on the session would give up.
 *
 *	  Such a commit makes durable only pg_async's own bookkeeping: the jobs
 *	  marked running, their leases, what the claim found expired, and what
 *	  triggers on pg_async's tables wrote with them.  Lost in a crash (or a
 *	  failover), the claims are undone as one: the jobs are queued again,
 *	  their attempts not counted, and a consumer that already holds one
 *	  finds its lease gone (async.complete() returns false), as when a lease
 *	  expires.  The consumer's next transaction that writes anything
 *	  (async.complete() itself) flushes the WAL up to its own commit, the
 *	  claims' commit among it, as does any commit that follows from the
 *	  claims (a worker's, running a destination the claim enqueued).  The
 *	  flush was a fifth to a quarter of the time from an enqueue to its
 *	  pick-up by a waiting consumer (docs/performance.md).
 *
 *	  The claims of a function with a concurrency, key or rate limit wait
 *	  for the flush as before: a lost claim would let another consumer run
 *	  the job while the first still does, past the limit, where a lease
 *	  that reached the disk holds until its deadline.
 *
 *	  A transaction counts as claims only when the WAL it wrote ends where
 *	  its last claim left it, and began where the one before it left it:
 *	  any other record of its own (a write of the consumer's, before or
 *	  after a claim, or pruning a page) makes the commit wait as usual.  A
 *	  module whose pre-commit callback runs after pg_async's (one loaded
 *	  before it) and writes WAL is caught after the commit record: the
 *	  backend then flushes before the client hears of the commit (though
 *	  after other sessions could see it, and without waiting for a
 *	  synchronous standby).  Only the setting's value at the commit counts,
 *	  as for synchronous_commit.  What leaves no WAL here is not seen:
 *	  NOTIFY, and writes to other servers (postgres_fdw, dblink);
 *	  docs/external.md says so.
 *
 * IDENTIFICATION
 *	  src/claim_commit.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_async.h"

#include "access/xlog.h"
#include "executor/instrument.h"

/* pg_async.claim_synchronous_commit: off lets such a transaction not wait */
bool		pg_async_claim_synchronous_commit = true;

/* where this transaction's WAL ended after its last claim; 0: no claim */
static XLogRecPtr claims_end = InvalidXLogRecPtr;

/* whether the transaction wrote WAL of its own besides its claims */
static bool other_writes = false;

/* whether it claimed jobs of a limited function */
static bool limited_claims = false;

/* the WAL records this backend had written when its commit was told not to wait; -1: it was not */
static int64 records_before_commit = -1;

/* pg_async_claim_writes_begin: a claim is about to write */
void
pg_async_claim_writes_begin(void)
{
	if (XactLastRecEnd != claims_end)
		other_writes = true;
}

/*
 * pg_async_claim_writes_end: the claim, of jobs of a function with a limit
 * or not, has written all it writes
 */
void
pg_async_claim_writes_end(bool limited)
{
	claims_end = XactLastRecEnd;
	if (limited)
		limited_claims = true;
}

/*
 * pg_async_claim_pre_commit, at the commit of the transaction: when it
 * wrote nothing but claims of functions without a limit, its commit does
 * not wait for the flush.
 */
void
pg_async_claim_pre_commit(void)
{
	if (claims_end != InvalidXLogRecPtr && !other_writes && !limited_claims &&
		XactLastRecEnd == claims_end && !pg_async_claim_synchronous_commit)
	{
		pg_async_commit_without_flush();
		records_before_commit = pgWalUsage.wal_records;
	}
}

/*
 * pg_async_claim_commit, once the transaction committed: if a write came
 * after the pre-commit above (another module's callback), besides the
 * commit record, the commit's WAL is flushed now, before the client hears
 * of it.
 */
void
pg_async_claim_commit(void)
{
	if (records_before_commit >= 0 &&
		pgWalUsage.wal_records > records_before_commit + 1)
		XLogFlush(XactLastCommitEnd);
	pg_async_claim_end_xact();
}

/* pg_async_claim_end_xact forgets the transaction's claims. */
void
pg_async_claim_end_xact(void)
{
	claims_end = InvalidXLogRecPtr;
	other_writes = false;
	limited_claims = false;
	records_before_commit = -1;
}
