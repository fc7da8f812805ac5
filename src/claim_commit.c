/*-------------------------------------------------------------------------
 *
 * claim_commit.c
 *	  A consumer's transaction that wrote nothing but its claims
 *	  (async.claim()) commits without waiting for its WAL to be flushed.
 *
 *	  Such a commit makes durable only pg_async's own bookkeeping: the jobs
 *	  marked running, their leases, and what the claim found expired.
 *	  Lost in a crash, the claims are simply undone: the jobs are queued
 *	  again, uncharged, and a consumer that already holds one finds its
 *	  lease gone (async.complete() returns false), as when a lease
 *	  expires.  The consumer's next transaction that writes anything
 *	  (async.complete() itself) flushes the WAL up to its own commit, the
 *	  claims' commit among it, as does any commit that follows from the
 *	  claims (a worker's, running a destination the claim enqueued).  The
 *	  flush was a fifth to a third of the time from an enqueue to its
 *	  pick-up by a waiting consumer (docs/performance.md).
 *
 *	  A transaction counts as claims only when the WAL it wrote ends where
 *	  its last claim left it, and began where the one before it left it:
 *	  any other record (a write of the consumer's own, before or after a
 *	  claim, in a trigger, or pruning a page) makes the commit wait as
 *	  usual.
 *
 * IDENTIFICATION
 *	  src/claim_commit.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_async.h"

#include "access/xlog.h"

/* where this transaction's WAL ended after its last claim; 0: no claim */
static XLogRecPtr claims_end = InvalidXLogRecPtr;

/* whether the transaction wrote WAL of its own besides its claims */
static bool other_writes = false;

/* pg_async_claim_writes_begin: a claim is about to write */
void
pg_async_claim_writes_begin(void)
{
	if (XactLastRecEnd != claims_end)
		other_writes = true;
}

/* pg_async_claim_writes_end: the claim has written all it writes */
void
pg_async_claim_writes_end(void)
{
	claims_end = XactLastRecEnd;
}

/*
 * pg_async_claim_pre_commit, at the commit of the transaction: when it
 * wrote nothing but its claims, its commit does not wait for the flush.
 */
void
pg_async_claim_pre_commit(void)
{
	if (claims_end != InvalidXLogRecPtr && !other_writes &&
		XactLastRecEnd == claims_end)
		pg_async_commit_without_flush();
}

/* pg_async_claim_end_xact forgets the transaction's claims. */
void
pg_async_claim_end_xact(void)
{
	claims_end = InvalidXLogRecPtr;
	other_writes = false;
}
