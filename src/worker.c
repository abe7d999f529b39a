/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The background workers that drive async projections.
 *
 * With the library in shared_preload_libraries, a launcher starts one
 * worker per database named in event_sourcing.worker_databases (reloadable):
 * it starts workers for databases added to the list, stops those of
 * databases removed from it, restarts a worker that exited (after
 * event_sourcing.worker_restart_interval), and skips names that are not
 * databases (logging each once), so a dropped database leaves the others
 * running.  The launcher is connected to no database; it reads only the
 * shared catalog pg_database.
 *
 * Each database worker runs rounds of es_projection_run_all: every async
 * projection with events past its checkpoint gets up to
 * event_sourcing.worker_max_events of them, each projection in the same
 * transaction as its checkpoint.  Between rounds it sleeps on its database's
 * condition variable, which transactions appending to that database
 * broadcast at commit while it has async projections, and transactions that
 * define, skip or rebuild a projection broadcast regardless (wait.c): it
 * starts within microseconds of a commit, and sleeps at most
 * event_sourcing.worker_idle_interval.  A failed handler only marks its
 * projection failed; the worker retries a failed projection every
 * event_sourcing.worker_retry_interval.  Any other error is logged, the
 * transaction aborted, and the worker carries on after the retry interval;
 * a database without the extension (or with version 1.0) is just checked
 * again later.  SIGTERM stops either process at its next wait.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"
#include "utils/wait_event.h"

#include "compat.h"
#include "event_sourcing.h"

/* settings */
static char *worker_databases = NULL;
static int	worker_max_events = 1000;
static int	worker_idle_interval = 1000;
static int	worker_retry_interval = 10000;
static int	worker_restart_interval = 5000;

/* The launcher's view of one database worker. */
typedef struct EsWorkerSlot
{
	char		dbname[NAMEDATALEN];
	BackgroundWorkerHandle *handle; /* NULL: not started */
	TimestampTz started_at;
	bool		wanted;
	bool		missing_logged;
} EsWorkerSlot;


PGDLLEXPORT void es_launcher_main(Datum main_arg);
PGDLLEXPORT void es_worker_main(Datum main_arg);

/*
 * es_worker_init
 *		Settings, and the launcher when the library is being preloaded;
 *		called from _PG_init.
 */
void
es_worker_init(void)
{
	BackgroundWorker worker;

	DefineCustomStringVariable("event_sourcing.worker_databases",
							   "Databases whose async projections the background worker runs.",
							   "A comma-separated list of database names; empty runs none. "
							   "Needs event_sourcing in shared_preload_libraries.",
							   &worker_databases, "",
							   PGC_SIGHUP, GUC_LIST_INPUT,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("event_sourcing.worker_max_events",
							"Events the background worker applies to one projection per transaction.",
							NULL, &worker_max_events, 1000, 1, INT_MAX,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("event_sourcing.worker_idle_interval",
							"Longest time the background worker sleeps between rounds.",
							"It is woken at once by the commit of an append.",
							&worker_idle_interval, 1000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("event_sourcing.worker_retry_interval",
							"How often the background worker retries a failed projection, or a round that failed.",
							NULL, &worker_retry_interval, 10000, 10, 24 * 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("event_sourcing.worker_restart_interval",
							"How long the launcher waits before starting a database worker again after it exited.",
							NULL, &worker_restart_interval, 5000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "event_sourcing");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "es_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "event_sourcing launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "event_sourcing launcher");
	RegisterBackgroundWorker(&worker);
}

/*
 * reload_config
 *		Re-read the configuration file after SIGHUP.
 */
static void
reload_config(void)
{
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

/*
 * database_exists
 *		Is there a database of this name that accepts connections?
 *
 * The launcher is connected to no database, so it may read only shared
 * catalogs, and only with heap scans (as the logical replication launcher
 * reads pg_subscription).
 */
static bool
database_exists(const char *dbname)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	bool		exists = false;

	StartTransactionCommand();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (strcmp(NameStr(db->datname), dbname) == 0)
		{
			exists = db->datallowconn;
			break;
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return exists;
}

/*
 * start_worker
 *		Register the dynamic worker of one database.
 */
static void
start_worker(EsWorkerSlot *slot)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;	/* the launcher does */
	worker.bgw_notify_pid = MyProcPid;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "event_sourcing");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "es_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "event_sourcing worker for database %s", slot->dbname);
	snprintf(worker.bgw_type, BGW_MAXLEN, "event_sourcing worker");
	strlcpy(worker.bgw_extra, slot->dbname, BGW_EXTRALEN);

	slot->started_at = GetCurrentTimestamp();
	if (!RegisterDynamicBackgroundWorker(&worker, &slot->handle))
	{
		slot->handle = NULL;
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start the event_sourcing worker for database \"%s\"", slot->dbname),
				 errhint("Raise max_worker_processes: it needs one more than the number of databases in event_sourcing.worker_databases.")));
	}
}

/*
 * sync_workers
 *		Make the running workers match event_sourcing.worker_databases.
 */
static void
sync_workers(EsWorkerSlot *slots, int *nslots)
{
	char	   *raw = pstrdup(worker_databases ? worker_databases : "");
	List	   *names = NIL;
	ListCell   *lc;
	TimestampTz now = GetCurrentTimestamp();

	if (!SplitIdentifierString(raw, ',', &names))
	{
		ereport(LOG,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid list syntax in event_sourcing.worker_databases")));
		names = NIL;
	}

	for (int i = 0; i < *nslots; i++)
		slots[i].wanted = false;
	foreach(lc, names)
	{
		char	   *name = (char *) lfirst(lc);
		int			i;

		for (i = 0; i < *nslots; i++)
			if (strcmp(slots[i].dbname, name) == 0)
				break;
		if (i == *nslots)
		{
			if (*nslots == ES_MAX_WORKERS)
				continue;
			memset(&slots[i], 0, sizeof(EsWorkerSlot));
			strlcpy(slots[i].dbname, name, NAMEDATALEN);
			(*nslots)++;
		}
		slots[i].wanted = true;
	}

	for (int i = 0; i < *nslots; i++)
	{
		EsWorkerSlot *slot = &slots[i];
		pid_t		pid;
		bool		running = slot->handle != NULL &&
			GetBackgroundWorkerPid(slot->handle, &pid) != BGWH_STOPPED;

		if (!slot->wanted)
		{
			if (running)
				TerminateBackgroundWorker(slot->handle);
			if (slot->handle != NULL)
				pfree(slot->handle);
			slots[i] = slots[--(*nslots)];
			i--;
			continue;
		}
		if (running)
			continue;
		if (slot->handle != NULL &&
			!TimestampDifferenceExceeds(slot->started_at, now, worker_restart_interval))
			continue;
		if (!database_exists(slot->dbname))
		{
			if (!slot->missing_logged)
				ereport(LOG,
						(errmsg("event_sourcing: database \"%s\" in event_sourcing.worker_databases does not exist",
								slot->dbname)));
			slot->missing_logged = true;
			continue;
		}
		slot->missing_logged = false;
		if (slot->handle != NULL)
			pfree(slot->handle);
		slot->handle = NULL;
		start_worker(slot);
	}
	list_free(names);
	pfree(raw);
}

/*
 * es_launcher_main
 *		Entry point of the launcher.
 */
void
es_launcher_main(Datum main_arg)
{
	EsWorkerSlot *slots;
	int			nslots = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("event_sourcing launcher");

	slots = MemoryContextAllocZero(TopMemoryContext, sizeof(EsWorkerSlot) * ES_MAX_WORKERS);
	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		reload_config();
		sync_workers(slots, &nslots);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(worker_restart_interval, 1000), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/*
 * run_round
 *		One transaction running every async projection that has work;
 *		returns the events applied (0 when the extension is not there) and
 *		in *retry_due_ms when a failed projection is next due (-1: none).
 */
static int64
run_round(long *retry_due_ms, bool *has_async)
{
	int64		applied = 0;

	*retry_due_ms = -1;
	*has_async = false;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "event_sourcing: running async projections");

	if (OidIsValid(get_extension_oid("event_sourcing", true)) &&
		OidIsValid(es_catalog()->projections))
		applied = es_projection_run_all(worker_max_events, worker_retry_interval,
										retry_due_ms, has_async);

	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return applied;
}

/*
 * es_worker_main
 *		Entry point of a database worker; bgw_extra names the database.
 */
void
es_worker_main(Datum main_arg)
{
	char		dbname[NAMEDATALEN];
	EsWorkerWake *wake;
	ConditionVariable *cv;
	MemoryContext round_cxt;

	strlcpy(dbname, MyBgworkerEntry->bgw_extra, NAMEDATALEN);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(dbname, NULL, 0);
	pgstat_report_appname("event_sourcing worker");
	/* checkpoints assume READ COMMITTED rounds, whatever the default is */
	SetConfigOption("default_transaction_isolation", "read committed",
					PGC_SUSET, PGC_S_OVERRIDE);

	wake = es_worker_wake_register();
	cv = wake != NULL ? es_worker_wake_cv(wake) : NULL;
	round_cxt = AllocSetContextCreate(TopMemoryContext, "event_sourcing worker round",
									  ALLOCSET_DEFAULT_SIZES);
	ereport(LOG, (errmsg("event_sourcing worker started for database \"%s\"", dbname)));

	for (;;)
	{
		int64		applied = 0;
		long		retry_due_ms = -1;
		bool		has_async = true;
		long		sleep_ms;

		CHECK_FOR_INTERRUPTS();
		reload_config();

		/* prepared before the round: a commit during it is not missed */
		if (cv != NULL)
			ConditionVariablePrepareToSleep(cv);

		MemoryContextSwitchTo(round_cxt);
		PG_TRY();
		{
			applied = run_round(&retry_due_ms, &has_async);
		}
		PG_CATCH();
		{
			/* log it, clean up, and try again later */
			EmitErrorReport();
			AbortCurrentTransaction();
			FlushErrorState();
			pgstat_report_activity(STATE_IDLE, NULL);
			retry_due_ms = worker_retry_interval;
			has_async = true;
		}
		PG_END_TRY();
		/* appends in this database need not wake us while there is no async projection */
		if (wake != NULL)
			es_worker_wake_set_interest(wake, has_async);
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(round_cxt);

		if (applied > 0)
		{
			/* there may be more: go again at once */
			if (cv != NULL)
				ConditionVariableCancelSleep();
			continue;
		}

		/* until a commit wakes us, the idle interval, or a retry is due */
		sleep_ms = worker_idle_interval;
		if (retry_due_ms >= 0 && retry_due_ms < sleep_ms)
			sleep_ms = retry_due_ms;
		if (cv != NULL)
		{
			(void) ConditionVariableTimedSleep(cv, sleep_ms, PG_WAIT_EXTENSION);
			ConditionVariableCancelSleep();
		}
		else
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 sleep_ms, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}
}
