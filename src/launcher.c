/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The launcher of the background workers: one database worker per
 *	  database in event_sourcing.worker_databases.
 *
 * It starts workers for databases added to the list and stops those of
 * databases removed from it at reload, restarts a worker that exited (after
 * event_sourcing.worker_restart_interval), and skips names that are not
 * databases (logging each once).  A worker claims its database's slot in
 * shared memory (wait.c) when it starts, so a launcher that was itself
 * restarted adopts the workers that are still running instead of starting
 * more.  The launcher is connected to no database; it reads only the shared
 * catalog pg_database.  The database workers are worker.c.
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
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "compat.h"
#include "event_sourcing.h"

/* The launcher's view of one database worker. */
typedef struct EsWorkerSlot
{
	char		dbname[NAMEDATALEN];
	BackgroundWorkerHandle *handle; /* NULL: not started */
	TimestampTz started_at;	/* started, or found running */
	bool		adopted;		/* found running, started by another launcher */
	bool		wanted;
	bool		missing_logged;
} EsWorkerSlot;

PGDLLEXPORT void es_launcher_main(Datum main_arg);

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
 * stop_unlisted_workers
 *		Stop every worker whose database is not in names, whoever started
 *		it (a launcher that was restarted has no handle on the workers of its
 *		predecessor).  They also exit by themselves at the reload that
 *		removed their database; this covers one busy in a long round.
 */
static void
stop_unlisted_workers(List *names)
{
	char		dbnames[ES_MAX_WORKERS][NAMEDATALEN];
	pid_t		pids[ES_MAX_WORKERS];
	int			n = es_worker_holders(dbnames, pids, ES_MAX_WORKERS);

	for (int i = 0; i < n; i++)
	{
		if (es_worker_name_in_list(names, dbnames[i]))
			continue;
		ereport(DEBUG1,
				(errmsg_internal("event_sourcing: stopping the worker of database \"%s\" (PID %d), no longer listed",
								 dbnames[i], (int) pids[i])));
		(void) kill(pids[i], SIGTERM);
	}
}

/*
 * sync_workers
 *		Make the running workers match event_sourcing.worker_databases:
 *		exactly one per listed database.
 *
 * A database counts as served when a worker holds its slot in shared
 * memory, whoever started it, or when the worker we registered has not
 * stopped yet (it may not have claimed the slot yet).
 */
static void
sync_workers(EsWorkerSlot *slots, int *nslots)
{
	List	   *names = es_worker_listed_databases();
	ListCell   *lc;
	TimestampTz now = GetCurrentTimestamp();

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
		bool		registered = slot->handle != NULL &&
			GetBackgroundWorkerPid(slot->handle, &pid) != BGWH_STOPPED;

		if (!slot->wanted)
		{
			if (registered)
				TerminateBackgroundWorker(slot->handle);
			if (slot->handle != NULL)
				pfree(slot->handle);
			slots[i] = slots[--(*nslots)];
			i--;
			continue;
		}
		if (registered)
			continue;
		if (es_worker_holder(slot->dbname) != 0)
		{
			/* running, started by a previous launcher: adopt it */
			if (slot->handle == NULL && !slot->adopted)
			{
				slot->adopted = true;
				slot->started_at = now;
			}
			continue;
		}
		if ((slot->handle != NULL || slot->adopted) &&
			!TimestampDifferenceExceeds(slot->started_at, now, es_worker_restart_interval))
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
		slot->adopted = false;
		if (slot->handle != NULL)
			pfree(slot->handle);
		slot->handle = NULL;
		start_worker(slot);
	}
	stop_unlisted_workers(names);
	list_free_deep(names);
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
		es_worker_reload_config();
		sync_workers(slots, &nslots);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(es_worker_restart_interval, 1000), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
