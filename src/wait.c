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
#include "tcop/tcopprot.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
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
 * The slot of one database's background worker: which worker serves the
 * database (one at most: a worker claims the slot when it starts and gives
 * it back when it exits, so the launcher can see which workers run even
 * after it was itself restarted), and its wake-ups.
 *
 * Every commit that gives the worker work adds one to 'wakes' and then sets
 * the worker's latch.  The worker reads 'wakes' before a round and compares
 * after it: whatever happened to its latch during the round (lock waits and
 * pg_sleep reset it), a commit it may not have seen makes it go again at
 * once.  Appenders wake only the worker of their own database, and only
 * while it has async projections (has_async); a transaction that changed a
 * projection wakes it regardless.
 */
typedef struct EsWorkerWake
{
	/* protected by EsWaitShared.mutex; dboid and proc also read without it */
	Oid			dboid;			/* InvalidOid: slot free */
	pid_t		pid;			/* the worker holding the slot */
	PGPROC	   *proc;			/* its PGPROC, whose latch commits set */
	PGPROC	   *mark_proc;		/* its log mark writer (mark.c), or NULL */
	char		dbname[NAMEDATALEN];	/* as listed in worker_databases */
	pg_atomic_uint32 has_async;
	pg_atomic_uint64 wakes;
} EsWorkerWake;

/* Shared state, present only when the library is preloaded. */
typedef struct EsWaitShared
{
	ConditionVariable appended;	/* broadcast when an appender commits */
	slock_t		mutex;			/* protects the claims of workers[] */
	EsWorkerWake workers[ES_MAX_WORKERS];
} EsWaitShared;

static EsWaitShared *wait_shared = NULL;
static bool appended_in_xact = false;
static bool projections_changed_in_xact = false;

int			es_wait_poll_interval = 20;

/* longest poll of the published mark on a standby or logical replica (ms) */
#define ES_REMOTE_POLL_MS 5

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
			EsWorkerWake *w = &wait_shared->workers[i];

			w->dboid = InvalidOid;
			w->pid = 0;
			w->proc = NULL;
			w->mark_proc = NULL;
			w->dbname[0] = '\0';
			pg_atomic_init_u32(&w->has_async, 1);
			pg_atomic_init_u64(&w->wakes, 0);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * wake_worker
 *		Wake the background worker of this database, if it has async
 *		projections (or 'always'): count the wake-up, then set its latch.
 *
 * The slots are read without the lock.  A slot freed or claimed by another
 * database's worker meanwhile gets a spurious wake-up, which costs that
 * worker one empty round; a worker that claims this database's slot at this
 * moment reads the count before its first round, which sees this commit.
 */
static void
wake_worker(bool always, bool appended)
{
	for (int i = 0; i < ES_MAX_WORKERS; i++)
	{
		EsWorkerWake *w = &wait_shared->workers[i];
		PGPROC	   *proc;

		if (w->dboid != MyDatabaseId)
			continue;
		/* the log moved: its mark writer publishes the new bound */
		proc = ((volatile EsWorkerWake *) w)->mark_proc;
		if (appended && proc != NULL)
			SetLatch(&proc->procLatch);
		if (!(always || pg_atomic_read_u32(&w->has_async) != 0))
			continue;
		/* a full barrier: the commit is visible before the count moves */
		(void) pg_atomic_fetch_add_u64(&w->wakes, 1);
		proc = ((volatile EsWorkerWake *) w)->proc;
		if (proc != NULL)
			SetLatch(&proc->procLatch);
	}
}

/*
 * es_wait_xact_callback
 *		Wake the waiters when a transaction that appended commits.
 *
 * XACT_EVENT_COMMIT comes after the transaction became visible; position.c's
 * callback, which runs before this one, has already withdrawn the
 * transaction's claim on the log, so a woken waiter sees the bound move.
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
				wake_worker(projections_changed_in_xact, appended_in_xact);
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
 *		on_shmem_exit callback: give the worker's slot back.
 */
static void
release_worker_wake(int code, Datum arg)
{
	EsWorkerWake *w = (EsWorkerWake *) DatumGetPointer(arg);

	SpinLockAcquire(&wait_shared->mutex);
	w->dboid = InvalidOid;
	w->pid = 0;
	w->proc = NULL;
	w->mark_proc = NULL;
	w->dbname[0] = '\0';
	SpinLockRelease(&wait_shared->mutex);
}

/*
 * detach_mark_writer
 *		on_shmem_exit callback of a log mark writer: commits stop waking it.
 */
static void
detach_mark_writer(int code, Datum arg)
{
	SpinLockAcquire(&wait_shared->mutex);
	for (int i = 0; i < ES_MAX_WORKERS; i++)
	{
		EsWorkerWake *w = &wait_shared->workers[i];

		if (w->mark_proc == MyProc)
			w->mark_proc = NULL;
	}
	SpinLockRelease(&wait_shared->mutex);
}

/*
 * es_worker_attach_mark_writer
 *		Make the calling log mark writer the one commits in its database
 *		wake.  false when no database worker holds this database's slot (the
 *		writer's parent is gone: the writer exits).
 */
bool
es_worker_attach_mark_writer(void)
{
	bool		attached = false;

	if (wait_shared == NULL)
		return false;
	SpinLockAcquire(&wait_shared->mutex);
	for (int i = 0; i < ES_MAX_WORKERS; i++)
	{
		EsWorkerWake *w = &wait_shared->workers[i];

		if (w->dboid == MyDatabaseId)
		{
			w->mark_proc = MyProc;
			attached = true;
			break;
		}
	}
	SpinLockRelease(&wait_shared->mutex);
	if (attached)
		on_shmem_exit(detach_mark_writer, (Datum) 0);
	return attached;
}

/*
 * es_worker_claim
 *		Claim the slot of this database (dbname as listed in
 *		event_sourcing.worker_databases) for the calling worker, so that it
 *		is the only one serving the database and commits wake it.
 *
 * Returns the slot; NULL with *holder set to the worker that already serves
 * the database (the caller must exit); NULL with *holder 0 when the library
 * was not preloaded or every slot is taken (the caller then polls every
 * idle interval).
 */
EsWorkerWake *
es_worker_claim(const char *dbname, pid_t *holder)
{
	EsWorkerWake *result = NULL;

	*holder = 0;
	if (wait_shared == NULL)
		return NULL;
	SpinLockAcquire(&wait_shared->mutex);
	for (int i = 0; i < ES_MAX_WORKERS; i++)
	{
		EsWorkerWake *w = &wait_shared->workers[i];

		if (w->dboid == MyDatabaseId)
		{
			*holder = w->pid;
			result = NULL;
			break;
		}
		if (result == NULL && !OidIsValid(w->dboid))
			result = w;
	}
	if (result != NULL)
	{
		result->pid = MyProcPid;
		result->proc = MyProc;
		strlcpy(result->dbname, dbname, NAMEDATALEN);
		pg_atomic_write_u32(&result->has_async, 1);
		/* last: appenders find the slot by dboid, and then want proc */
		pg_write_barrier();
		result->dboid = MyDatabaseId;
	}
	SpinLockRelease(&wait_shared->mutex);
	if (result != NULL)
		on_shmem_exit(release_worker_wake, PointerGetDatum(result));
	return result;
}

/*
 * es_worker_holder
 *		The process ID of the worker serving database dbname (as listed in
 *		event_sourcing.worker_databases), 0 when none does; for the launcher.
 */
pid_t
es_worker_holder(const char *dbname)
{
	pid_t		pid = 0;

	if (wait_shared == NULL)
		return 0;
	SpinLockAcquire(&wait_shared->mutex);
	for (int i = 0; i < ES_MAX_WORKERS; i++)
	{
		EsWorkerWake *w = &wait_shared->workers[i];

		if (OidIsValid(w->dboid) && strcmp(w->dbname, dbname) == 0)
		{
			pid = w->pid;
			break;
		}
	}
	SpinLockRelease(&wait_shared->mutex);
	return pid;
}

/*
 * es_worker_holders
 *		The databases served by a worker and the workers' process IDs, at
 *		most max of them; returns how many.  For the launcher, which stops
 *		the workers of databases no longer listed, including those started
 *		by a previous launcher.
 */
int
es_worker_holders(char (*dbnames)[NAMEDATALEN], pid_t *pids, int max)
{
	int			n = 0;

	if (wait_shared == NULL)
		return 0;
	SpinLockAcquire(&wait_shared->mutex);
	for (int i = 0; i < ES_MAX_WORKERS && n < max; i++)
	{
		EsWorkerWake *w = &wait_shared->workers[i];

		if (OidIsValid(w->dboid))
		{
			memcpy(dbnames[n], w->dbname, NAMEDATALEN);
			pids[n] = w->pid;
			n++;
		}
	}
	SpinLockRelease(&wait_shared->mutex);
	return n;
}

/*
 * es_worker_wakes
 *		How many wake-ups the worker's slot has had; read before a round
 *		(the barrier keeps the round's reads after it) and compared after.
 */
uint64
es_worker_wakes(EsWorkerWake *w)
{
	uint64		v = pg_atomic_read_u64(&w->wakes);

	pg_memory_barrier();
	return v;
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
 * es_event_after
 *		Does the latest snapshot see an event with position in (after, upto]?
 *		(es_wait; mark.c, to tell an empty log from an unpublished mark.)
 */
bool
es_event_after(int64 after, int64 upto)
{
	ScanKeyData keys[2];

	ScanKeyInit(&keys[0], 1, BTGreaterStrategyNumber, F_INT8GT, Int64GetDatum(after));
	ScanKeyInit(&keys[1], 1, BTLessEqualStrategyNumber, F_INT8LE, Int64GetDatum(upto));
	return es_latest_lookup(es_catalog()->position_index, keys, 2, NULL, NULL);
}

/*
 * libpq/libpq.h declares it, but includes libpq-be.h, which needs the GSSAPI
 * headers of a server built with GSSAPI: declared here instead (PG 14+).
 */
extern bool pq_check_connection(void);

/*
 * es_check_client
 *		End the session when its client has gone (its socket closed: the
 *		process exited or was killed), as core does between statements and
 *		with client_connection_check_interval: a long wait must not keep a
 *		dead consumer's lease, or its locks, until it times out.
 */
void
es_check_client(void)
{
	if (MyProcPort != NULL && whereToSendOutput == DestRemote && !pq_check_connection())
		ereport(FATAL,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("connection to client lost")));
}

/*
 * es_poll_sleep
 *		One step of a polling wait (es_projection_wait, es_subscription_wait's
 *		wait for a lease, es_subscription_wait_acked): false once the
 *		deadline has passed; else end the session if its client has gone,
 *		sleep poll_ms (no further than the deadline, less when the latch is
 *		set) and return true.
 */
bool
es_poll_sleep(TimestampTz deadline, long poll_ms)
{
	long		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);

	if (remaining <= 0)
		return false;
	es_check_client();
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 Min(remaining, poll_ms), PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	return true;
}

/*
 * es_wait_for_log
 *		Block until the safe global log holds an event after 'after', or the
 *		deadline passes.  Returns true with *mark the newest safe position,
 *		or false at the deadline.  Query cancel and statement_timeout
 *		interrupt it.  (es_wait; es_subscription_wait.)
 */
bool
es_wait_for_log(int64 after, TimestampTz deadline, int64 *mark)
{
	const EsCatalog *cat = es_catalog();
	bool		remote;
	bool		sleep_on_cv;
	bool		found = false;

	/* on a standby or logical replica no commit here wakes us: poll the mark */
	remote = es_log_is_remote(cat);
	sleep_on_cv = wait_shared != NULL && !remote;
	if (sleep_on_cv)
		ConditionVariablePrepareToSleep(&wait_shared->appended);

	for (;;)
	{
		long		remaining;

		CHECK_FOR_INTERRUPTS();
		*mark = es_high_water_mark(cat, after);
		/* the mark also moves past rolled-back positions: look for an event */
		if (*mark > after && es_event_after(after, *mark))
		{
			found = true;
			break;
		}

		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (remaining <= 0)
			break;
		es_check_client();

		if (sleep_on_cv)
			(void) ConditionVariableTimedSleep(&wait_shared->appended,
											   Min(remaining, 1000),
											   PG_WAIT_EXTENSION);
		else
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 Min(remaining, remote ? Min(es_wait_poll_interval, ES_REMOTE_POLL_MS) :
								 es_wait_poll_interval),
							 PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}

	if (sleep_on_cv)
		ConditionVariableCancelSleep();
	return found;
}

PG_FUNCTION_INFO_V1(es_wait);

/*
 * es_wait(after_position bigint, timeout_ms int DEFAULT 10000) RETURNS bigint
 *
 * Blocks until the safe global log holds an event after after_position, or
 * the timeout passes; returns the newest safe position, or after_position on
 * timeout.
 */
Datum
es_wait(PG_FUNCTION_ARGS)
{
	int64		after;
	int32		timeout_ms;
	int64		mark;

	es_check_not_null(fcinfo, 0, "after_position");
	es_check_not_null(fcinfo, 1, "timeout_ms");
	after = PG_GETARG_INT64(0);
	timeout_ms = PG_GETARG_INT32(1);
	if (after < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("after_position must not be negative"),
				 errdetail("after_position was " INT64_FORMAT ".", after)));
	es_check_timeout(timeout_ms);

	if (es_wait_for_log(after,
						TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms),
						&mark))
		PG_RETURN_INT64(mark);
	PG_RETURN_INT64(after);
}

/* how often es_projection_wait looks at the projection's checkpoint */
#define ES_PROJECTION_POLL_MS 10

PG_FUNCTION_INFO_V1(es_projection_wait);

/*
 * es_projection_wait(name text, position bigint, timeout_ms int DEFAULT 10000)
 *		RETURNS boolean
 *
 * Read-your-writes: blocks until the projection has applied everything up
 * to the global position (true), or the timeout passes (false).  An inline
 * projection applies each event in its appending transaction, so it has
 * once the safe log reaches the position; an async one once its checkpoint
 * does.  A projection that failed at or before the position raises 55000
 * with its error: waiting would not help.  Reads the checkpoint afresh each
 * time, so it needs a READ COMMITTED transaction.
 */
Datum
es_projection_wait(PG_FUNCTION_ARGS)
{
	char	   *name = es_projection_name_arg(fcinfo, 0);
	int64		position;
	int32		timeout_ms;
	TimestampTz deadline;
	const EsCatalog *cat;

	es_check_not_null(fcinfo, 1, "position");
	es_check_not_null(fcinfo, 2, "timeout_ms");
	position = PG_GETARG_INT64(1);
	timeout_ms = PG_GETARG_INT32(2);
	es_check_timeout(timeout_ms);
	es_check_read_committed("es_projection_wait", "the projection's checkpoint move");
	cat = es_projections_available();
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);

	for (;;)
	{
		EsProjection p;

		CHECK_FOR_INTERRUPTS();
		if (es_projection_read(name, ES_LOCK_NONE, &p) != ES_FOUND)
			es_projection_not_found(name);
		if (p.is_inline ? es_high_water_mark(cat, position) >= position : p.position >= position)
			PG_RETURN_BOOL(true);
		if (!p.is_inline && p.failed && p.failed_position > 0 && p.failed_position <= position)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("projection \"%s\" failed at global position " INT64_FORMAT, name,
							p.failed_position),
					 errdetail("%s", p.last_error ? p.last_error : "(no message)"),
					 errhint("Fix the handler and run the projection again, or skip the event with es_projection_skip.")));
		if (!es_poll_sleep(deadline, ES_PROJECTION_POLL_MS))
			PG_RETURN_BOOL(false);
	}
}
