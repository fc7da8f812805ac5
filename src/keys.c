/*-------------------------------------------------------------------------
 *
 * keys.c
 *	  Limits by key (concurrency_key and key_concurrency of a
 *	  registration): the key of a job, which the enqueue trigger
 *	  (enqueue.c) and the SQL functions that queue a job again
 *	  (async._key_value) compute alike (a worker's claim clears it, and
 *	  the job's row in async.running keeps it meanwhile), and where this
 *	  session's last claim of each such function stopped among its keys,
 *	  so that the next one goes on from the key after it
 *	  (async._keyed_jobs, which claim.c and async._claim_external call with
 *	  the cursor, and tell where they stopped).
 *
 * IDENTIFICATION
 *	  src/keys.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_async.h"

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

PG_FUNCTION_INFO_V1(pg_async_key_value);
PG_FUNCTION_INFO_V1(pg_async_key_cursor);
PG_FUNCTION_INFO_V1(pg_async_advance_key_cursor_sql);

/*
 * The keys of the functions this session claimed last, a few of them: a
 * function whose place is forgotten starts again from its first key.
 */
#define KEY_CURSORS 16

typedef struct KeyCursor
{
	char		function[ASYNC_NAME_SIZE];	/* "" for a free slot */
	char	   *key;			/* in TopMemoryContext */
} KeyCursor;

static KeyCursor key_cursors[KEY_CURSORS];
static int	next_evicted = 0;

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

/* find_cursor returns the slot of function, or NULL */
static KeyCursor *
find_cursor(const char *function)
{
	int			i;

	for (i = 0; i < KEY_CURSORS; i++)
		if (strcmp(key_cursors[i].function, function) == 0)
			return &key_cursors[i];
	return NULL;
}

/* async._key_cursor(function text): the key this session stopped at */
Datum
pg_async_key_cursor(PG_FUNCTION_ARGS)
{
	char	   *function = text_to_cstring(PG_GETARG_TEXT_PP(0));
	KeyCursor  *cursor;

	if (function[0] == '\0' || strlen(function) >= ASYNC_NAME_SIZE)
		PG_RETURN_NULL();
	cursor = find_cursor(function);
	if (cursor == NULL || cursor->key == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(cursor->key));
}

/*
 * pg_async_advance_key_cursor moves this session's cursor among the keys of
 * function past keys, those of the jobs its claim just took from
 * async._keyed_jobs, which visited the keys after the cursor in order,
 * then from the first key up to the cursor: the new cursor is the last
 * of them in that order.  Keys compare as collation "C" does, byte by
 * byte.
 */
void
pg_async_advance_key_cursor(const char *function, const char **keys, int nkeys)
{
	KeyCursor  *cursor;
	const char *from;
	const char *last_after = NULL;	/* the greatest key past the cursor */
	const char *last_upto = NULL;	/* the greatest key up to the cursor */
	int			i;

	if (nkeys == 0 || function[0] == '\0' || strlen(function) >= ASYNC_NAME_SIZE)
		return;
	cursor = find_cursor(function);
	from = cursor != NULL ? cursor->key : NULL;
	for (i = 0; i < nkeys; i++)
	{
		if (from != NULL && strcmp(keys[i], from) <= 0)
		{
			if (last_upto == NULL || strcmp(keys[i], last_upto) > 0)
				last_upto = keys[i];
		}
		else if (last_after == NULL || strcmp(keys[i], last_after) > 0)
			last_after = keys[i];
	}

	if (cursor == NULL)
	{
		cursor = &key_cursors[next_evicted];
		next_evicted = (next_evicted + 1) % KEY_CURSORS;
		strlcpy(cursor->function, function, ASYNC_NAME_SIZE);
		if (cursor->key != NULL)
			pfree(cursor->key);
		cursor->key = NULL;
	}
	/* a claim that went round past the last key ended up to the cursor */
	from = last_upto != NULL ? last_upto : last_after;
	if (cursor->key != NULL && strcmp(cursor->key, from) == 0)
		return;
	if (cursor->key != NULL)
		pfree(cursor->key);
	cursor->key = MemoryContextStrdup(TopMemoryContext, from);
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
