/*-------------------------------------------------------------------------
 *
 * projection_run.c
 *	  Driving projections: es_projection_run, es_projection_rebuild and
 *	  es_projection_skip.
 *
 * An async projection keeps its checkpoint (the last global position it has
 * dealt with) in its es_projection_defs row.  A run locks that row, reads
 * the safe part of the global log after the checkpoint (read.c's log scan:
 * never past the high-water mark, so an event that commits late is never
 * skipped), calls the handler for each matching event and writes the new
 * checkpoint, all in the caller's transaction: handler effects and the
 * checkpoint commit together, so each event takes effect exactly once.  The
 * row lock is taken with SKIP LOCKED: a second run of the same projection
 * at the same time applies nothing and returns at once, and once the first
 * commits the next run reads its checkpoint from the locked (latest) row.
 *
 * A run applies events inside one subtransaction.  When a handler fails
 * (or the upcasting of an event the projection would receive), the
 * subtransaction is rolled back; if events before the failing one had
 * been applied, they are applied again, stopping before it, so the run keeps
 * them.  The projection is then marked failed at that event, with the error,
 * and stops there; the next run retries the event, and es_projection_skip
 * moves it to es_dead_letters.  One subtransaction per run rather than per
 * event keeps a run to at most two subtransaction ids, whatever its length.
 *
 * Failures are isolated per projection: each run is wrapped in a further
 * subtransaction, so that any other error (a dropped handler, its owner
 * gone, an error outside any event) marks only that projection failed, and
 * the others go on.  Only cancellation (query cancel, statement_timeout,
 * termination: SQLSTATE class 57), exhausted resources (class 53) and
 * FATAL are raised; every other
 * SQLSTATE, 40001, 40P01 and 55P03 included, is recorded as the failure of
 * the projection, retried by the next run (by the worker after
 * worker_retry_interval).  Every subtransaction is rolled back and released
 * before an error leaves this file.
 *
 * Callbacks run as the projection's owner (projection.c, callback.c);
 * running, skipping and rebuilding a projection by name needs membership in
 * that owner, checked before any lock is taken.  es_projection_run(NULL)
 * runs the async projections whose owner the caller is a member of (the
 * worker, a superuser, runs all).
 *
 * es_projection_rebuild calls reset() and replays every matching event from
 * the start.  For an inline projection it first locks es_events in SHARE
 * ROW EXCLUSIVE mode, which waits for appending transactions to end and
 * holds off new appends (and other inline rebuilds) until the rebuild commits: each event is then either in the
 * replay or dispatched after it, never both and never neither.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "event_sourcing.h"

/* The outcome of applying events to one async projection. */
typedef struct EsRunResult
{
	int64		applied;
	int64		checkpoint;
	bool		failed;
	int64		failed_position;
	char	   *error;
} EsRunResult;

/*
 * The catalog generation in which es_projection_run_all last found no async
 * projection: until it moves, the worker's rounds cost nothing.
 */
static uint64 none_generation = 0;

/*
 * write_checkpoint
 *		Store where an async projection stands.
 */
static void
write_checkpoint(const char *name, const EsRunResult *r)
{
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	Oid			types[5] = {TEXTOID, INT8OID, TEXTOID, TEXTOID, INT8OID};

	values[0] = CStringGetTextDatum(name);
	values[1] = Int64GetDatum(r->checkpoint);
	values[2] = CStringGetTextDatum(r->failed ? "failed" : "running");
	if (r->failed)
		values[3] = CStringGetTextDatum(r->error);
	else
		nulls[3] = 'n';
	/* a failure outside any event (a dropped handler) has no position */
	if (r->failed && r->failed_position > 0)
		values[4] = Int64GetDatum(r->failed_position);
	else
		nulls[4] = 'n';

	(void) es_execute_as_owner(psprintf("UPDATE %s SET position = $2, status = $3, last_error = $4, "
										  "failed_position = $5, updated_at = pg_catalog.now() "
										  "WHERE name OPERATOR(pg_catalog.=) $1",
										  es_qualified_name("es_projection_defs")),
								 5, types, values, nulls, SPI_OK_UPDATE);
}

/*
 * is_cancel
 *		Errors that mean "stop", not "this projection failed": cancellation
 *		(query cancel and statement_timeout, 57014; operator intervention,
 *		the rest of class 57), the server running out of a resource (class
 *		53: out of memory, disk full) and anything worse than ERROR.  They are
 *		thrown on, after the subtransactions are rolled back; every other
 *		error is recorded against the projection.
 */
static bool
is_cancel(ErrorData *edata)
{
	return edata->elevel > ERROR ||
		ERRCODE_TO_CATEGORY(edata->sqlerrcode) == ERRCODE_OPERATOR_INTERVENTION ||
		ERRCODE_TO_CATEGORY(edata->sqlerrcode) == ERRCODE_INSUFFICIENT_RESOURCES;
}

/*
 * in_subtransaction
 *		Run fn(arg) in a subtransaction of its own.  Returns NULL when it
 *		succeeded (its work now belongs to the caller's transaction), else
 *		its error, copied into the caller's memory context, with the
 *		subtransaction already rolled back and released: the caller is left
 *		in the state it was in before.  Cancellation (is_cancel) is thrown
 *		on, after the same rollback.
 */
static ErrorData *
in_subtransaction(void (*fn) (void *arg), void *arg)
{
	MemoryContext caller = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile error = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(caller);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(caller);
		error = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller);
		CurrentResourceOwner = owner;
	}
	PG_END_TRY();
	if (error != NULL && is_cancel(error))
		ReThrowError(error);
	return error;
}

/* Where a replay of the log into a projection stands (replay_events). */
typedef struct EsReplay
{
	int64		applied;		/* handler calls that returned */
	int64		upto;			/* position of the last event dealt with */
	int64		current;		/* position of the event being dealt with */
	bool		in_event;		/* an error now comes from upcasting the
								 * event or from the handler */
	bool		complete;		/* every event up to the safe end was read */
} EsReplay;

/*
 * replay_events
 *		Hand the events after 'after' to the projection's handler (the
 *		matching ones), at most max_events of them (< 0: no limit) and none
 *		at or past stop_at (> 0).  Read to the end, the position moves on to
 *		the safe end of the log, past any rolled-back positions.
 *
 * Events are filtered by the type they will have once upcast (found from
 * the registry alone), and only the projection's own events are upcast: an
 * upcaster that fails on an event the projection does not receive does not
 * concern it.  The whole replay runs in one call scope of the projection's
 * owner (callback.c): one GUC nest level for all its handler calls, as for
 * the evolve calls of a fold, rather than one per event.
 *
 * Progress is kept in *r as it goes, for a caller that catches an error.
 */
static void
replay_events(EsProjection *p, int64 after, int64 max_events, int64 stop_at,
			  volatile EsReplay *r)
{
	MemoryContext eval_cxt;
	EsLogScan  *scan;
	TupleTableSlot *slot;
	bool		complete = false;
	EsUpcaster *upcaster;
	EsCallScope scope;

	r->applied = 0;
	r->upto = after;
	r->current = 0;
	r->in_event = false;
	eval_cxt = AllocSetContextCreate(CurrentMemoryContext, "event_sourcing projection event",
									 ALLOCSET_DEFAULT_SIZES);
	scan = es_log_scan_begin(NULL, after);
	/* the scan hands out stored events; this loop upcasts the matching ones */
	upcaster = scan->upcaster;
	scan->upcaster = NULL;
	es_scope_enter(&scope, p->owner, p->search_path);
	while (max_events < 0 || r->applied < max_events)
	{
		bool		isnull;
		char	   *type;
		int32		schema;
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		old = MemoryContextSwitchTo(eval_cxt);
		slot = es_log_scan_next(scan);
		if (slot == NULL)
		{
			MemoryContextSwitchTo(old);
			complete = scan->complete;
			break;
		}
		r->current = DatumGetInt64(slot_getattr(slot, Anum_es_events_global_position, &isnull));
		if (stop_at > 0 && r->current >= stop_at)
		{
			MemoryContextSwitchTo(old);
			break;
		}
		type = TextDatumGetCString(slot_getattr(slot, Anum_es_events_event_type, &isnull));
		schema = DatumGetInt32(slot_getattr(slot, Anum_es_events_schema_version, &isnull));
		if (es_projection_matches(p, es_upcast_type(upcaster, type, schema)))
		{
			r->in_event = true;
			es_upcast_slot(upcaster, slot);
			es_projection_apply(p, slot, r->current, true);
			r->in_event = false;
			r->applied++;
		}
		r->upto = r->current;
		MemoryContextSwitchTo(old);
		MemoryContextReset(eval_cxt);
	}
	es_scope_exit(&scope);
	r->complete = complete;
	if (complete && scan->high > r->upto)
		r->upto = scan->high;
	es_log_scan_end(scan);
	es_upcast_end(upcaster);
	MemoryContextDelete(eval_cxt);
}

/* The arguments of replay_events, for in_subtransaction. */
typedef struct EsReplayCall
{
	EsProjection *p;
	int64		after;
	int64		max_events;
	int64		stop_at;
	volatile EsReplay *r;
} EsReplayCall;

/*
 * replay_call
 *		replay_events, called through in_subtransaction.
 */
static void
replay_call(void *arg)
{
	EsReplayCall *c = (EsReplayCall *) arg;

	replay_events(c->p, c->after, c->max_events, c->stop_at, c->r);
}

/*
 * apply_events
 *		Apply the events after p->position to an async projection (at most
 *		max_events, none at or past stop_at when stop_at > 0) in a
 *		subtransaction.  Returns false, with the error in *error and the
 *		event in *failed_at, when an event failed (its handler or its
 *		upcasting): the subtransaction was rolled back and nothing it did
 *		stays.  *last is the position of the last event dealt with.  Any
 *		other error is thrown on, the subtransaction rolled back first.
 */
static bool
apply_events(EsProjection *p, int32 max_events, int64 stop_at,
			  int64 *applied, int64 *last, ErrorData **error, int64 *failed_at)
{
	volatile EsReplay r;
	EsReplayCall call = {p, p->position, max_events, stop_at, &r};
	ErrorData  *edata;

	edata = in_subtransaction(replay_call, &call);
	/* an error outside any event is not this event's failure */
	if (edata != NULL && !r.in_event)
		ReThrowError(edata);
	*applied = r.applied;
	*last = r.upto;
	if (edata == NULL)
		return true;
	*error = edata;
	*failed_at = r.current;
	return false;
}

/*
 * run_one
 *		es_projection_run for one async projection, already read and locked.
 */
static void
run_one(EsProjection *p, int32 max_events, EsRunResult *r)
{
	int64		stop_at = 0;
	ErrorData  *first_error = NULL;
	int64		first_failed = 0;

	es_projection_prepare(p, CurrentMemoryContext);
	memset(r, 0, sizeof(EsRunResult));
	r->checkpoint = p->position;

	for (;;)
	{
		int64		applied;
		int64		last;
		ErrorData  *error = NULL;
		int64		failed_at = 0;

		if (apply_events(p, max_events, stop_at, &applied, &last, &error, &failed_at))
		{
			r->applied = applied;
			r->checkpoint = last;
			break;
		}
		first_error = error;
		first_failed = failed_at;
		if (last <= p->position)
			break;				/* nothing before the failing event */

		/*
		 * Apply the events before the failing one again and keep them.  Should
		 * one of them fail this time, that one is reported instead; stop_at
		 * moves back each time, so this ends.
		 */
		stop_at = failed_at;
	}

	if (first_error != NULL)
	{
		r->failed = true;
		r->failed_position = first_failed;
		r->error = first_error->message ? first_error->message : "unknown error";
		ereport(WARNING,
				(errcode(first_error->sqlerrcode),
				 errmsg("projection \"%s\" failed at global position " INT64_FORMAT ": %s",
						p->name, first_failed, r->error),
				 first_error->detail ? errdetail_internal("%s", first_error->detail) : 0,
				 errhint("The projection stops at that event. Fix the handler and run it again, "
						 "or move the event to es_dead_letters with es_projection_skip('%s').",
						 p->name)));
	}
	write_checkpoint(p->name, r);
}

/* The arguments and result of run_one, for in_subtransaction. */
typedef struct EsRunCall
{
	EsProjection *p;
	int32		max_events;
	EsRunResult r;
} EsRunCall;

/*
 * run_call
 *		run_one, called through in_subtransaction.
 */
static void
run_call(void *arg)
{
	EsRunCall  *c = (EsRunCall *) arg;

	run_one(c->p, c->max_events, &c->r);
}

/*
 * run_guarded
 *		run_one in a subtransaction of its own: an error that is not a
 *		cancellation (a handler or reset that no longer exists, an owner
 *		dropped or without EXECUTE, anything outside an event) marks only
 *		this projection failed, with a WARNING, and returns 0.
 */
static int64
run_guarded(EsProjection *p, int32 max_events)
{
	EsRunCall	call;
	EsRunResult r;
	ErrorData  *edata;

	call.p = p;
	call.max_events = max_events;
	edata = in_subtransaction(run_call, &call);
	if (edata == NULL)
		return call.r.applied;

	memset(&r, 0, sizeof(r));
	r.checkpoint = p->position;
	r.failed = true;
	r.failed_position = 0;
	r.error = edata->message ? edata->message : "unknown error";
	ereport(WARNING,
			(errcode(edata->sqlerrcode),
			 errmsg("projection \"%s\" failed: %s", p->name, r.error),
			 edata->detail ? errdetail_internal("%s", edata->detail) : 0,
			 edata->hint ? errhint("%s", edata->hint) : 0));
	write_checkpoint(p->name, &r);
	return 0;
}

/*
 * run_named
 *		Run one async projection by name; returns the events applied (0 when
 *		another run holds it).  With only_own, a projection whose owner the
 *		caller is not a member of is passed over (returns 0); otherwise that
 *		is an error.  Either way the owner is checked before the row is
 *		locked.
 */
static int64
run_named(const char *name, int32 max_events, bool only_own)
{
	EsProjection p;

	if (es_projection_read(name, ES_LOCK_NONE, &p) != ES_FOUND)
	{
		if (only_own)
			return 0;			/* dropped meanwhile */
		es_projection_not_found(name);
	}
	if (only_own && !has_privs_of_role(GetUserId(), p.owner))
		return 0;
	es_projection_check_owner(name, p.owner);

	switch (es_projection_read(name, ES_LOCK_SKIP, &p))
	{
		case ES_MISSING:
			if (only_own)
				return 0;
			es_projection_not_found(name);
			break;
		case ES_LOCKED:
			return 0;
		case ES_FOUND:
			break;
	}
	if (only_own && !has_privs_of_role(GetUserId(), p.owner))
		return 0;
	es_projection_check_owner(name, p.owner);
	if (p.is_inline)
	{
		if (only_own)
			return 0;
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("projection \"%s\" is not an async projection", name),
				 errdetail("Inline projections are applied by es_append in the appending transaction."),
				 errhint("Use es_projection_rebuild(%s) to replay the history.",
						 quote_literal_cstr(name))));
	}
	return run_guarded(&p, max_events);
}

/*
 * es_projection_run_all
 *		Run every async projection that has work: events past its checkpoint
 *		(the log is read only once for that), or a failure older than
 *		retry_failed_ms (< 0: retry failures always).  Returns the total
 *		applied; the worker calls this.  When retry_due_ms is not NULL it is
 *		set to the milliseconds until the next failed projection is due for
 *		a retry (-1: none is waiting), so the worker can wake up for it;
 *		*has_async (when not NULL) says whether any async projection exists.
 *		Only projections whose owner the caller is a member of are run.
 */
int64
es_projection_run_all(int32 max_events, int retry_failed_ms, long *retry_due_ms,
					  bool *has_async)
{
	const EsCatalog *cat = es_projections_available();
	EsSavedUser saved_user;
	MemoryContext caller = CurrentMemoryContext;
	EsProjection *defs;
	int			n;
	int64		head;
	int64		total = 0;
	TimestampTz now = GetCurrentTimestamp();

	if (retry_due_ms != NULL)
		*retry_due_ms = -1;
	if (has_async != NULL)
		*has_async = false;

	/* no async projection, and no definition changed since we last looked */
	if (none_generation == es_catalog_generation())
		return 0;

	/* the async definitions, unlocked: most of the time nothing is to do */
	es_become_owner(&saved_user);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute(psprintf("SELECT * FROM %s WHERE mode OPERATOR(pg_catalog.=) 'async' ORDER BY name",
							 es_qualified_name("es_projection_defs")),
					false, 0) != SPI_OK_SELECT)
		elog(ERROR, "reading the projection definitions failed");
	n = (int) SPI_processed;
	defs = MemoryContextAlloc(caller, sizeof(EsProjection) * Max(n, 1));
	for (int i = 0; i < n; i++)
		es_projection_from_tuple(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, &defs[i], caller);
	SPI_finish();
	es_restore_user(&saved_user);
	if (n == 0)
	{
		/* define/drop invalidate es_projection_defs, moving the generation */
		none_generation = es_catalog_generation();
		return 0;
	}
	if (has_async != NULL)
		*has_async = true;

	head = es_high_water_mark(cat, 0);
	for (int i = 0; i < n; i++)
	{
		EsProjection *d = &defs[i];

		if (d->failed)
		{
			if (retry_failed_ms >= 0 &&
				!TimestampDifferenceExceeds(d->updated_at, now, retry_failed_ms))
			{
				long		due;

				due = TimestampDifferenceMilliseconds(now,
													  TimestampTzPlusMilliseconds(d->updated_at, retry_failed_ms));
				if (retry_due_ms != NULL && (*retry_due_ms < 0 || due < *retry_due_ms))
					*retry_due_ms = Max(due, 1);
				continue;
			}
		}
		else if (d->position >= head)
			continue;
		total += run_named(d->name, max_events, true);
	}
	return total;
}

/*
 * check_max_events
 *		max_events is a limit: 0 applies nothing, negative is an error.
 */
static int32
check_max_events(FunctionCallInfo fcinfo, int argno)
{
	int32		max_events;

	es_check_not_null(fcinfo, argno, "max_events");
	max_events = PG_GETARG_INT32(argno);
	if (max_events < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_events must not be negative"),
				 errdetail("max_events was %d.", max_events)));
	return max_events;
}

PG_FUNCTION_INFO_V1(es_projection_run);

/*
 * es_projection_run(name text DEFAULT NULL, max_events int DEFAULT 1000)
 *		RETURNS bigint
 *
 * Applies up to max_events events after the checkpoint of the named async
 * projection, or of each async projection when name is NULL; returns how
 * many were applied.  A failing handler does not raise an error: the
 * projection is marked failed (with a WARNING) and the others go on.
 */
Datum
es_projection_run(PG_FUNCTION_ARGS)
{
	int32		max_events = check_max_events(fcinfo, 1);

	PreventCommandIfReadOnly("es_projection_run()");
	PreventCommandIfParallelMode("es_projection_run()");
	(void) es_projections_available();
	if (max_events == 0)
		PG_RETURN_INT64(0);
	if (PG_ARGISNULL(0))
		PG_RETURN_INT64(es_projection_run_all(max_events, -1, NULL, NULL));
	PG_RETURN_INT64(run_named(es_projection_name_arg(fcinfo, 0), max_events, false));
}

PG_FUNCTION_INFO_V1(es_projection_rebuild);

/*
 * es_projection_rebuild(name text) RETURNS bigint
 *
 * Calls reset() (when given) and replays every matching event from the
 * start of the log, in global order; returns how many were applied.  Any
 * handler error fails the rebuild, leaving the read model as it was.
 */
Datum
es_projection_rebuild(PG_FUNCTION_ARGS)
{
	char	   *name = es_projection_name_arg(fcinfo, 0);
	const EsCatalog *cat;
	EsProjection p;
	EsReplay	replay;
	EsRunResult r;

	PreventCommandIfReadOnly("es_projection_rebuild()");
	PreventCommandIfParallelMode("es_projection_rebuild()");
	cat = es_projections_available();
	/*
	 * Inline: wait for appenders to finish and hold new ones off until
	 * commit.  The store is locked before the definition row, in the order
	 * es_append and es_drop_projection take them, so a rebuild waiting for
	 * an appender cannot deadlock with it.  SHARE ROW EXCLUSIVE conflicts
	 * with appends and with itself: two inline rebuilds queue, rather than
	 * deadlock when each then appends.
	 */
	if (es_projection_read(name, ES_LOCK_NONE, &p) != ES_FOUND)
		es_projection_not_found(name);
	/* before any lock: a non-owner must not queue every appender */
	es_projection_check_owner(name, p.owner);
	if (p.is_inline)
		LockRelationOid(cat->events, ShareRowExclusiveLock);
	if (es_projection_read(name, ES_LOCK_WAIT, &p) != ES_FOUND)
		es_projection_not_found(name);
	if (p.is_inline)
		LockRelationOid(cat->events, ShareRowExclusiveLock);	/* redefined meanwhile */
	es_projection_check_owner(name, p.owner);
	es_projection_prepare(&p, CurrentMemoryContext);

	es_projection_call_reset(&p);
	replay_events(&p, 0, -1, 0, &replay);

	/*
	 * An inline read model must hold every committed event.  Under REPEATABLE
	 * READ the transaction snapshot may predate the lock and miss some.
	 */
	if (p.is_inline && !replay.complete)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not rebuild projection \"%s\": events were committed after this transaction's snapshot",
						name),
				 errhint("Retry the transaction, or rebuild in a READ COMMITTED transaction.")));

	memset(&r, 0, sizeof(r));
	r.applied = replay.applied;
	r.checkpoint = p.is_inline ? 0 : replay.upto;
	write_checkpoint(name, &r);
	es_note_projection_change();
	PG_RETURN_INT64(replay.applied);
}

/*
 * event_at_scan
 *		The event at a global position as a composite datum (a copy), read
 *		through the one log reader, upcast or as stored.
 */
static Datum
event_at_scan(int64 position, bool upcast)
{
	EsLogScan  *scan = es_log_scan_begin(NULL, position - 1);
	EsUpcaster *upcaster = scan->upcaster;
	TupleTableSlot *slot;
	Datum		result = (Datum) 0;
	bool		isnull;

	if (!upcast)
		scan->upcaster = NULL;
	slot = es_log_scan_next(scan);
	if (slot != NULL &&
		DatumGetInt64(slot_getattr(slot, Anum_es_events_global_position, &isnull)) == position)
		result = ExecFetchSlotHeapTupleDatum(slot);
	if (!upcast)
		scan->upcaster = upcaster;
	es_log_scan_end(scan);
	if (result == (Datum) 0)
		elog(ERROR, "event at global position " INT64_FORMAT " not found", position);
	return result;
}

/* The argument and result of event_at_scan, for in_subtransaction. */
typedef struct EsEventAtCall
{
	int64		position;
	Datum		result;
} EsEventAtCall;

/*
 * event_at_upcast
 *		event_at_scan of the upcast event, called through in_subtransaction.
 */
static void
event_at_upcast(void *arg)
{
	EsEventAtCall *c = (EsEventAtCall *) arg;

	c->result = event_at_scan(c->position, true);
}

/*
 * event_at
 *		The event at a global position as the handler saw it: upcast, or as
 *		stored when its upcasting fails (the handler never saw it then).
 */
static Datum
event_at(int64 position)
{
	EsEventAtCall call = {position, (Datum) 0};

	if (in_subtransaction(event_at_upcast, &call) != NULL)
		return event_at_scan(position, false);
	return call.result;
}

PG_FUNCTION_INFO_V1(es_projection_skip);

/*
 * es_projection_skip(name text) RETURNS bigint
 *
 * Moves the event a failed async projection stopped at to es_dead_letters
 * (with the error) and sets the checkpoint past it; the next run goes on
 * after it.  Returns the skipped position.
 */
Datum
es_projection_skip(PG_FUNCTION_ARGS)
{
	char	   *name = es_projection_name_arg(fcinfo, 0);
	const EsCatalog *cat;
	EsProjection p;
	EsRunResult r;
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	Oid			types[4];

	PreventCommandIfReadOnly("es_projection_skip()");
	cat = es_projections_available();
	es_projection_read_owned(name, &p);
	if (p.is_inline)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("projection \"%s\" is not an async projection", name),
				 errdetail("An inline projection's failure fails the append; it never stops at an event.")));
	if (!p.failed)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("projection \"%s\" has not failed", name),
				 errdetail("It is at global position " INT64_FORMAT ".", p.position),
				 errhint("es_projection_skip skips the event a failed projection stopped at.")));
	if (p.failed_position <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("projection \"%s\" did not fail at an event", name),
				 errdetail("It failed before reaching one: %s", p.last_error ? p.last_error : "unknown error"),
				 errhint("Fix the cause (for example define the handler again); the next run retries.")));

	types[0] = TEXTOID;
	values[0] = CStringGetTextDatum(name);
	types[1] = get_rel_type_id(cat->events);
	values[1] = event_at(p.failed_position);
	types[2] = TEXTOID;
	if (p.last_error != NULL)
		values[2] = CStringGetTextDatum(p.last_error);
	else
		nulls[2] = 'n';
	types[3] = INT8OID;
	values[3] = Int64GetDatum(p.failed_position);
	(void) es_execute_as_owner(psprintf("INSERT INTO %s (projection, event, error, position) "
										  "VALUES ($1, $2, $3, $4) ON CONFLICT (projection, position) "
										  "DO UPDATE SET event = EXCLUDED.event, error = EXCLUDED.error, "
										  "time = EXCLUDED.time",
										  es_qualified_name("es_dead_letters")),
								 4, types, values, nulls, SPI_OK_INSERT);

	memset(&r, 0, sizeof(r));
	r.checkpoint = p.failed_position;
	write_checkpoint(name, &r);
	es_note_projection_change();
	PG_RETURN_INT64(p.failed_position);
}
