/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The background workers that drive async projections, and the
 *	  settings they share with the launcher (launcher.c).
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
 * There is never more than one worker per database: a worker claims its
 * database's slot in shared memory (wait.c) when it starts, and exits if
 * another worker holds it.  The launcher counts a worker that holds a slot
 * as running whoever started it, so a launcher restarted by the postmaster
 * adopts the workers of its predecessor instead of starting more, and stops
 * them (by process ID) when their database leaves the list; a worker also
 * exits by itself at a reload that removed its database.
 *
 * Each database worker runs rounds of es_projection_run_all: every async
 * projection with events past its checkpoint gets up to
 * event_sourcing.worker_max_events of them, each projection in the same
 * transaction as its checkpoint.  Between rounds it sleeps on its latch,
 * which transactions appending to that database set at commit while it has
 * async projections, and transactions that define, skip or rebuild a
 * projection set regardless, after counting the wake-up in the slot
 * (wait.c).  The worker reads that count before a round and goes again at
 * once if it moved during the round, whatever happened to its latch
 * meanwhile (lock waits and pg_sleep reset it), so no commit waits for the
 * idle interval; with no commit it sleeps event_sourcing.worker_idle_interval.
 * In a database that receives the log by logical replication, where the
 * apply worker's inserts wake nobody, it looks again every 50 ms while it
 * has async projections.
 *
 * A failed handler only marks its projection failed; the worker retries a
 * failed projection every event_sourcing.worker_retry_interval.  When a
 * round fails with an error (a projection whose handler was dropped, a lock
 * timeout, ...), the worker runs each async projection in a transaction of
 * its own to find the culprit: the others go on, and a projection whose run
 * raises an error is logged and set aside for the retry interval, then run
 * again (one log entry per retry).  An error not tied to one projection is
 * logged, and the worker waits the retry interval before the next round.
 * Errors never end the worker.  A database without the extension (or with
 * version 1.0) is just checked again later.  SIGTERM stops either process at
 * its next wait.
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
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"
#include "utils/wait_event.h"

#include "compat.h"
#include "event_sourcing.h"

/* settings */
char	   *es_worker_databases = NULL;
static int	worker_max_events = 1000;
static int	worker_idle_interval = 1000;
static int	worker_retry_interval = 10000;
int			es_worker_restart_interval = 5000;

/* A projection whose run raised an error, set aside until 'due'. */
typedef struct EsSetAside
{
	char	   *name;
	TimestampTz due;
} EsSetAside;

/* What one round of a database worker did. */
typedef struct EsRound
{
	int64		applied;		/* events applied */
	long		retry_due_ms;	/* until a failed projection is due; -1: none */
	bool		has_async;		/* the database has async projections */
	bool		failed;			/* an error not tied to one projection */
	bool		remote;			/* the log is a logical replica's (mark.c) */
} EsRound;

/*
 * How often a worker looks for new events when its database receives the
 * log by logical replication: applied rows wake nobody.
 */
#define ES_WORKER_REMOTE_POLL_MS 50

PGDLLEXPORT void es_launcher_main(Datum main_arg);
PGDLLEXPORT void es_worker_main(Datum main_arg);

/* the database worker's state */
static char worker_dbname[NAMEDATALEN];
static EsWorkerWake *worker_wake = NULL;
static List *set_aside = NIL;	/* of EsSetAside, in set_aside_cxt */
static MemoryContext set_aside_cxt = NULL;

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
							   &es_worker_databases, "",
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
							NULL, &es_worker_restart_interval, 5000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomIntVariable("event_sourcing.retention_interval",
							"How often the background worker applies the retention policies (es_apply_retention).",
							"0 turns it off; es_apply_retention can still be called.",
							&es_retention_interval, 60, 0, 7 * 24 * 3600,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("event_sourcing.retention_duty_cycle",
							"Share of its time, in percent, the background worker gives a retention backlog.",
							"After a full batch it pauses (100 - share) / share times as long as the batch took, leaving the rest to appenders; 100 does not pause.",
							&es_retention_duty_cycle, 50, 1, 100,
							PGC_SIGHUP, 0, NULL, NULL, NULL);

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
 * es_worker_reload_config
 *		Re-read the configuration file after SIGHUP; returns whether it did.
 */
bool
es_worker_reload_config(void)
{
	if (!ConfigReloadPending)
		return false;
	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
	return true;
}

/*
 * es_worker_listed_databases
 *		The names in event_sourcing.worker_databases (palloc'd); NIL, after
 *		logging it, when the list does not parse.
 */
List *
es_worker_listed_databases(void)
{
	char	   *raw = pstrdup(es_worker_databases ? es_worker_databases : "");
	List	   *names = NIL;
	List	   *result = NIL;
	ListCell   *lc;

	if (!SplitIdentifierString(raw, ',', &names))
		ereport(LOG,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid list syntax in event_sourcing.worker_databases")));
	else
	{
		/* the names point into raw: copy them */
		foreach(lc, names)
			result = lappend(result, pstrdup((char *) lfirst(lc)));
	}
	list_free(names);
	pfree(raw);
	return result;
}

/*
 * es_worker_name_in_list
 *		Is dbname one of the names?
 */
bool
es_worker_name_in_list(List *names, const char *dbname)
{
	ListCell   *lc;

	foreach(lc, names)
	{
		if (strcmp((char *) lfirst(lc), dbname) == 0)
			return true;
	}
	return false;
}

/*
 * worker_reload
 *		A database worker's reload: re-read the configuration, and exit when
 *		its database is no longer listed.  Returns whether it reloaded.
 */
static bool
worker_reload(void)
{
	List	   *names;
	bool		listed;

	if (!es_worker_reload_config())
		return false;
	names = es_worker_listed_databases();
	listed = es_worker_name_in_list(names, worker_dbname);
	list_free_deep(names);
	if (!listed)
	{
		ereport(LOG,
				(errmsg("event_sourcing worker for database \"%s\" stops: the database is no longer in event_sourcing.worker_databases",
						worker_dbname)));
		proc_exit(0);
	}
	return true;
}

/*
 * emit_error
 *		Log the error being handled, abort the transaction and clean up, so
 *		that the worker can go on; called in a PG_CATCH block, in a memory
 *		context that outlives the transaction.
 */
static void
emit_error(void)
{
	EmitErrorReport();
	AbortCurrentTransaction();
	FlushErrorState();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * extension_ready
 *		Does this database have the extension, at a version with projections?
 *		Called in a transaction.
 */
static bool
extension_ready(void)
{
	return OidIsValid(get_extension_oid("event_sourcing", true)) &&
		OidIsValid(es_catalog()->projections);
}

/*
 * run_all_round
 *		One transaction running every async projection that has work
 *		(es_projection_run_all); fills in applied, retry_due_ms, has_async.
 *		An error propagates, the transaction still open.
 */
static void
run_all_round(EsRound *round)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "event_sourcing: running async projections");

	if (extension_ready())
	{
		round->applied = es_projection_run_all(worker_max_events, worker_retry_interval,
											   &round->retry_due_ms, &round->has_async);
		round->remote = es_log_is_remote(es_catalog());
	}

	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * set_aside_find
 *		The entry of projection name in set_aside, NULL when it has none.
 */
static EsSetAside *
set_aside_find(const char *name)
{
	ListCell   *lc;

	foreach(lc, set_aside)
	{
		EsSetAside *e = (EsSetAside *) lfirst(lc);

		if (strcmp(e->name, name) == 0)
			return e;
	}
	return NULL;
}

/*
 * set_aside_forget
 *		Drop the entry of projection name from set_aside, if it has one.
 */
static void
set_aside_forget(const char *name)
{
	EsSetAside *e = set_aside_find(name);

	if (e != NULL)
	{
		set_aside = list_delete_ptr(set_aside, e);
		pfree(e->name);
		pfree(e);
	}
}

/*
 * list_async
 *		In a transaction of its own, the async projections (names) and for
 *		each (waiting_ms) > 0: failed, due for a retry in that many
 *		milliseconds; 0: has work; < 0: nothing to do; and the statement that
 *		runs one (*run_sql).  All in the caller's memory context.  Returns
 *		false, the error logged, when that fails.
 */
static bool
list_async(List **names, List **waiting_ms, char **run_sql)
{
	MemoryContext cxt = CurrentMemoryContext;

	*names = NIL;
	*waiting_ms = NIL;
	*run_sql = NULL;
	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "event_sourcing: listing async projections");
		if (extension_ready())
		{
			Datum		arg = Int32GetDatum(worker_retry_interval);
			Oid			argtype = INT4OID;
			char	   *sql;

			sql = psprintf("SELECT name, "
						   "CASE WHEN status OPERATOR(pg_catalog.=) 'failed' THEN "
						   "pg_catalog.ceil(1000 * pg_catalog.date_part('epoch', updated_at OPERATOR(pg_catalog.-) pg_catalog.clock_timestamp())) "
						   "OPERATOR(pg_catalog.+) $1 ELSE 0 END, "
						   "position OPERATOR(pg_catalog.<) (SELECT COALESCE(pg_catalog.max(global_position), 0) FROM %s) "
						   "FROM %s WHERE mode OPERATOR(pg_catalog.=) 'async' ORDER BY name",
						   es_qualified_name("es_events"),
						   es_qualified_name("es_projection_defs"));
			if (SPI_connect() != SPI_OK_CONNECT)
				elog(ERROR, "SPI_connect failed");
			if (SPI_execute_with_args(sql, 1, &argtype, &arg, NULL, true, 0) != SPI_OK_SELECT)
				elog(ERROR, "listing the async projections failed");
			for (uint64 i = 0; i < SPI_processed; i++)
			{
				HeapTuple	tup = SPI_tuptable->vals[i];
				TupleDesc	desc = SPI_tuptable->tupdesc;
				bool		isnull;
				char	   *name = SPI_getvalue(tup, desc, 1);
				double		wait = DatumGetFloat8(SPI_getbinval(tup, desc, 2, &isnull));
				bool		has_work = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
				MemoryContext old = MemoryContextSwitchTo(cxt);

				*names = lappend(*names, pstrdup(name));
				*waiting_ms = lappend_int(*waiting_ms,
										  wait > 0 ? (int) Min(wait, (double) INT_MAX) :
										  has_work ? 0 : -1);
				MemoryContextSwitchTo(old);
			}
			*run_sql = MemoryContextStrdup(cxt,
										   psprintf("SELECT %s($1, $2)",
													es_qualified_name("es_projection_run")));
			SPI_finish();
		}
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		emit_error();
		return false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	return true;
}

/*
 * run_counted
 *		Run one statement that returns a bigint in a transaction of its own,
 *		shown as 'activity' in pg_stat_activity.  make_sql builds the
 *		statement inside the transaction (catalog lookups need one) and
 *		returns NULL when there is nothing to run here (*result is then 0).
 *		Returns false, the error logged, when the statement raises one.
 */
static bool
run_counted(const char *(*make_sql) (const void *arg), const void *arg,
			int nargs, Oid *argtypes, Datum *args, const char *activity,
			int64 *result)
{
	MemoryContext cxt = CurrentMemoryContext;

	*result = 0;
	PG_TRY();
	{
		const char *sql;
		bool		isnull;

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		sql = make_sql(arg);
		if (sql != NULL)
		{
			pgstat_report_activity(STATE_RUNNING, activity);
			if (SPI_connect() != SPI_OK_CONNECT)
				elog(ERROR, "SPI_connect failed");
			if (SPI_execute_with_args(sql, nargs, argtypes, args, NULL, false, 1) != SPI_OK_SELECT)
				elog(ERROR, "%s failed", activity);
			*result = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
												  SPI_tuptable->tupdesc, 1, &isnull));
			SPI_finish();
		}
		PopActiveSnapshot();
		CommitTransactionCommand();
		pgstat_report_stat(false);
		pgstat_report_activity(STATE_IDLE, NULL);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		emit_error();
		return false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	return true;
}

/*
 * given_sql
 *		make_sql for run_counted: the statement given.
 */
static const char *
given_sql(const void *arg)
{
	return (const char *) arg;
}

/*
 * run_alone
 *		Run one async projection (run_sql: es_projection_run($1, $2)) in a
 *		transaction of its own; adds what it applied to *applied.  Returns
 *		false, the error logged, when that raises an error.
 */
static bool
run_alone(const char *run_sql, const char *name, int64 *applied)
{
	Datum		args[2];
	Oid			argtypes[2] = {TEXTOID, INT4OID};
	int64		n;

	args[0] = CStringGetTextDatum(name);
	args[1] = Int32GetDatum(worker_max_events);
	if (!run_counted(given_sql, run_sql, 2, argtypes, args,
					 "event_sourcing: running one async projection", &n))
		return false;
	*applied += n;
	return true;
}

/*
 * retention_sql
 *		make_sql for run_counted: es_apply_retention($1) in this database,
 *		or NULL when its extension has no retention policies (before 1.5).
 */
static const char *
retention_sql(const void *arg)
{
	if (!extension_ready() ||
		!OidIsValid(get_relname_relid("es_retention_policies", es_catalog()->namespace)))
		return NULL;
	return psprintf("SELECT %s($1)", es_qualified_name("es_apply_retention"));
}

/*
 * retention_round
 *		Apply the retention policies (es_apply_retention, ES_RETENTION_BATCH
 *		events a transaction) when event_sourcing.retention_interval has
 *		passed since the last pass began; an error is logged and waits for
 *		the next interval.  A full batch means more is due: the next one
 *		follows after a pause that keeps the worker's share of the time at
 *		event_sourcing.retention_duty_cycle percent, as autovacuum's cost
 *		delay keeps vacuuming from starving foreground work.  Returns the
 *		milliseconds until the next batch or pass is due, -1 when turned
 *		off.
 */
#define ES_RETENTION_BATCH 10000
static long
retention_round(void)
{
	static TimestampTz next_due = 0;
	TimestampTz now = GetCurrentTimestamp();
	Datum		args[1];
	Oid			argtypes[1] = {INT4OID};
	int64		deleted;

	if (es_retention_interval <= 0)
		return -1;
	if (now < next_due)
		return TimestampDifferenceMilliseconds(now, next_due);

	next_due = TimestampTzPlusMilliseconds(now, (int64) es_retention_interval * 1000);
	args[0] = Int32GetDatum(ES_RETENTION_BATCH);
	if (run_counted(retention_sql, NULL, 1, argtypes, args,
					"event_sourcing: applying retention policies", &deleted) &&
		deleted >= ES_RETENTION_BATCH)
	{
		TimestampTz end = GetCurrentTimestamp();
		long		took = TimestampDifferenceMilliseconds(now, end);
		long		pause = took * (100 - es_retention_duty_cycle) / es_retention_duty_cycle;

		elog(DEBUG1, "event_sourcing: retention batch of " INT64_FORMAT " events took %ld ms; the next follows in %ld ms (retention_duty_cycle %d)",
			 deleted, took, pause, es_retention_duty_cycle);
		next_due = TimestampTzPlusMilliseconds(end, pause);
		return pause;
	}
	return es_retention_interval * 1000L;
}

/*
 * due_sooner
 *		Lower *due_ms (-1: nothing due) to ms.
 */
static void
due_sooner(long *due_ms, long ms)
{
	if (*due_ms < 0 || ms < *due_ms)
		*due_ms = ms;
}

/*
 * run_isolated
 *		Run each async projection in a transaction of its own, so that one
 *		whose run raises an error does not hold the others back.  That one's
 *		error is logged and it is set aside until the retry interval has
 *		passed.  Projections that are failed (their handler failed) are left
 *		for their retry, as es_projection_run_all does.
 *
 * Returns how many projections raised an error, or -1 when the projections
 * could not even be listed (that error is logged).  Adds to round->applied
 * and fills in round->retry_due_ms and round->has_async.
 */
static int
run_isolated(EsRound *round)
{
	List	   *names;
	List	   *waiting_ms;
	char	   *run_sql;
	ListCell   *lc;
	ListCell   *lc2;
	int			errors = 0;
	TimestampTz now;

	if (!list_async(&names, &waiting_ms, &run_sql))
		return -1;
	round->has_async = names != NIL;

	/* forget what was set aside and is gone */
	foreach(lc, set_aside)
	{
		EsSetAside *e = (EsSetAside *) lfirst(lc);
		bool		found = false;

		foreach(lc2, names)
			found = found || strcmp((char *) lfirst(lc2), e->name) == 0;
		if (!found)
		{
			set_aside = foreach_delete_current(set_aside, lc);
			pfree(e->name);
			pfree(e);
		}
	}

	now = GetCurrentTimestamp();
	forboth(lc, names, lc2, waiting_ms)
	{
		char	   *name = (char *) lfirst(lc);
		int			wait = lfirst_int(lc2);
		EsSetAside *e = set_aside_find(name);

		if (e != NULL && e->due > now)
		{
			due_sooner(&round->retry_due_ms,
					   Max(TimestampDifferenceMilliseconds(now, e->due), 1));
			continue;
		}
		if (e == NULL && wait != 0)
		{
			if (wait > 0)
				due_sooner(&round->retry_due_ms, wait);
			continue;
		}

		CHECK_FOR_INTERRUPTS();
		if (run_alone(run_sql, name, &round->applied))
		{
			set_aside_forget(name);
			continue;
		}
		errors++;
		if (e == NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(set_aside_cxt);

			e = palloc(sizeof(EsSetAside));
			e->name = pstrdup(name);
			set_aside = lappend(set_aside, e);
			MemoryContextSwitchTo(old);
		}
		e->due = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), worker_retry_interval);
		due_sooner(&round->retry_due_ms, worker_retry_interval);
	}
	return errors;
}

/*
 * run_round
 *		One round: es_projection_run_all in one transaction while no
 *		projection is set aside; when that raises an error, or while one is,
 *		each projection in a transaction of its own (run_isolated).  An error
 *		that no single projection reproduces is logged, and round->failed
 *		set.  Runs in the round's memory context, reset by the caller.
 */
static void
run_round(EsRound *round)
{
	MemoryContext cxt = CurrentMemoryContext;
	ErrorData  *volatile edata = NULL;
	int			errors;

	memset(round, 0, sizeof(EsRound));
	round->retry_due_ms = -1;
	if (set_aside == NIL)
	{
		PG_TRY();
		{
			run_all_round(round);
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			AbortCurrentTransaction();
			FlushErrorState();
			pgstat_report_activity(STATE_IDLE, NULL);
		}
		PG_END_TRY();
		if (edata == NULL)
			return;
		/* go on in the per-projection rounds; what they did is all that counts */
		memset(round, 0, sizeof(EsRound));
		round->retry_due_ms = -1;
	}

	errors = run_isolated(round);
	if (errors < 0)
	{
		round->failed = true;
		round->has_async = true;
	}
	else if (errors == 0 && edata != NULL)
	{
		/* no projection fails on its own: log the round's error */
		round->failed = true;
		PG_TRY();
		{
			ThrowErrorData(edata);
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(cxt);
			EmitErrorReport();
			FlushErrorState();
		}
		PG_END_TRY();
	}
}

/*
 * worker_sleep
 *		Sleep up to ms milliseconds.  When wakeable, return as soon as the
 *		wake-up count moves away from seen (or at a reload, so that new
 *		settings take effect at once); otherwise sleep the whole time, a
 *		reload only re-reading the settings (ms is then taken from
 *		event_sourcing.worker_retry_interval again).
 *
 * The latch is reset before the count is checked, and a commit moves the
 * count before it sets the latch, so no wake-up falls in between.
 */
static void
worker_sleep(long ms, uint64 seen, bool wakeable)
{
	TimestampTz start = GetCurrentTimestamp();

	for (;;)
	{
		long		remaining;

		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (worker_reload())
		{
			if (wakeable)
				return;
			ms = worker_retry_interval;
		}
		if (wakeable && worker_wake != NULL && es_worker_wakes(worker_wake) != seen)
			return;
		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
													TimestampTzPlusMilliseconds(start, ms));
		if (remaining <= 0)
			return;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 remaining, PG_WAIT_EXTENSION);
	}
}

/*
 * es_worker_main
 *		Entry point of a database worker; bgw_extra names the database.
 */
void
es_worker_main(Datum main_arg)
{
	MemoryContext round_cxt;
	pid_t		holder;

	strlcpy(worker_dbname, MyBgworkerEntry->bgw_extra, NAMEDATALEN);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(worker_dbname, NULL, 0);
	pgstat_report_appname("event_sourcing worker");
	/* checkpoints assume READ COMMITTED rounds, whatever the default is */
	SetConfigOption("default_transaction_isolation", "read committed",
					PGC_SUSET, PGC_S_OVERRIDE);

	/* one worker per database */
	worker_wake = es_worker_claim(worker_dbname, &holder);
	if (worker_wake == NULL && holder != 0)
	{
		ereport(LOG,
				(errmsg("event_sourcing worker for database \"%s\" exits: the worker with PID %d already serves it",
						worker_dbname, (int) holder)));
		proc_exit(0);
	}

	round_cxt = AllocSetContextCreate(TopMemoryContext, "event_sourcing worker round",
									  ALLOCSET_DEFAULT_SIZES);
	set_aside_cxt = AllocSetContextCreate(TopMemoryContext, "event_sourcing worker set aside",
										  ALLOCSET_SMALL_SIZES);
	ereport(LOG, (errmsg("event_sourcing worker started for database \"%s\"", worker_dbname)));

	for (;;)
	{
		EsRound		round;
		uint64		seen = 0;
		long		sleep_ms;
		long		retention_ms;

		CHECK_FOR_INTERRUPTS();
		(void) worker_reload();
		/* the writer of this database's log mark runs beside us (mark.c) */
		if (worker_wake != NULL)
			es_log_mark_supervise(worker_dbname);

		/* commits from here on are either seen by the round or move the count */
		if (worker_wake != NULL)
			seen = es_worker_wakes(worker_wake);

		MemoryContextSwitchTo(round_cxt);
		run_round(&round);
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(round_cxt);
		/* appends in this database need not wake us while there is no async projection */
		if (worker_wake != NULL)
			es_worker_wake_set_interest(worker_wake, round.has_async || round.failed);

		/* the retention policies, when a pass is due (whatever the round did) */
		MemoryContextSwitchTo(round_cxt);
		retention_ms = retention_round();
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(round_cxt);

		if (round.failed)
		{
			/* logged once: the next round after the retry interval, commits or not */
			worker_sleep(worker_retry_interval, seen, false);
			continue;
		}

		/* there may be more, or a commit came during the round: go again */
		if (round.applied > 0 || retention_ms == 0 ||
			(worker_wake != NULL && es_worker_wakes(worker_wake) != seen))
			continue;

		/* until a commit wakes us, the idle interval, or a retry is due */
		sleep_ms = worker_idle_interval;
		if (round.remote && round.has_async && sleep_ms > ES_WORKER_REMOTE_POLL_MS)
			sleep_ms = ES_WORKER_REMOTE_POLL_MS;
		if (round.retry_due_ms >= 0 && round.retry_due_ms < sleep_ms)
			sleep_ms = round.retry_due_ms;
		if (retention_ms > 0 && retention_ms < sleep_ms)
			sleep_ms = retention_ms;
		worker_sleep(sleep_ms, seen, true);
	}
}
