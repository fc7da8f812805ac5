/*-------------------------------------------------------------------------
 *
 * late_wal.c
 *	  A module for test/t/036_claim_commit_late_wal.pl only, never
 *	  installed: while late_wal.enabled is on, its pre-commit callback
 *	  writes a WAL record (a logical decoding message) in every transaction
 *	  that commits.  Loaded before pg_async, so that its callback runs after
 *	  pg_async's, it writes WAL after pg_async told a transaction of claims
 *	  not to wait for its flush: the case src/claim_commit.c flushes after
 *	  the commit.
 *
 * IDENTIFICATION
 *	  test/modules/late_wal.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "replication/message.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* late_wal.enabled: write the record */
static bool late_wal_enabled = false;

/* late_wal_callback writes the record at the pre-commit of a transaction */
static void
late_wal_callback(XactEvent event, void *arg)
{
	if (event != XACT_EVENT_PRE_COMMIT || !late_wal_enabled)
		return;
#if PG_VERSION_NUM >= 170000
	(void) LogLogicalMessage("late_wal", "", 0, false, false);
#else
	(void) LogLogicalMessage("late_wal", "", 0, false);
#endif
}

void
_PG_init(void)
{
	DefineCustomBoolVariable("late_wal.enabled",
							 "Writes a WAL record at the pre-commit of every transaction.",
							 NULL,
							 &late_wal_enabled,
							 false,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);
	MarkGUCPrefixReserved("late_wal");
	RegisterXactCallback(late_wal_callback, NULL);
}
