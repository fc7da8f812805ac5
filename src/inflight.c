/*-------------------------------------------------------------------------
 *
 * inflight.c
 *	  In-flight markers: which job each worker's handler is running, in a
 *	  small file per database (pg_async/inflight.<database OID> in the data
 *	  directory, one record per worker slot), written without fsync.  A
 *	  file of its own, so that one database's recovery, which empties it,
 *	  and the workers of another, which may take the same slots after a
 *	  restart, leave its markers alone.
 *
 *	  A claim must outlive a crash of the handler it starts: a handler that
 *	  kills its worker (and so restarts the server) must spend an attempt,
 *	  or it would run, and crash, for ever.  Flushing the claim's commit to
 *	  disk before the handler starts guarantees that, but costs one WAL
 *	  flush (a quarter to half a millisecond here) between the enqueue and
 *	  the handler.  An idle worker's claim therefore commits without waiting
 *	  for the flush, and the worker writes the job's id and attempt here
 *	  before its handler starts.  A crash of a process leaves the operating
 *	  system's page cache alone, so after the restart the marker tells which
 *	  job ran even when the claim's commit did not reach the disk; that job
 *	  is then charged its attempt before any worker claims again.  What a
 *	  power loss takes with the claim it takes with the marker too, but no
 *	  handler caused that, and the jobs simply run again.
 *
 *	  The batch's own commit is synchronous and makes its claim durable, so
 *	  a marker only matters between an idle claim and the end of its batch.
 *
 *-------------------------------------------------------------------------
 */
#include "worker_internal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/xlog.h"
#include "miscadmin.h"
#include "storage/fd.h"

#define INFLIGHT_DIR		"pg_async"
#define INFLIGHT_FILE		"pg_async/inflight.%u"
#define INFLIGHT_MAGIC		0x70676173	/* "pgas" */

/* one record per worker slot, at offset slot * sizeof(InflightRecord) */
typedef struct InflightRecord
{
	uint32		magic;			/* INFLIGHT_MAGIC, or 0: no job */
	int32		attempt;
	int64		job_id;
	Oid			database;		/* the job is in this database */
	uint32		timeline;		/* written on this timeline */
} InflightRecord;

static int	inflight_fd = -1;
static int	inflight_slot = -1;
static bool inflight_set = false;

/*
 * The commit that claimed the batch running now, or a later one of the
 * same batch, when it did not wait for its WAL flush (the markers stand in
 * for that); invalid once a flushed commit made the claim durable.
 */
static XLogRecPtr unflushed_claim = InvalidXLogRecPtr;

/* inflight_path is the marker file of this database. */
static void
inflight_path(char *path)
{
	snprintf(path, MAXPGPATH, INFLIGHT_FILE, MyDatabaseId);
}

/*
 * pg_async_inflight_forget removes the marker file of a database that is
 * gone, so that a new database given its OID finds no marker in it.
 */
void
pg_async_inflight_forget(Oid dboid)
{
	char		path[MAXPGPATH];

	snprintf(path, MAXPGPATH, INFLIGHT_FILE, dboid);
	if (unlink(path) < 0 && errno != ENOENT)
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not remove file \"%s\": %m", path)));
}

/*
 * pg_async_inflight_migrate moves the markers of the single file of the
 * versions before 0.12 (pg_async/inflight) into the file of each one's
 * database, at the same place, and removes it.  The launcher calls it
 * before it starts any worker: a crash under 0.11 followed by an update
 * still charges the jobs it interrupted.
 */
void
pg_async_inflight_migrate(void)
{
	int			fd;
	InflightRecord rec;
	off_t		off = 0;

	fd = BasicOpenFile(INFLIGHT_DIR "/inflight", O_RDONLY | PG_BINARY);
	if (fd < 0)
		return;
	while (pread(fd, &rec, sizeof(rec), off) == sizeof(rec))
	{
		if (rec.magic == INFLIGHT_MAGIC && OidIsValid(rec.database))
		{
			char		path[MAXPGPATH];
			int			out;

			snprintf(path, MAXPGPATH, INFLIGHT_FILE, rec.database);
			out = BasicOpenFile(path, O_RDWR | O_CREAT | PG_BINARY);
			if (out < 0 || pwrite(out, &rec, sizeof(rec), off) != sizeof(rec))
				ereport(WARNING,
						(errcode_for_file_access(),
						 errmsg("could not write file \"%s\": %m", path)));
			if (out >= 0)
				close(out);
		}
		off += sizeof(rec);
	}
	close(fd);
	(void) unlink(INFLIGHT_DIR "/inflight");
}

/*
 * open_file opens (creating it and its directory if needed) the marker
 * file, or returns -1 with a WARNING.
 */
static int
open_file(void)
{
	char		path[MAXPGPATH];
	int			fd;

	if (MakePGDirectory(INFLIGHT_DIR) < 0 && errno != EEXIST)
	{
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not create directory \"%s\": %m", INFLIGHT_DIR)));
		return -1;
	}
	inflight_path(path);
	fd = BasicOpenFile(path, O_RDWR | O_CREAT | PG_BINARY);
	if (fd < 0)
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\": %m", path)));
	return fd;
}

/*
 * pg_async_inflight_open prepares this worker's marker, in slot 'slot'.
 * Without one (the file cannot be opened) the worker flushes its claims
 * instead, as pg_async_inflight_available() tells.
 */
void
pg_async_inflight_open(int slot)
{
	inflight_slot = slot;
	inflight_fd = open_file();
}

/* pg_async_inflight_available tells whether this worker can write markers. */
bool
pg_async_inflight_available(void)
{
	return inflight_fd >= 0;
}

/*
 * write_marker records that the handler of job_id, attempt 'attempt',
 * starts now.  Returns false if it could not: the caller must then make
 * the claim durable itself.
 */
static bool
write_marker(int64 job_id, int32 attempt)
{
	InflightRecord rec;

	if (inflight_fd < 0)
		return false;
	memset(&rec, 0, sizeof(rec));
	rec.magic = INFLIGHT_MAGIC;
	rec.attempt = attempt;
	rec.job_id = job_id;
	rec.database = MyDatabaseId;
	rec.timeline = GetWALInsertionTimeLine();
	if (pwrite(inflight_fd, &rec, sizeof(rec),
			   (off_t) inflight_slot * sizeof(rec)) != sizeof(rec))
	{
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not write the in-flight marker file of database %u: %m",
						MyDatabaseId),
				 errdetail("pg_async workers flush their claims to disk instead.")));
		close(inflight_fd);
		inflight_fd = -1;
		return false;
	}
	inflight_set = true;
	return true;
}

/*
 * pg_async_inflight_note_commit follows a commit that claimed a batch or
 * ran part of one.  If that commit did not wait for its WAL flush (an idle
 * claim, pg_async.synchronous_commit = off, or the server's own
 * synchronous_commit), the claim may be lost in a crash: the handlers to
 * come write in-flight markers until a flushed commit makes it durable.
 */
void
pg_async_inflight_note_commit(void)
{
	if (XactLastCommitEnd > GetFlushRecPtr(NULL))
		unflushed_claim = XactLastCommitEnd;
	else
		unflushed_claim = InvalidXLogRecPtr;
}

/*
 * pg_async_inflight_before_run records that job's handler starts, while the
 * claim of its batch may not be on disk yet; if the marker cannot be
 * written, it flushes the claim instead.
 */
void
pg_async_inflight_before_run(AsyncJob *job)
{
	if (XLogRecPtrIsInvalid(unflushed_claim))
		return;
	if (!write_marker(job->id, job->attempt))
	{
		XLogFlush(unflushed_claim);
		unflushed_claim = InvalidXLogRecPtr;
	}
}

/*
 * pg_async_inflight_clear forgets this worker's marker once its batch has
 * committed: the claim is durable from there.
 */
void
pg_async_inflight_clear(void)
{
	InflightRecord rec;

	if (!inflight_set || inflight_fd < 0)
		return;
	memset(&rec, 0, sizeof(rec));
	if (pwrite(inflight_fd, &rec, sizeof(rec),
			   (off_t) inflight_slot * sizeof(rec)) == sizeof(rec))
		inflight_set = false;
}

/*
 * pg_async_inflight_read returns the markers left by the workers of the
 * previous server lifetime (before a crash, restart or shutdown) for jobs of
 * this database, as palloc'd pairs of job id and attempt, and how many
 * there are.  Markers written on another timeline are left out: a standby
 * made from a base backup copies the file, and its promotion starts a new
 * timeline; crash recovery keeps the timeline.
 */
int
pg_async_inflight_read(int64 **job_ids, int32 **attempts)
{
	char		path[MAXPGPATH];
	int			fd;
	struct stat st;
	int			n = 0;
	int			max;
	InflightRecord *recs;
	TimeLineID	timeline = GetWALInsertionTimeLine();
	int			i;

	*job_ids = NULL;
	*attempts = NULL;
	inflight_path(path);
	fd = BasicOpenFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
	{
		if (errno != ENOENT)
			ereport(WARNING,
					(errcode_for_file_access(),
					 errmsg("could not open file \"%s\": %m", path)));
		return 0;
	}
	if (fstat(fd, &st) < 0 || st.st_size < (off_t) sizeof(InflightRecord))
	{
		close(fd);
		return 0;
	}
	max = (int) Min(st.st_size / sizeof(InflightRecord), 100000);
	recs = palloc(sizeof(InflightRecord) * max);
	if (pread(fd, recs, sizeof(InflightRecord) * max, 0) !=
		(ssize_t) (sizeof(InflightRecord) * max))
	{
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not read file \"%s\": %m", path)));
		close(fd);
		return 0;
	}
	close(fd);

	*job_ids = palloc(sizeof(int64) * max);
	*attempts = palloc(sizeof(int32) * max);
	for (i = 0; i < max; i++)
	{
		if (recs[i].magic != INFLIGHT_MAGIC || recs[i].job_id <= 0 ||
			recs[i].database != MyDatabaseId || recs[i].timeline != timeline)
			continue;
		(*job_ids)[n] = recs[i].job_id;
		(*attempts)[n] = recs[i].attempt;
		n++;
	}
	pfree(recs);
	return n;
}

/*
 * pg_async_inflight_reset empties this database's marker file, once its
 * markers have been acted on.  No worker of the database writes one before
 * that (none claims).
 */
void
pg_async_inflight_reset(void)
{
	char		path[MAXPGPATH];
	int			fd;

	inflight_path(path);
	fd = BasicOpenFile(path, O_RDWR | PG_BINARY);
	if (fd < 0)
		return;
	if (ftruncate(fd, 0) < 0)
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not truncate file \"%s\": %m", path)));
	close(fd);
}
