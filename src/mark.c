/*-------------------------------------------------------------------------
 *
 * mark.c
 *	  The published safe bound of the global log: written on the primary,
 *	  read on hot standbys and logical replicas.
 *
 * A standby cannot see which appends are in flight on the primary, and a
 * logical replica receives positions it never drew.  So on the primary, when
 * the library is preloaded, a background process (the log mark writer, one
 * per database in event_sourcing.worker_databases, started by that
 * database's worker) computes the safe bound (position.c) and stores it in
 * the one-row table es_log_mark, at most every event_sourcing.
 * log_mark_interval milliseconds and only when it moved.  Every position at
 * or below the stored mark belongs to a transaction that had committed or
 * aborted when the writer computed the mark, inside the transaction that
 * stores it, so its commit record precedes the mark's in the WAL.  Replay
 * on a standby, and a logical subscription's apply worker (which applies
 * transactions one at a time in commit order), therefore make all those
 * events visible no later than the mark: a reader that reads the mark with
 * a snapshot and then the log with a newer one sees every event up to the
 * mark.
 *
 * A database "replicates the log" when es_events is a table of one of its
 * subscriptions (pg_subscription_rel).  Then es_log_mark must be in the same
 * subscription (one apply worker, one commit order), both must have finished
 * their initial copy, and es_append is refused: the positions come from the
 * publisher.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/indexing.h"
#include "catalog/pg_subscription.h"
#include "catalog/pg_subscription_rel.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "compat.h"
#include "event_sourcing.h"

int			es_log_mark_interval = 10;

/*
 * How soon the writer looks again while an append in flight holds the bound
 * back: COMMIT PREPARED, or an appender's commit whose wake-up came before
 * the writer's latch was reset, wakes nobody.
 */
#define ES_MARK_HELD_RECHECK_MS 50

/* How this database gets its log, cached until pg_subscription_rel changes. */
typedef struct EsLogSource
{
	bool		valid;
	Oid			events;			/* es_events the answer is about */
	Oid			events_sub;		/* InvalidOid: not subscribed (local log) */
	char		events_state;	/* its srsubstate */
	Oid			mark_sub;
	char		mark_state;
} EsLogSource;

static EsLogSource source;

/* The writer's parent (a database worker) supervises it. */
static BackgroundWorkerHandle *writer_handle = NULL;
static TimestampTz writer_started_at = 0;

PGDLLEXPORT void es_log_mark_main(Datum main_arg);

/*
 * subscription_rel_callback
 *		A subscription gained or lost tables: look again.
 */
static void
subscription_rel_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	source.valid = false;
}

/*
 * subscribed_as
 *		The subscription of this database that carries relation relid, and
 *		its state (srsubstate); InvalidOid when none does.
 */
static Oid
subscribed_as(Oid relid, char *state)
{
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tup;
	Oid			subid = InvalidOid;

	*state = '\0';
	if (!OidIsValid(relid))
		return InvalidOid;
	rel = table_open(SubscriptionRelRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_subscription_rel_srrelid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, SubscriptionRelSrrelidSrsubidIndexId, true,
							  NULL, 1, &key);
	if (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_subscription_rel sr = (Form_pg_subscription_rel) GETSTRUCT(tup);

		subid = sr->srsubid;
		*state = sr->srsubstate;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return subid;
}

/*
 * log_source
 *		Whether (and how) es_events is replicated into this database.
 */
static const EsLogSource *
log_source(const EsCatalog *cat)
{
	if (!source.valid || source.events != cat->events)
	{
		EsLogSource s;

		s.events = cat->events;
		s.events_sub = subscribed_as(cat->events, &s.events_state);
		s.mark_sub = subscribed_as(cat->log_mark, &s.mark_state);
		s.valid = true;
		source = s;
	}
	return &source;
}

/*
 * es_log_is_remote
 *		Are the appenders of this database's log on another server (a hot
 *		standby's primary, a logical replica's publisher)?  Then the safe
 *		bound is the published mark.
 */
bool
es_log_is_remote(const EsCatalog *cat)
{
	if (RecoveryInProgress())
		return true;
	return OidIsValid(log_source(cat)->events_sub);
}

/*
 * es_check_log_writable
 *		Refuse to append to a log that a subscription replicates here: its
 *		positions are drawn on the publisher.  (A standby refuses writes by
 *		itself.)
 */
void
es_check_log_writable(void)
{
	const EsCatalog *cat = es_catalog();
	const EsLogSource *s = log_source(cat);

	if (OidIsValid(s->events_sub))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot append to a global log replicated from another server"),
				 errdetail("es_events in this database is a table of subscription \"%s\"; its positions are drawn on the publisher.",
						   get_subscription_name(s->events_sub, true) ?
						   get_subscription_name(s->events_sub, true) : "?"),
				 errhint("Append on the publisher, or drop the subscription and set the position sequence past the last replicated event to append here.")));
}

/*
 * not_readable
 *		Raise the error for a log that has no usable mark here.
 */
static void
not_readable(const char *detail, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 RecoveryInProgress() ?
			 errmsg("the global log cannot be read on this hot standby") :
			 errmsg("the global log cannot be read in this database yet"),
			 errdetail_internal("%s", detail),
			 errhint("%s", hint)));
}

#define ES_MARK_HINT "Add event_sourcing to shared_preload_libraries on the primary and list this database in event_sourcing.worker_databases there: its log mark writer publishes the safe bound. es_load and es_stream_version work without it."

/*
 * es_log_mark_read
 *		The mark published by the primary, read with the latest snapshot
 *		(the caller reads the log with a newer one).
 */
int64
es_log_mark_read(const EsCatalog *cat)
{
	Relation	rel;
	TableScanDesc scan;
	TupleTableSlot *slot;
	Snapshot	snap;
	int64		mark = -1;

	if (!OidIsValid(cat->log_mark))
		not_readable("The extension's schema here is older than 1.3: it has no es_log_mark table.",
					 "Run ALTER EXTENSION event_sourcing UPDATE on the primary.");

	if (!RecoveryInProgress())
	{
		const EsLogSource *s = log_source(cat);

		if (s->mark_sub != s->events_sub)
			not_readable("es_events is replicated here, but es_log_mark is not replicated by the same subscription.",
						 "Publish es_events and es_log_mark in one publication and subscribe to it with one subscription: the mark is only safe when it is applied in commit order with the events.");
		if (s->events_state != SUBREL_STATE_READY || s->mark_state != SUBREL_STATE_READY)
			not_readable("The subscription has not finished its initial copy of es_events and es_log_mark.",
						 "Wait until both have srsubstate 'r' in pg_subscription_rel.");
	}

	rel = table_open(cat->log_mark, AccessShareLock);
	slot = table_slot_create(rel, NULL);
	snap = RegisterSnapshot(GetLatestSnapshot());
	scan = table_beginscan(rel, snap, 0, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		Datum		d = slot_getattr(slot, 2, &isnull);

		if (!isnull)
			mark = Max(mark, DatumGetInt64(d));
	}
	table_endscan(scan);
	UnregisterSnapshot(snap);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, AccessShareLock);

	/* nothing published: an empty log is still safely empty */
	if (mark < 0 && !es_event_after(0, PG_INT64_MAX))
		return 0;
	if (mark < 0)
		not_readable(RecoveryInProgress() ?
					 "The primary has not published a safe bound of the global log (es_log_mark is empty)." :
					 "The publisher has not published a safe bound of the global log (es_log_mark is empty).",
					 ES_MARK_HINT);
	return mark;
}

/*
 * es_log_mark_init
 *		Settings and the invalidation callback; from _PG_init.
 */
void
es_log_mark_init(void)
{
	DefineCustomIntVariable("event_sourcing.log_mark_interval",
							"Shortest time between two publications of the safe bound of the global log.",
							"The log mark writer publishes the bound for hot standbys and logical "
							"replicas when the log moved, at most this often.",
							&es_log_mark_interval, 10, 1, 60 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	CacheRegisterSyscacheCallback(SUBSCRIPTIONRELMAP, subscription_rel_callback, (Datum) 0);
}

/*
 * stop_writer
 *		on_shmem_exit callback of the database worker: its writer goes too.
 */
static void
stop_writer(int code, Datum arg)
{
	if (writer_handle != NULL)
		TerminateBackgroundWorker(writer_handle);
}

/*
 * es_log_mark_supervise
 *		Called by a database worker in each loop: start its log mark writer,
 *		or start it again after event_sourcing.worker_restart_interval when
 *		it exited.
 */
void
es_log_mark_supervise(const char *dbname)
{
	BackgroundWorker worker;
	pid_t		pid;
	TimestampTz now = GetCurrentTimestamp();
	static bool exit_callback_set = false;

	if (writer_handle != NULL)
	{
		if (GetBackgroundWorkerPid(writer_handle, &pid) != BGWH_STOPPED)
			return;
		if (!TimestampDifferenceExceeds(writer_started_at, now, es_worker_restart_interval))
			return;
		pfree(writer_handle);
		writer_handle = NULL;
	}
	if (!exit_callback_set)
	{
		on_shmem_exit(stop_writer, (Datum) 0);
		exit_callback_set = true;
	}

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;	/* the database worker does */
	worker.bgw_notify_pid = MyProcPid;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "event_sourcing");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "es_log_mark_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "event_sourcing log mark writer for database %s", dbname);
	snprintf(worker.bgw_type, BGW_MAXLEN, "event_sourcing log mark writer");
	strlcpy(worker.bgw_extra, dbname, BGW_EXTRALEN);

	writer_started_at = now;
	if (!RegisterDynamicBackgroundWorker(&worker, &writer_handle))
	{
		writer_handle = NULL;
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start the event_sourcing log mark writer for database \"%s\"", dbname),
				 errdetail("Hot standbys and logical replicas cannot read this database's global log without it."),
				 errhint("Raise max_worker_processes: each database in event_sourcing.worker_databases needs two, plus one for the launcher.")));
	}
}

/*
 * publish
 *		One transaction: when the safe bound moved past *published, store it.
 *		Returns whether it stored one.
 */
static bool
publish(int64 *published, bool *held_back)
{
	static SPIPlanPtr plan = NULL;
	static uint64 plan_generation = 0;
	bool		stored = false;

	*held_back = false;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());

	if (OidIsValid(get_extension_oid("event_sourcing", true)))
	{
		const EsCatalog *cat = es_catalog();

		if (OidIsValid(cat->log_mark) && !es_log_is_remote(cat))
		{
			int64		mark = es_high_water_mark(cat, Max(*published, 0));

			/* an append in flight (perhaps prepared, whose commit wakes nobody) */
			*held_back = es_log_last_position(cat) > mark;

			/*
			 * Never a mark of 0: it says nothing, and a row written before this
			 * database subscribes to another's log would collide with the
			 * subscription's initial copy of es_log_mark.
			 */
			if (mark > Max(*published, 0))
			{
				Datum		arg = Int64GetDatum(mark);
				Oid			argtype = INT8OID;

				if (SPI_connect() != SPI_OK_CONNECT)
					elog(ERROR, "SPI_connect failed");
				if (plan == NULL || plan_generation != es_catalog_generation())
				{
					char	   *table = es_qualified_name("es_log_mark");
					char	   *sql = psprintf("INSERT INTO %s AS m (id, position, published_at) "
											   "VALUES (true, $1, pg_catalog.statement_timestamp()) "
											   "ON CONFLICT (id) DO UPDATE SET "
											   "position = pg_catalog.int8larger(m.position, excluded.position), "
											   "published_at = excluded.published_at",
											   table);

					if (plan != NULL)
						SPI_freeplan(plan);
					plan = SPI_prepare(sql, 1, &argtype);
					if (plan == NULL || SPI_keepplan(plan) != 0)
						elog(ERROR, "could not prepare the log mark statement");
					plan_generation = es_catalog_generation();
				}
				if (SPI_execute_plan(plan, &arg, NULL, false, 0) != SPI_OK_INSERT)
					elog(ERROR, "could not store the log mark");
				SPI_finish();
				*published = mark;
				stored = true;
			}
		}
	}

	PopActiveSnapshot();
	CommitTransactionCommand();
	return stored;
}

/*
 * es_log_mark_main
 *		Entry point of a log mark writer; bgw_extra names the database.
 *
 * Woken by the commit of every append in its database (wait.c); after each
 * publication it sleeps event_sourcing.log_mark_interval, so it writes at
 * most that often however fast the log moves.  It rechecks every 50 ms
 * while an append in flight holds the bound back (COMMIT PREPARED of an
 * append wakes nobody), and once a second otherwise.  An error ends it;
 * its database worker starts it again.
 */
void
es_log_mark_main(Datum main_arg)
{
	char		dbname[NAMEDATALEN];
	int64		published = -1;
	bool		held_back;

	strlcpy(dbname, MyBgworkerEntry->bgw_extra, NAMEDATALEN);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(dbname, NULL, 0);
	pgstat_report_appname("event_sourcing log mark writer");
	/*
	 * Flushed at commit, so that standbys receive the mark at once (a WAL
	 * sender sends only flushed WAL; an asynchronous commit would wait for
	 * the WAL writer, up to wal_writer_delay), but never waiting for a
	 * synchronous standby: at most one flush per log_mark_interval.
	 */
	SetConfigOption("synchronous_commit", "local", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_isolation", "read committed",
					PGC_SUSET, PGC_S_OVERRIDE);

	if (!es_worker_attach_mark_writer())
		proc_exit(0);

	for (;;)
	{
		bool		stored;

		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		(void) es_worker_reload_config();

		stored = publish(&published, &held_back);
		pgstat_report_stat(false);

		if (stored)
		{
			/* at most one publication per interval */
			(void) WaitLatch(NULL, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 es_log_mark_interval, PG_WAIT_EXTENSION);
			CHECK_FOR_INTERRUPTS();
			continue;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 held_back ? ES_MARK_HELD_RECHECK_MS : 1000, PG_WAIT_EXTENSION);
	}
}
