/*-------------------------------------------------------------------------
 *
 * external_wait.c
 *	  Consumers of external functions waiting in shared memory.  A consumer
 *	  whose async.claim() found nothing sleeps on its latch, in a slot that
 *	  names the function it waits for; a commit that made jobs of that
 *	  function ready sets its latch.  No LISTEN/NOTIFY, and no polling.
 *	  Also the flag that tells the first worker of the database whether
 *	  leases may have expired, and the floor below every lease's deadline
 *	  before which a claim need not look for expired ones.
 *
 * IDENTIFICATION
 *	  src/external_wait.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_async.h"
#include "shmem.h"

#include "common/hashfn.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

/*
 * Consumers waiting in async.claim(): one slot per backend at most, found
 * free by its pid, with the hash of the function it waits for (0: none).
 */
typedef struct ConsumerWait
{
	pg_atomic_uint32 pid;
	pg_atomic_uint32 function_hash;
	Latch	   *latch;
} ConsumerWait;

typedef struct ConsumerWaits
{
	pg_atomic_uint32 nwaiting;
	int			nslots;
	ConsumerWait slots[FLEXIBLE_ARRAY_MEMBER];
} ConsumerWaits;

static ConsumerWaits *Waits = NULL;
static ConsumerWait *MyWait = NULL;
static bool wait_cleanup_set = false;

/*
 * Functions whose jobs this transaction made ready; their waiting consumers
 * are woken at commit.  Past ASYNC_PENDING_EXTERNAL functions, every
 * waiting consumer is.
 */
#define ASYNC_PENDING_EXTERNAL	8
static uint32 pending_hashes[ASYNC_PENDING_EXTERNAL];
static int	npending = 0;
static bool pending_all = false;

/* this transaction's claims made leases, the first to expire at this time */
static bool leased = false;
static TimestampTz first_deadline = PG_INT64_MAX;

/* this transaction's look at the leases, and the floor it found */
static uint64 pending_look = 0;
static TimestampTz pending_floor = 0;

/* the longest a worker or the floor goes without a look at every lease */
#define ASYNC_LEASE_FULL_LOOK_MS	60000

static void apply_lease_look(AsyncDatabase *db);

/* pg_async_consumers_shmem_size: one wait slot per backend */
Size
pg_async_consumers_shmem_size(void)
{
	return add_size(offsetof(ConsumerWaits, slots),
					mul_size(MaxBackends, sizeof(ConsumerWait)));
}

void
pg_async_consumers_shmem_init(void)
{
	bool		found;
	int			i;

	Waits = ShmemInitStruct("pg_async consumers", pg_async_consumers_shmem_size(), &found);
	if (found)
		return;
	pg_atomic_init_u32(&Waits->nwaiting, 0);
	Waits->nslots = MaxBackends;
	for (i = 0; i < MaxBackends; i++)
	{
		pg_atomic_init_u32(&Waits->slots[i].pid, 0);
		pg_atomic_init_u32(&Waits->slots[i].function_hash, 0);
		Waits->slots[i].latch = NULL;
	}
}

/* function_hash names a function of this database in a wait slot; never 0 */
static uint32
function_hash(const char *function)
{
	/* a function of the same name in another database is another function */
	return hash_combine(hash_bytes((const unsigned char *) function, strlen(function)),
						hash_bytes_uint32((uint32) MyDatabaseId)) | 1;
}

/* pg_async_consumer_wait_end gives back this backend's wait slot, if it holds one. */
void
pg_async_consumer_wait_end(void)
{
	if (MyWait == NULL)
		return;
	pg_atomic_write_u32(&MyWait->function_hash, 0);
	pg_atomic_write_u32(&MyWait->pid, 0);
	pg_atomic_fetch_sub_u32(&Waits->nwaiting, 1);
	MyWait = NULL;
}

static void
wait_cleanup(int code, Datum arg)
{
	pg_async_consumer_wait_end();
}

/*
 * pg_async_consumer_wait_begin takes a wait slot for 'function', before the claim that may
 * find nothing: a commit after that claim's snapshot then finds the slot,
 * and sets the latch the claim will sleep on.  Without shared memory (the
 * library not preloaded) there is none, and the claim only sleeps.
 */
void
pg_async_consumer_wait_begin(const char *function)
{
	int			i;

	if (Waits == NULL)
		return;
	if (!wait_cleanup_set)
	{
		before_shmem_exit(wait_cleanup, (Datum) 0);
		wait_cleanup_set = true;
	}
	for (i = 0; i < Waits->nslots; i++)
	{
		ConsumerWait *slot = &Waits->slots[i];
		uint32		expected = 0;

		if (pg_atomic_read_u32(&slot->pid) == 0 &&
			pg_atomic_compare_exchange_u32(&slot->pid, &expected, (uint32) MyProcPid))
		{
			slot->latch = MyLatch;
			pg_atomic_write_u32(&slot->function_hash, function_hash(function));
			pg_atomic_fetch_add_u32(&Waits->nwaiting, 1);
			MyWait = slot;
			break;
		}
	}
	pg_memory_barrier();
}

/*
 * pg_async_note_external_ready notes that the current transaction made jobs
 * of the external function ready (enqueued, retried, or room made under
 * its limit): its waiting consumers are woken at commit.
 */
void
pg_async_note_external_ready(const char *function)
{
	uint32		hash = function_hash(function);
	int			i;

	if (pending_all)
		return;
	for (i = 0; i < npending; i++)
		if (pending_hashes[i] == hash)
			return;
	if (npending == ASYNC_PENDING_EXTERNAL)
	{
		pending_all = true;
		return;
	}
	pending_hashes[npending++] = hash;
}

/*
 * pg_async_external_end_xact wakes, after a commit, the consumers waiting for
 * the functions the transaction made jobs ready for; the jobs are visible by
 * then.  After an abort it forgets them.
 */
void
pg_async_external_end_xact(bool commit)
{
	int			i;

	if (commit && pending_look != 0 && Waits != NULL)
		apply_lease_look(pg_async_my_db());
	pending_look = 0;
	if (commit && leased && Waits != NULL)
	{
		AsyncDatabase *db = pg_async_my_db();

		SpinLockAcquire(&db->lease_mutex);
		db->lease_floor = Min(db->lease_floor, first_deadline);
		db->lease_floor_since = Min(db->lease_floor_since, first_deadline);
		SpinLockRelease(&db->lease_mutex);
		pg_atomic_write_u32(&db->leases_exist, 1);
		/* an idle database gets a worker to fail them if they expire */
		pg_async_wake_at(db, first_deadline);
	}
	leased = false;
	first_deadline = PG_INT64_MAX;

	if (commit && (npending > 0 || pending_all) && Waits != NULL &&
		pg_atomic_read_u32(&Waits->nwaiting) > 0)
	{
		pg_memory_barrier();
		for (i = 0; i < Waits->nslots; i++)
		{
			ConsumerWait *slot = &Waits->slots[i];
			uint32		hash = pg_atomic_read_u32(&slot->function_hash);
			bool		wake = pending_all && hash != 0;
			int			k;

			for (k = 0; !wake && hash != 0 && k < npending; k++)
				wake = pending_hashes[k] == hash;
			if (wake && slot->latch != NULL)
				SetLatch(slot->latch);
		}
	}
	npending = 0;
	pending_all = false;
}

/*
 * pg_async_leases_to_expire tells the first worker of the database whether
 * to look for expired leases now: if a claim made leases since it last
 * found none, or every ASYNC_LEASE_FULL_LOOK_MS anyway, for leases no
 * claim made here (a restore).  It clears leases_exist before the look's transaction, whose
 * statements see every lease committed before that (external_end_xact
 * sets the flag after its commit), and async._expire_leases() sets the flag
 * again if leases remain.  Outside a transaction: most of the time, no
 * transaction is spent.
 */
bool
pg_async_leases_to_expire(TimestampTz now)
{
	static TimestampTz last_full_look = 0;

	if (Waits != NULL && pg_atomic_exchange_u32(&pg_async_my_db()->leases_exist, 0) == 0 &&
		!TimestampDifferenceExceeds(last_full_look, now, ASYNC_LEASE_FULL_LOOK_MS))
		return false;
	pg_memory_barrier();
	last_full_look = now;
	return true;
}

/*
 * pg_async_leases_may_have_expired tells a claim whether a lease of the
 * database may be past its deadline at 'now', so that it looks for those
 * of its function first: not before lease_floor (shmem.h).  Without shared
 * memory, or with an entry of the backend's own, always.
 */
bool
pg_async_leases_may_have_expired(TimestampTz now)
{
	AsyncDatabase *db;
	bool		may;

	if (Waits == NULL)
		return true;
	db = pg_async_my_db();
	if (db->backend_local)
		return true;
	SpinLockAcquire(&db->lease_mutex);
	may = now >= db->lease_floor;
	SpinLockRelease(&db->lease_mutex);
	return may;
}

/*
 * pg_async_lease_look_begin starts a look at every lease of the database,
 * before the snapshot of its statement: the deadlines that claims commit
 * from now on are kept apart (lease_floor_since).  Returns the look's
 * number, for pg_async_lease_look_end; 0, a look that may set no floor,
 * in a transaction whose snapshot was taken before (REPEATABLE READ or
 * SERIALIZABLE) or without a shared entry.
 */
uint64
pg_async_lease_look_begin(void)
{
	AsyncDatabase *db;
	uint64		look;

	if (Waits == NULL || IsolationUsesXactSnapshot())
		return 0;
	db = pg_async_my_db();
	if (db->backend_local)
		return 0;
	SpinLockAcquire(&db->lease_mutex);
	look = ++db->lease_look;
	db->lease_floor_since = PG_INT64_MAX;
	SpinLockRelease(&db->lease_mutex);
	return look;
}

/*
 * pg_async_lease_look_end: found_deadline is the first deadline of the
 * leases the look left (PG_INT64_MAX: none).  The floor is set when the
 * look's transaction commits, for the leases it failed come back if it
 * does not; and at most ASYNC_LEASE_FULL_LOOK_MS ahead, so that a lease
 * made where no claim's commit lowers the floor (copied into
 * async.running) is looked for within that time.
 */
void
pg_async_lease_look_end(uint64 look, TimestampTz found_deadline)
{
	if (look == 0)
		return;
	pending_look = look;
	pending_floor = Min(found_deadline,
						GetCurrentTimestamp() + (TimestampTz) ASYNC_LEASE_FULL_LOOK_MS * 1000);
}

/*
 * apply_lease_look sets the floor that this transaction's look found, at
 * its commit.  A claim that committed after the look's snapshot was taken
 * lowered lease_floor_since too, since its commit came after
 * pg_async_lease_look_begin.  A look that another overtook sets nothing.
 */
static void
apply_lease_look(AsyncDatabase *db)
{
	SpinLockAcquire(&db->lease_mutex);
	if (db->lease_look == pending_look)
		db->lease_floor = Min(pending_floor, db->lease_floor_since);
	SpinLockRelease(&db->lease_mutex);
}

/*
 * pg_async_lease_subxact_abort: a look in an aborted subtransaction may
 * have failed leases that are back
 */
void
pg_async_lease_subxact_abort(void)
{
	pending_look = 0;
}

/*
 * pg_async_leases_unknown: leases came that no claim's commit counted (a
 * COMMIT PREPARED): every claim looks until the next look.
 */
void
pg_async_leases_unknown(AsyncDatabase *db)
{
	SpinLockAcquire(&db->lease_mutex);
	db->lease_floor = 0;
	db->lease_floor_since = 0;
	SpinLockRelease(&db->lease_mutex);
	pg_atomic_write_u32(&db->leases_exist, 1);
}

/* pg_async_note_leases_made: this transaction's claims made a lease */
void
pg_async_note_leases_made(TimestampTz deadline)
{
	leased = true;
	first_deadline = Min(first_deadline, deadline);
}

/*
 * pg_async_note_leases_remain: leases are left, which the first worker
 * must look at again (see pg_async_leases_to_expire)
 */
void
pg_async_note_leases_remain(void)
{
	if (Waits != NULL)
		pg_atomic_write_u32(&pg_async_my_db()->leases_exist, 1);
}
