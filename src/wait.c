/*-------------------------------------------------------------------------
 *
 * wait.c
 *	  es_wait: block until the safe global log moves past a position.
 *
 * With the library in shared_preload_libraries, a condition variable in
 * shared memory is broadcast whenever a transaction that appended commits,
 * and waiters sleep on it: they wake within microseconds of the commit.
 * Without preloading there is no shared memory to sleep on, and es_wait
 * polls the high-water mark every event_sourcing.wait_poll_interval
 * milliseconds (on the process latch, so query cancel still interrupts it).
 * Even when preloaded, a waiter rechecks at least once a second, which also
 * covers COMMIT PREPARED of a prepared appending transaction (committed by a
 * session that did not append, so nobody broadcasts).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "miscadmin.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "compat.h"
#include "event_sourcing.h"

/*
 * The wake-up of one database's background worker.  Appenders wake only
 * the worker of their own database, and only while it has async projections
 * (has_async); a transaction that changed a projection wakes it regardless.
 */
typedef struct EsWorkerWake
{
	Oid			dboid;			/* InvalidOid: slot free */
	pg_atomic_uint32 has_async;
	ConditionVariable cv;
} EsWorkerWake;

/* Shared state, present only when the library is preloaded. */
typedef struct EsWaitShared
{
	ConditionVariable appended;	/* broadcast when an appender commits */
	slock_t		mutex;			/* protects workers[].dboid changes */
	EsWorkerWake workers[ES_MAX_WORKERS];
} EsWaitShared;

static EsWaitShared *wait_shared = NULL;
static bool appended_in_xact = false;
static bool projections_changed_in_xact = false;

int			es_wait_poll_interval = 20;

#if PG_VERSION_NUM >= 150000
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/*
 * es_wait_shmem_request
 *		Reserve the shared state (PostgreSQL 15: from shmem_request_hook).
 */
static void
es_wait_shmem_request(void)
{
#if PG_VERSION_NUM >= 150000
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
#endif
	RequestAddinShmemSpace(MAXALIGN(sizeof(EsWaitShared)));
}

/*
 * es_wait_shmem_startup
 *		Create or attach to the shared state.
 */
static void
es_wait_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	wait_shared = ShmemInitStruct("event_sourcing wait", sizeof(EsWaitShared), &found);
	if (!found)
	{
		ConditionVariableInit(&wait_shared->appended);
		SpinLockInit(&wait_shared->mutex);
		for (int i = 0; i < ES_MAX_WORKERS; i++)
		{
			wait_shared->workers[i].dboid = InvalidOid;
			pg_atomic_init_u32(&wait_shared->workers[i].has_async, 1);
			ConditionVariableInit(&wait_shared->workers[i].cv);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * wake_worker
 *		Wake the background worker of this database, if it has async
 *		projections (or 'always').  The slots are read without the lock: a
 *		worker that registers at this moment misses one wake-up, and its
 *		idle interval covers it.
 */
static void
wake_worker(bool always)
{
	for (int i = 0; i < ES_MAX_WORKERS; i++)
	{
		EsWorkerWake *w = &wait_shared->workers[i];

		if (w->dboid == MyDatabaseId &&
			(always || pg_atomic_read_u32(&w->has_async) != 0))
			ConditionVariableBroadcast(&w->cv);
	}
}

/*
 * es_wait_xact_callback
 *		Wake the waiters when a transaction that appended commits.
 *
 * XACT_EVENT_COMMIT comes after the transaction became visible and before
 * it releases its locks; a woken waiter's high-water mark waits those few
 * microseconds for the locks.
 */
static void
es_wait_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wait_shared != NULL && (appended_in_xact || projections_changed_in_xact))
			{
				if (appended_in_xact)
					ConditionVariableBroadcast(&wait_shared->appended);
				wake_worker(projections_changed_in_xact);
			}
			appended_in_xact = false;
			projections_changed_in_xact = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			appended_in_xact = false;
			projections_changed_in_xact = false;
			break;
		default:
			break;
	}
}

/*
 * es_note_append
 *		Called by es_append: wake waiters when this transaction commits.
 */
void
es_note_append(void)
{
	appended_in_xact = true;
}

/*
 * es_note_projection_change
 *		Called when a projection is defined, skipped or rebuilt: wake this
 *		database's worker at commit, even if it had no async projection.
 */
void
es_note_projection_change(void)
{
	projections_changed_in_xact = true;
}

/*
 * release_worker_wake
 *		on_shmem_exit callback: free the worker's slot.
 */
static void
release_worker_wake(int code, Datum arg)
{
	EsWorkerWake *w = (EsWorkerWake *) DatumGetPointer(arg);

	SpinLockAcquire(&wait_shared->mutex);
	w->dboid = InvalidOid;
	SpinLockRelease(&wait_shared->mutex);
}

/*
 * es_worker_wake_register
 *		Claim the wake-up slot of this database's worker; NULL when the
 *		library was not preloaded or no slot is free (the worker then
 *		polls every idle interval).
 */
EsWorkerWake *
es_worker_wake_register(void)
{
	EsWorkerWake *result = NULL;

	if (wait_shared == NULL)
		return NULL;
	SpinLockAcquire(&wait_shared->mutex);
	for (int i = 0; i < ES_MAX_WORKERS; i++)
	{
		if (!OidIsValid(wait_shared->workers[i].dboid))
		{
			result = &wait_shared->workers[i];
			result->dboid = MyDatabaseId;
			break;
		}
	}
	SpinLockRelease(&wait_shared->mutex);
	if (result != NULL)
	{
		pg_atomic_write_u32(&result->has_async, 1);
		on_shmem_exit(release_worker_wake, PointerGetDatum(result));
	}
	return result;
}

/*
 * es_worker_wake_cv
 *		The condition variable a registered worker sleeps on.
 */
ConditionVariable *
es_worker_wake_cv(EsWorkerWake *w)
{
	return &w->cv;
}

/*
 * es_worker_wake_set_interest
 *		Whether appends in this database should wake the worker.
 */
void
es_worker_wake_set_interest(EsWorkerWake *w, bool has_async)
{
	pg_atomic_write_u32(&w->has_async, has_async ? 1 : 0);
}

/*
 * es_wait_init
 *		Hooks and settings; called from _PG_init.
 */
void
es_wait_init(void)
{
	DefineCustomIntVariable("event_sourcing.wait_poll_interval",
							"How often es_wait checks the log when the library is not preloaded.",
							"With event_sourcing in shared_preload_libraries, es_wait is woken by commits instead.",
							&es_wait_poll_interval,
							20, 1, 10000,
							PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	RegisterXactCallback(es_wait_xact_callback, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;
#if PG_VERSION_NUM >= 150000
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = es_wait_shmem_request;
#else
	es_wait_shmem_request();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = es_wait_shmem_startup;
}

/*
 * event_after
 *		Is there a committed event with position in (after, upto]?
 */
static bool
event_after(int64 after, int64 upto)
{
	const EsCatalog *cat = es_catalog();
	Relation	rel;
	Relation	index;
	IndexScanDesc scan;
	ScanKeyData keys[2];
	TupleTableSlot *slot;
	Snapshot	snap;
	bool		found;

	rel = table_open(cat->events, AccessShareLock);
	index = index_open(cat->position_index, AccessShareLock);
	slot = table_slot_create(rel, NULL);
	snap = RegisterSnapshot(GetLatestSnapshot());
	ScanKeyInit(&keys[0], 1, BTGreaterStrategyNumber, F_INT8GT, Int64GetDatum(after));
	ScanKeyInit(&keys[1], 1, BTLessEqualStrategyNumber, F_INT8LE, Int64GetDatum(upto));
	scan = index_beginscan(rel, index, snap, 2, 0);
	index_rescan(scan, keys, 2, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	index_endscan(scan);
	UnregisterSnapshot(snap);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
	table_close(rel, AccessShareLock);
	return found;
}

PG_FUNCTION_INFO_V1(es_wait);

/*
 * es_wait(after_position bigint, timeout_ms int DEFAULT 10000) RETURNS bigint
 *
 * Blocks until the safe global log holds an event after after_position, or
 * the timeout passes; returns the newest safe position, or after_position on
 * timeout.  Query cancel and statement_timeout interrupt it.
 */
Datum
es_wait(PG_FUNCTION_ARGS)
{
	int64		after;
	int32		timeout_ms;
	TimestampTz deadline;
	int64		result;
	const EsCatalog *cat;

	es_check_not_null(fcinfo, 0, "after_position");
	es_check_not_null(fcinfo, 1, "timeout_ms");
	after = PG_GETARG_INT64(0);
	timeout_ms = PG_GETARG_INT32(1);
	if (after < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("after_position must not be negative"),
				 errdetail("after_position was " INT64_FORMAT ".", after)));
	if (timeout_ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout_ms must not be negative"),
				 errdetail("timeout_ms was %d.", timeout_ms),
				 errhint("Use 0 to check without waiting.")));

	cat = es_catalog();
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	if (wait_shared != NULL)
		ConditionVariablePrepareToSleep(&wait_shared->appended);

	for (;;)
	{
		int64		mark;
		long		remaining;

		CHECK_FOR_INTERRUPTS();
		mark = es_high_water_mark(cat, after);
		/* the mark also moves past rolled-back positions: look for an event */
		if (mark > after && event_after(after, mark))
		{
			result = mark;
			break;
		}

		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (remaining <= 0)
		{
			result = after;
			break;
		}

		if (wait_shared != NULL)
			(void) ConditionVariableTimedSleep(&wait_shared->appended,
											   Min(remaining, 1000),
											   PG_WAIT_EXTENSION);
		else
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 Min(remaining, es_wait_poll_interval),
							 PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}

	if (wait_shared != NULL)
		ConditionVariableCancelSleep();
	PG_RETURN_INT64(result);
}
