/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  Cumulative counters per function, in shared memory, pg_stat_* style:
 *	  jobs received, started, succeeded, failed, retried, dead-lettered and
 *	  duplicates skipped, with histograms of handler duration and queue
 *	  wait.  Workers add to them once per committed transaction, enqueueing
 *	  backends once per commit, so the hot path pays one lock per batch.
 *
 *	  The counters are written to PGDATA/pg_stat/pg_async.stat when the
 *	  server shuts down cleanly and read back at start; a crash resets them.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_async.h"
#include "stats.h"

#include <math.h>

#include "funcapi.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(pg_async_function_stats);
PG_FUNCTION_INFO_V1(pg_async_stats_reset);

#define ASYNC_STATS_FILE		"pg_stat/pg_async.stat"
#define ASYNC_STATS_MAGIC		0x70617333	/* "pas3": 0.12 added the database */

/* a function of one database */
typedef struct AsyncStatsKey
{
	Oid			dboid;
	char		name[ASYNC_NAME_SIZE];
} AsyncStatsKey;

/* in shared memory, and in the file */
typedef struct AsyncStatsEntry
{
	AsyncStatsKey key;			/* hash key */
	AsyncCounters c;
} AsyncStatsEntry;

/* this backend's pending counts, by function */
typedef struct AsyncPendingEntry
{
	char		name[ASYNC_NAME_SIZE];	/* hash key */
	AsyncCounters c;
} AsyncPendingEntry;

typedef struct AsyncStatsShared
{
	LWLock	   *lock;
	TimestampTz stats_reset;
} AsyncStatsShared;

static AsyncStatsShared *StatsShared = NULL;
static HTAB *StatsHash = NULL;

/* this backend's counts for its open transaction, added at commit */
static HTAB *PendingHash = NULL;

/* pg_async_stats_shmem_size: the fixed part and the hash table. */
Size
pg_async_stats_shmem_size(void)
{
	return add_size(MAXALIGN(sizeof(AsyncStatsShared)),
					hash_estimate_size(ASYNC_STATS_MAX_FUNCTIONS, sizeof(AsyncStatsEntry)));
}

/* pg_async_stats_request asks for the lock protecting the counters. */
void
pg_async_stats_request(void)
{
	RequestNamedLWLockTranche("pg_async stats", 1);
}

/*
 * stats_histogram_bucket maps microseconds to a histogram bucket: four
 * buckets per power of two, so a percentile read from it is within 19%.
 */
static int
stats_histogram_bucket(int64 us)
{
	int			b;

	if (us < 1)
		return 0;
	b = (int) (4.0 * log2((double) us)) + 1;
	return Min(b, ASYNC_HIST_BUCKETS - 1);
}

/* stats_bucket_upper is the largest duration, in microseconds, of bucket b. */
static double
stats_bucket_upper(int b)
{
	if (b == 0)
		return 1.0;
	return pow(2.0, (double) b / 4.0);
}

/* pg_async_count_duration adds one duration to a histogram, sum and max. */
void
pg_async_count_duration(AsyncDuration *d, int64 us)
{
	if (us < 0)
		us = 0;
	d->count++;
	d->sum_us += (double) us;
	if (us > d->max_us)
		d->max_us = us;
	d->hist[stats_histogram_bucket(us)]++;
}

/* add_duration adds the figures of one histogram to another. */
static void
add_duration(AsyncDuration *to, const AsyncDuration *from)
{
	int			i;

	/* an enqueueing session's counts have no durations: skip the buckets */
	if (from->count == 0)
		return;
	to->count += from->count;
	to->sum_us += from->sum_us;
	to->max_us = Max(to->max_us, from->max_us);
	for (i = 0; i < ASYNC_HIST_BUCKETS; i++)
		to->hist[i] += from->hist[i];
}

/* add_counters adds every counter of 'from' to 'to'. */
static void
add_counters(AsyncCounters *to, const AsyncCounters *from)
{
	to->received += from->received;
	to->started += from->started;
	to->succeeded += from->succeeded;
	to->failed += from->failed;
	to->retried += from->retried;
	to->dead += from->dead;
	to->duplicates += from->duplicates;
	to->loops += from->loops;
	add_duration(&to->duration, &from->duration);
	add_duration(&to->wait, &from->wait);
}

/* stats_load reads the counters saved at the last clean shutdown, if any. */
static void
stats_load(void)
{
	FILE	   *f;
	uint32		magic;
	int32		n;
	TimestampTz reset;
	int			i;

	f = AllocateFile(ASYNC_STATS_FILE, PG_BINARY_R);
	if (f == NULL)
		return;
	if (fread(&magic, sizeof(magic), 1, f) != 1 || magic != ASYNC_STATS_MAGIC ||
		fread(&reset, sizeof(reset), 1, f) != 1 ||
		fread(&n, sizeof(n), 1, f) != 1)
		goto done;
	StatsShared->stats_reset = reset;
	for (i = 0; i < n; i++)
	{
		AsyncStatsEntry e;
		AsyncStatsEntry *entry;

		if (fread(&e, sizeof(e), 1, f) != 1)
			break;
		e.key.name[ASYNC_NAME_SIZE - 1] = '\0';
		entry = hash_search(StatsHash, &e.key, HASH_ENTER_NULL, NULL);
		if (entry == NULL)
			break;
		entry->c = e.c;
	}
done:
	FreeFile(f);
	/* a crash before the next clean shutdown must not bring these back */
	unlink(ASYNC_STATS_FILE);
}

/* stats_save writes the counters at a clean shutdown of the postmaster. */
static void
stats_save(int code, Datum arg)
{
	FILE	   *f;
	uint32		magic = ASYNC_STATS_MAGIC;
	int32		n;
	HASH_SEQ_STATUS seq;
	AsyncStatsEntry *entry;

	/* after a crash, shared memory is not to be trusted */
	if (code != 0 || StatsShared == NULL)
		return;

	f = AllocateFile(ASYNC_STATS_FILE ".tmp", PG_BINARY_W);
	if (f == NULL)
	{
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("could not write pg_async statistics file \"%s\": %m",
						ASYNC_STATS_FILE ".tmp")));
		return;
	}
	n = (int32) hash_get_num_entries(StatsHash);
	fwrite(&magic, sizeof(magic), 1, f);
	fwrite(&StatsShared->stats_reset, sizeof(TimestampTz), 1, f);
	fwrite(&n, sizeof(n), 1, f);
	hash_seq_init(&seq, StatsHash);
	while ((entry = hash_seq_search(&seq)) != NULL)
		fwrite(entry, sizeof(AsyncStatsEntry), 1, f);
	if (FreeFile(f) != 0)
	{
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("could not write pg_async statistics file \"%s\": %m",
						ASYNC_STATS_FILE ".tmp")));
		unlink(ASYNC_STATS_FILE ".tmp");
		return;
	}
	(void) durable_rename(ASYNC_STATS_FILE ".tmp", ASYNC_STATS_FILE, LOG);
}

/*
 * pg_async_stats_shmem_init creates or attaches the counters; in the
 * postmaster it also loads the saved ones and arranges to save them.
 * Called with AddinShmemInitLock held.
 */
void
pg_async_stats_shmem_init(void)
{
	bool		found;
	HASHCTL		info;

	StatsShared = ShmemInitStruct("pg_async stats", sizeof(AsyncStatsShared), &found);
	if (!found)
	{
		StatsShared->lock = &(GetNamedLWLockTranche("pg_async stats"))->lock;
		StatsShared->stats_reset = GetCurrentTimestamp();
	}

	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(AsyncStatsKey);
	info.entrysize = sizeof(AsyncStatsEntry);
	StatsHash = ShmemInitHash("pg_async stats hash",
							  ASYNC_STATS_MAX_FUNCTIONS, ASYNC_STATS_MAX_FUNCTIONS,
							  &info, HASH_ELEM | HASH_BLOBS | HASH_FIXED_SIZE);

	if (!IsUnderPostmaster)
	{
		if (!found)
			stats_load();
		on_shmem_exit(stats_save, (Datum) 0);
	}
}

/* pending_entry finds or creates this backend's pending counts for a function. */
static AsyncCounters *
pending_entry(const char *function)
{
	char		key[ASYNC_NAME_SIZE];
	AsyncPendingEntry *entry;
	bool		found;

	if (PendingHash == NULL)
	{
		HASHCTL		info;

		memset(&info, 0, sizeof(info));
		info.keysize = ASYNC_NAME_SIZE;
		info.entrysize = sizeof(AsyncPendingEntry);
		info.hcxt = TopMemoryContext;
		PendingHash = hash_create("pg_async pending stats", 16, &info,
								  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	memset(key, 0, sizeof(key));
	strlcpy(key, function, sizeof(key));
	entry = hash_search(PendingHash, key, HASH_ENTER, &found);
	if (!found)
		memset(&entry->c, 0, sizeof(AsyncCounters));
	return &entry->c;
}

/*
 * pg_async_pending returns the counts of a function that this backend adds
 * to the shared counters at its next pg_async_stats_flush().
 */
AsyncCounters *
pg_async_pending(const char *function)
{
	static AsyncCounters discard;

	/* with pg_async.track_stats off, counts go nowhere */
	if (!pg_async_track_stats)
		return &discard;
	return pending_entry(function);
}

/*
 * pg_async_stats_flush adds this backend's pending counts to the shared
 * counters (commit = true) or drops them (an abort), under one lock.
 */
void
pg_async_stats_flush(bool commit)
{
	HASH_SEQ_STATUS seq;
	AsyncPendingEntry *pending;

	if (PendingHash == NULL || hash_get_num_entries(PendingHash) == 0)
		return;

	if (commit && StatsShared != NULL)
	{
		static bool warned = false;

		LWLockAcquire(StatsShared->lock, LW_EXCLUSIVE);
		hash_seq_init(&seq, PendingHash);
		while ((pending = hash_seq_search(&seq)) != NULL)
		{
			AsyncStatsKey key;
			AsyncStatsEntry *entry;
			bool		found;

			memset(&key, 0, sizeof(key));
			key.dboid = MyDatabaseId;
			/* a string key: the bytes after its end are not copied */
			strlcpy(key.name, pending->name, sizeof(key.name));
			entry = hash_search(StatsHash, &key, HASH_ENTER_NULL, &found);
			if (entry == NULL)
			{
				if (!warned)
					ereport(LOG,
							(errmsg("pg_async statistics track at most %d functions",
									ASYNC_STATS_MAX_FUNCTIONS),
							 errhint("Call async.stats_reset() to forget functions that no longer exist.")));
				warned = true;
				continue;
			}
			if (!found)
				memset(&entry->c, 0, sizeof(AsyncCounters));
			add_counters(&entry->c, &pending->c);
		}
		LWLockRelease(StatsShared->lock);
	}

	/* forget the pending counts, keeping the small table for next time */
	hash_seq_init(&seq, PendingHash);
	while ((pending = hash_seq_search(&seq)) != NULL)
		(void) hash_search(PendingHash, pending->name, HASH_REMOVE, NULL);
}

/* histogram_percentile reads the p-th percentile (0..1), in milliseconds. */
static double
histogram_percentile(const AsyncDuration *d, double p)
{
	int64		target;
	int64		seen = 0;
	int			i;

	if (d->count == 0)
		return 0;
	target = (int64) ceil(p * (double) d->count);
	if (target < 1)
		target = 1;
	for (i = 0; i < ASYNC_HIST_BUCKETS; i++)
	{
		seen += d->hist[i];
		if (seen >= target)
			return Min(stats_bucket_upper(i), (double) d->max_us) / 1000.0;
	}
	return d->max_us / 1000.0;
}

/*
 * async._function_stats(): one row per function with its counters, the
 * average, p50, p95 and maximum of handler duration and queue wait (ms),
 * and when the counters were last reset.  The function of 0.8 and older,
 * until ALTER EXTENSION UPDATE, has no loops_stopped.
 */
Datum
pg_async_function_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HASH_SEQ_STATUS seq;
	AsyncStatsEntry *entry;

	bool		with_loops;

	InitMaterializedSRF(fcinfo, 0);
	if (StatsShared == NULL)
		return (Datum) 0;
	with_loops = rsinfo->setDesc->natts >= 18;

	LWLockAcquire(StatsShared->lock, LW_SHARED);
	hash_seq_init(&seq, StatsHash);
	while ((entry = hash_seq_search(&seq)) != NULL)
	{
		Datum		values[18];
		bool		nulls[18] = {false};
		AsyncCounters *c = &entry->c;
		int			k = 0;

		/* the functions of this database */
		if (entry->key.dboid != MyDatabaseId)
			continue;
		values[k++] = CStringGetTextDatum(entry->key.name);
		values[k++] = Int64GetDatum(c->received);
		values[k++] = Int64GetDatum(c->started);
		values[k++] = Int64GetDatum(c->succeeded);
		values[k++] = Int64GetDatum(c->failed);
		values[k++] = Int64GetDatum(c->retried);
		values[k++] = Int64GetDatum(c->dead);
		values[k++] = Int64GetDatum(c->duplicates);
		if (with_loops)
			values[k++] = Int64GetDatum(c->loops);
		values[k++] = Float8GetDatum(c->duration.count ? c->duration.sum_us / c->duration.count / 1000.0 : 0);
		values[k++] = Float8GetDatum(histogram_percentile(&c->duration, 0.50));
		values[k++] = Float8GetDatum(histogram_percentile(&c->duration, 0.95));
		values[k++] = Float8GetDatum(c->duration.max_us / 1000.0);
		values[k++] = Float8GetDatum(c->wait.count ? c->wait.sum_us / c->wait.count / 1000.0 : 0);
		values[k++] = Float8GetDatum(histogram_percentile(&c->wait, 0.50));
		values[k++] = Float8GetDatum(histogram_percentile(&c->wait, 0.95));
		values[k++] = Float8GetDatum(c->wait.max_us / 1000.0);
		values[k++] = TimestampTzGetDatum(StatsShared->stats_reset);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(StatsShared->lock);

	return (Datum) 0;
}

/*
 * async.stats_reset(): forgets every counter of this database.  The time of
 * the reset is the cluster's last, whatever the database.
 */
Datum
pg_async_stats_reset(PG_FUNCTION_ARGS)
{
	HASH_SEQ_STATUS seq;
	AsyncStatsEntry *entry;

	if (StatsShared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_async is not in shared_preload_libraries"),
				 errdetail("Without it there are no counters to reset.")));

	LWLockAcquire(StatsShared->lock, LW_EXCLUSIVE);
	hash_seq_init(&seq, StatsHash);
	while ((entry = hash_seq_search(&seq)) != NULL)
	{
		if (entry->key.dboid == MyDatabaseId)
			(void) hash_search(StatsHash, &entry->key, HASH_REMOVE, NULL);
	}
	StatsShared->stats_reset = GetCurrentTimestamp();
	LWLockRelease(StatsShared->lock);
	PG_RETURN_VOID();
}

/*
 * pg_async_count_duplicate counts an async.invoke() that found its event_id
 * taken.  The row trigger had counted the event as received; it was not.
 */
void
pg_async_count_duplicate(const char *function)
{
	AsyncCounters *c = pg_async_pending(function);

	c->received--;
	c->duplicates++;
}

/*
 * async._note_duplicate(function), which any role could call to forge the
 * counters of any name, is gone in 0.5, where async.invoke counts its
 * duplicates itself.  The symbol stays for the 0.4 async.invoke, which
 * calls it until ALTER EXTENSION UPDATE (and for the earlier install
 * scripts that a fresh install runs): it now only turns into a duplicate
 * an event this backend counted as received in this transaction, so it
 * can neither make a name up nor drive a counter below zero.
 */
PG_FUNCTION_INFO_V1(pg_async_note_duplicate);

Datum
pg_async_note_duplicate(PG_FUNCTION_ARGS)
{
	char		key[ASYNC_NAME_SIZE];
	AsyncPendingEntry *entry;

	if (PG_ARGISNULL(0) || PendingHash == NULL)
		PG_RETURN_VOID();
	memset(key, 0, sizeof(key));
	strlcpy(key, text_to_cstring(PG_GETARG_TEXT_PP(0)), sizeof(key));
	entry = hash_search(PendingHash, key, HASH_FIND, NULL);
	if (entry != NULL && entry->c.received > 0)
	{
		entry->c.received--;
		entry->c.duplicates++;
	}
	PG_RETURN_VOID();
}
