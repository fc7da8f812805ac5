/*-------------------------------------------------------------------------
 *
 * keys.c
 *	  Limits by key (concurrency_key and key_concurrency of a
 *	  registration): the key of a job, which the enqueue trigger
 *	  (enqueue.c) and the SQL functions that queue a job again
 *	  (async._key_value) compute alike (the job's row in async.running
 *	  keeps it too while the job runs, for the claims to count), and where the
 *	  last claim of each such function stopped among its keys, by any
 *	  worker or consumer of the database (in shared memory, shmem.h), so
 *	  that the next one goes on from the key after it (async._keyed_jobs,
 *	  which claim.c and async._claim_external call with the cursor, and
 *	  tell where they stopped).
 *
 * IDENTIFICATION
 *	  src/keys.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_async.h"

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "shmem.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"

PG_FUNCTION_INFO_V1(pg_async_key_value);
PG_FUNCTION_INFO_V1(pg_async_key_cursor);
PG_FUNCTION_INFO_V1(pg_async_advance_key_cursor_sql);

/*
 * pg_async_job_key returns the key of a job with payload under the payload
 * key key_name: payload ->> key_name, the empty string when that is NULL
 * (no such key, a JSON null, or a payload that is no object), and "md5:"
 * with the MD5 of a value longer than ASYNC_MAX_KEY_VALUE bytes, so that
 * a role cannot put a key of any size into an index.
 */
text *
pg_async_job_key(Datum payload, text *key_name)
{
	LOCAL_FCINFO(fcinfo, 2);
	Datum		value;
	text	   *key;

	InitFunctionCallInfoData(*fcinfo, NULL, 2, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = payload;
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = PointerGetDatum(key_name);
	fcinfo->args[1].isnull = false;
	value = jsonb_object_field_text(fcinfo);
	if (fcinfo->isnull)
		return cstring_to_text("");

	key = DatumGetTextPP(value);
	if (VARSIZE_ANY_EXHDR(key) > ASYNC_MAX_KEY_VALUE)
	{
		text	   *md5 = DatumGetTextPP(DirectFunctionCall1(md5_text, PointerGetDatum(key)));

		key = cstring_to_text(psprintf("md5:%s", text_to_cstring(md5)));
	}
	return key;
}

/* async._key_value(payload jsonb, key text): pg_async_job_key, in SQL */
Datum
pg_async_key_value(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(pg_async_job_key(PG_GETARG_DATUM(0), PG_GETARG_TEXT_PP(1)));
}

/*
 * find_cursor returns the entry of function (hashed to hash) among the
 * cursors of db, or NULL.  The caller holds key_cursors_mutex.
 */
static AsyncKeyCursor *
find_cursor(AsyncDatabase *db, const char *function, uint32 hash)
{
	int			i;

	for (i = 0; i < ASYNC_KEY_CURSORS; i++)
	{
		AsyncKeyCursor *cursor = &db->key_cursors[i];

		if (cursor->hash == hash && strcmp(cursor->function, function) == 0)
			return cursor;
	}
	return NULL;
}

/* cursor_hash hashes a function's name for find_cursor; never 0 */
static uint32
cursor_hash(const char *function)
{
	uint32		hash = hash_bytes((const unsigned char *) function, strlen(function));

	return hash != 0 ? hash : 1;
}

/*
 * read_cursor copies the key after which the next claim of function goes
 * on into key (ASYNC_MAX_KEY_VALUE + 1 bytes), and tells whether there is
 * one: not when the function's place is not known.  A read does not count
 * as a use: every full claim of a worker reads the cursor of each keyed
 * function with room, jobs or none, and the entries kept are those of the
 * functions claimed last.
 */
static bool
read_cursor(const char *function, char *key)
{
	AsyncDatabase *db = pg_async_my_db();
	uint32		hash = cursor_hash(function);
	AsyncKeyCursor *cursor;
	bool		found = false;

	SpinLockAcquire(&db->key_cursors_mutex);
	cursor = find_cursor(db, function, hash);
	if (cursor != NULL)
	{
		strlcpy(key, cursor->key, ASYNC_MAX_KEY_VALUE + 1);
		found = true;
	}
	SpinLockRelease(&db->key_cursors_mutex);
	return found;
}

/*
 * async._key_cursor(function text): the key after which the next claim of
 * function goes on, whichever worker or consumer of the database claims
 */
Datum
pg_async_key_cursor(PG_FUNCTION_ARGS)
{
	char	   *function = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char		key[ASYNC_MAX_KEY_VALUE + 1];

	if (function[0] == '\0' || strlen(function) >= ASYNC_NAME_SIZE ||
		!read_cursor(function, key))
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(key));
}

/*
 * pg_async_advance_key_cursor moves the database's cursor among the keys of
 * function past keys, those of the jobs a claim just took from
 * async._keyed_jobs, which visited the keys after the cursor in order,
 * then from the first key up to the cursor: the new cursor is the last
 * of them in that order.  Keys compare as collation "C" does, byte by
 * byte.  The claims of a function are serialized (claim.c, and the
 * function's lock in async._claim_external), so that the next one reads
 * what this one wrote; the cursor is only where claims start, and a lost
 * move would only make one start earlier.
 */
void
pg_async_advance_key_cursor(const char *function, const char **keys, int nkeys)
{
	AsyncDatabase *db;
	AsyncKeyCursor *cursor;
	char		from[ASYNC_MAX_KEY_VALUE + 1];
	bool		has_from;
	const char *last_after = NULL;	/* the greatest key past the cursor */
	const char *last_upto = NULL;	/* the greatest key up to the cursor */
	const char *to;
	uint32		hash;
	int			i;

	if (nkeys == 0 || function[0] == '\0' || strlen(function) >= ASYNC_NAME_SIZE)
		return;
	has_from = read_cursor(function, from);
	for (i = 0; i < nkeys; i++)
	{
		if (has_from && strcmp(keys[i], from) <= 0)
		{
			if (last_upto == NULL || strcmp(keys[i], last_upto) > 0)
				last_upto = keys[i];
		}
		else if (last_after == NULL || strcmp(keys[i], last_after) > 0)
			last_after = keys[i];
	}
	/* a claim that went round past the last key ended up to the cursor */
	to = last_upto != NULL ? last_upto : last_after;
	/* no stored key is longer (pg_async_job_key) */
	if (strlen(to) > ASYNC_MAX_KEY_VALUE)
		return;

	db = pg_async_my_db();
	hash = cursor_hash(function);
	SpinLockAcquire(&db->key_cursors_mutex);
	cursor = find_cursor(db, function, hash);
	if (cursor == NULL)
	{
		/* the entry used least recently, a free one first */
		cursor = &db->key_cursors[0];
		for (i = 1; i < ASYNC_KEY_CURSORS; i++)
			if (db->key_cursors[i].used < cursor->used)
				cursor = &db->key_cursors[i];
		cursor->hash = hash;
		strlcpy(cursor->function, function, ASYNC_NAME_SIZE);
	}
	strlcpy(cursor->key, to, ASYNC_MAX_KEY_VALUE + 1);
	cursor->used = ++db->key_cursors_clock;
	SpinLockRelease(&db->key_cursors_mutex);
}

/*
 * async._advance_key_cursor(function text, keys text[]):
 * pg_async_advance_key_cursor, for async._claim_external
 */
Datum
pg_async_advance_key_cursor_sql(PG_FUNCTION_ARGS)
{
	char	   *function = text_to_cstring(PG_GETARG_TEXT_PP(0));
	ArrayType  *array = PG_GETARG_ARRAYTYPE_P(1);
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;
	const char **keys;
	int			nkeys = 0;
	int			i;

	if (ARR_NDIM(array) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("keys must be a one-dimensional array")));
	deconstruct_array(array, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &nelems);
	keys = palloc(sizeof(char *) * Max(nelems, 1));
	for (i = 0; i < nelems; i++)
		if (!nulls[i])
			keys[nkeys++] = TextDatumGetCString(elems[i]);
	pg_async_advance_key_cursor(function, keys, nkeys);
	PG_RETURN_VOID();
}
