/*-------------------------------------------------------------------------
 *
 * retention.c
 *	  Retention policies per category: es_set_retention, es_apply_retention.
 *
 * A policy keeps a category's events younger than max_age (by recorded_at)
 * and, per stream, the newest max_count.  es_apply_retention deletes what
 * the policies no longer keep, at most max_events per call, so that each
 * call is a short transaction; the background worker calls it every
 * event_sourcing.retention_interval seconds when the library is preloaded.
 *
 * What retention never removes:
 *	- a stream's newest event (its head): es_append's version check and the
 *	  stream's version depend on it;
 *	- for a category with an aggregate, events that the stream's newest
 *	  usable snapshot does not cover: folding must never lose state
 *	  silently (es_truncate_stream refuses the same).
 * Within a stream recorded_at never decreases, so the events past max_age
 * are a prefix of it.
 *
 * Each stream is locked (es_append's lock) before its rows are deleted; a
 * stream whose lock another transaction holds is skipped until the next
 * call, so retention never waits for an appender nor deadlocks with one
 * that appends to several streams.  Deletion is quiet (no system events:
 * they would double the log) but audited: one es_erasures row per category
 * and call that removed something.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/datetime.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "event_sourcing.h"

/* event_sourcing.retention_interval: seconds between the worker's passes */
int			es_retention_interval = 60;
int			es_retention_duty_cycle = 50;

/* One stream to trim: delete its events up to 'upto' (and older than the cutoff). */
typedef struct RetentionTarget
{
	text	   *stream_id;
	int64		upto;
} RetentionTarget;

/*
 * query_as_owner
 *		Run one internal query as the extension owner and hand each row to
 *		'row', called in the caller's memory context (so what it keeps
 *		outlives the query); 'last' says whether the row is the last one.
 */
static void
query_as_owner(const char *sql, int nargs, Oid *types, Datum *values,
			   void (*row) (HeapTuple tup, TupleDesc desc, bool last, void *arg),
			   void *arg)
{
	MemoryContext caller = CurrentMemoryContext;
	EsSavedUser saved;

	es_become_owner(&saved);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args(sql, nargs, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "internal query failed: %s", sql);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(caller);

		row(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, i == SPI_processed - 1, arg);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	es_restore_user(&saved);
}

/* What target_row collects: the targets, and where the keyset goes. */
typedef struct TargetRows
{
	List	   *targets;
	Datum	   *keyset;
} TargetRows;

/*
 * target_row
 *		A row of a candidate query (stream_id, the version to trim up to,
 *		the keyset) as a RetentionTarget; the last row's keyset is kept.
 */
static void
target_row(HeapTuple tup, TupleDesc desc, bool last, void *arg)
{
	TargetRows *rows = arg;
	RetentionTarget *t = palloc(sizeof(RetentionTarget));
	bool		isnull;

	t->stream_id = DatumGetTextPCopy(SPI_getbinval(tup, desc, 1, &isnull));
	t->upto = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
	rows->targets = lappend(rows->targets, t);
	if (last)
	{
		Datum		d = SPI_getbinval(tup, desc, 3, &isnull);

		*rows->keyset = TupleDescAttr(desc, 2)->atttypid == TEXTOID ?
			PointerGetDatum(DatumGetTextPCopy(d)) : d;
	}
}

/*
 * trim_stream
 *		Delete the stream's events up to 'upto' recorded before 'cutoff'
 *		(DT_NOEND: any), never its head nor what its aggregate's newest
 *		usable snapshot does not cover; at most 'budget'.  Returns how many
 *		went; 0 when the stream is locked by another transaction, deleted,
 *		or has nothing to give.
 */
static int64
trim_stream(EsAppendState *st, RetentionTarget *t, TimestampTz cutoff, int64 budget)
{
	TimestampTz last_recorded;
	bool		deleted;
	int64		head;
	int64		upto = t->upto;
	int64		fingerprint;

	if (!es_store_try_lock_stream(t->stream_id, true))
		return 0;
	head = es_store_peek_head(st, t->stream_id, &last_recorded, &deleted);
	if (deleted)
		return 0;
	upto = Min(upto, head - 1);
	fingerprint = es_stream_fingerprint(t->stream_id);
	if (fingerprint != 0 && upto > 0)
	{
		int64		snap_version;
		Jsonb	   *state;

		if (!es_snapshot_find(t->stream_id, fingerprint, head, &snap_version, &state))
			return 0;
		upto = Min(upto, snap_version);
	}
	if (upto < 1)
		return 0;
	return es_delete_versions(st, t->stream_id, 1, upto, cutoff, budget);
}

/*
 * trim_in_batches
 *		Run a candidate query (rows: stream_id, the version to trim up to,
 *		the keyset to continue after) again and again, trimming each stream
 *		it names, until it finds nothing or 'budget' events went.  Argument
 *		keyset_arg of the query is the keyset, set from the last row of the
 *		previous batch; limit_arg (-1: none) the batch size.  Streams that
 *		cannot give anything now (locked, no snapshot) do not stop the pass.
 */
static int64
trim_in_batches(EsAppendState *st, const char *sql, int nargs, Oid *types,
				Datum *values, int keyset_arg, int limit_arg,
				TimestampTz cutoff, int64 budget)
{
	int64		done = 0;

	while (done < budget)
	{
		List	   *targets;
		ListCell   *lc;
		TargetRows	rows = {NIL, &values[keyset_arg]};

		if (limit_arg >= 0)
			values[limit_arg] = Int64GetDatum(Min(budget - done, 1000));
		query_as_owner(sql, nargs, types, values, target_row, &rows);
		targets = rows.targets;
		if (targets == NIL)
			break;
		foreach(lc, targets)
		{
			CHECK_FOR_INTERRUPTS();
			done += trim_stream(st, lfirst(lc), cutoff, budget - done);
			if (done >= budget)
				break;
		}
		list_free_deep(targets);
	}
	return done;
}

/*
 * apply_max_age
 *		Delete the category's events recorded before 'cutoff', oldest
 *		first, at most 'budget': candidates through the category index in
 *		global order, keyset-paged by position, heads excluded.
 */
static int64
apply_max_age(EsAppendState *st, text *category, TimestampTz cutoff, int64 budget)
{
	Oid			types[4] = {TEXTOID, INT8OID, TIMESTAMPTZOID, INT8OID};
	Datum		values[4];

	values[0] = PointerGetDatum(category);
	values[1] = Int64GetDatum(0);
	values[2] = TimestampTzGetDatum(cutoff);
	return trim_in_batches(st,
						   psprintf("WITH c AS (SELECT e.stream_id, e.stream_version, e.global_position FROM %s e "
									"WHERE pg_catalog.split_part(e.stream_id, '-'::text, 1) OPERATOR(pg_catalog.=) $1 "
									"AND e.global_position OPERATOR(pg_catalog.>) $2 "
									"AND e.recorded_at OPERATOR(pg_catalog.<) $3 "
									"AND e.stream_version OPERATOR(pg_catalog.<) (SELECT pg_catalog.max(h.stream_version) FROM %s h "
									"WHERE h.stream_id OPERATOR(pg_catalog.=) e.stream_id) "
									"ORDER BY e.global_position LIMIT $4) "
									"SELECT stream_id, pg_catalog.max(stream_version), "
									"(SELECT pg_catalog.max(global_position) FROM c) FROM c GROUP BY stream_id",
									es_qualified_name("es_events"), es_qualified_name("es_events")),
						   4, types, values, 1, 3, cutoff, budget);
}

/*
 * apply_max_count
 *		Delete, in each stream of the category with more than max_count
 *		events, all but the newest max_count; at most 'budget'.  Streams come
 *		in batches keyed by stream_id.
 */
static int64
apply_max_count(EsAppendState *st, text *category, int64 max_count, int64 budget)
{
	Oid			types[3] = {TEXTOID, INT8OID, TEXTOID};
	Datum		values[3];

	values[0] = PointerGetDatum(category);
	values[1] = Int64GetDatum(max_count);
	values[2] = PointerGetDatum(cstring_to_text(""));
	return trim_in_batches(st,
						   psprintf("SELECT stream_id, pg_catalog.max(stream_version) OPERATOR(pg_catalog.-) $2, stream_id "
									"FROM %s WHERE pg_catalog.split_part(stream_id, '-'::text, 1) OPERATOR(pg_catalog.=) $1 "
									"AND stream_id OPERATOR(pg_catalog.>) $3 "
									"GROUP BY stream_id HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) $2 "
									"ORDER BY stream_id LIMIT 1000",
									es_qualified_name("es_events")),
						   3, types, values, 2, -1, DT_NOEND, budget);
}

/* A retention policy, as es_apply_retention reads it. */
typedef struct Policy
{
	text	   *category;
	bool		age_null;
	Datum		max_age;
	TimestampTz cutoff;			/* now() - max_age */
	bool		count_null;
	int64		max_count;
} Policy;

/*
 * policy_row
 *		A row of es_retention_policies (category, max_age, max_count,
 *		cutoff) as a Policy, appended to the List *arg.
 */
static void
policy_row(HeapTuple tup, TupleDesc desc, bool last, void *arg)
{
	List	  **policies = arg;
	Policy	   *p = palloc0(sizeof(Policy));
	bool		isnull;

	p->category = DatumGetTextPCopy(SPI_getbinval(tup, desc, 1, &isnull));
	p->max_age = SPI_getbinval(tup, desc, 2, &p->age_null);
	if (!p->age_null)
		p->max_age = datumCopy(p->max_age, false, sizeof(Interval));
	p->max_count = DatumGetInt64(SPI_getbinval(tup, desc, 3, &p->count_null));
	p->cutoff = p->age_null ? DT_NOBEGIN :
		DatumGetTimestampTz(SPI_getbinval(tup, desc, 4, &isnull));
	*policies = lappend(*policies, p);
}

/*
 * describe_policy
 *		"max_age 30 days, max_count 1000": the reason an audit row gives.
 */
static char *
describe_policy(Datum max_age, bool age_null, int64 max_count, bool count_null)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "retention policy:");
	if (!age_null)
		appendStringInfo(&buf, " max_age %s",
						 DatumGetCString(DirectFunctionCall1(interval_out, max_age)));
	if (!count_null)
		appendStringInfo(&buf, "%s max_count " INT64_FORMAT, age_null ? "" : ",", max_count);
	return buf.data;
}

PG_FUNCTION_INFO_V1(es_apply_retention);

/*
 * es_apply_retention(max_events int DEFAULT 10000) RETURNS bigint
 *
 * Deletes up to max_events events that the retention policies no longer
 * keep; returns how many it deleted.  Call it again while it returns
 * max_events.
 */
Datum
es_apply_retention(PG_FUNCTION_ARGS)
{
	int32		max_events;
	int64		total = 0;
	EsAppendState st;
	const EsCatalog *cat;
	List	   *policies = NIL;
	ListCell   *lc;

	es_check_not_null(fcinfo, 0, "max_events");
	max_events = PG_GETARG_INT32(0);
	if (max_events < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_events must be 1 or greater"),
				 errdetail("max_events was %d.", max_events)));
	es_lifecycle_prepare("es_apply_retention()");

	/* the policies, read once */
	query_as_owner(psprintf("SELECT category, max_age, max_count, "
							"pg_catalog.now() OPERATOR(pg_catalog.-) max_age FROM %s ORDER BY category",
							es_qualified_name("es_retention_policies")),
				   0, NULL, NULL, policy_row, &policies);

	/* es_events and its stream index, for deleting (no executor needed) */
	cat = es_catalog();
	memset(&st, 0, sizeof(st));
	st.rel = table_open(cat->events, RowExclusiveLock);
	st.stream_index = index_open(cat->stream_index, RowExclusiveLock);
	st.slot = table_slot_create(st.rel, NULL);

	foreach(lc, policies)
	{
		Policy	   *p = lfirst(lc);
		int64		done = 0;

		if (total >= max_events)
			break;
		if (!p->age_null)
			done += apply_max_age(&st, p->category, p->cutoff, max_events - total);
		if (!p->count_null && total + done < max_events)
			done += apply_max_count(&st, p->category, p->max_count,
									max_events - total - done);
		if (done > 0)
			es_erasure_record("retention", NULL, NULL, text_to_cstring(p->category),
							  -1, -1, done, NULL,
							  cstring_to_text(describe_policy(p->max_age, p->age_null,
															  p->max_count, p->count_null)));
		total += done;
	}

	ExecDropSingleTupleTableSlot(st.slot);
	index_close(st.stream_index, NoLock);
	table_close(st.rel, NoLock);
	PG_RETURN_INT64(total);
}

PG_FUNCTION_INFO_V1(es_set_retention);

/*
 * es_set_retention(category text, max_age interval DEFAULT NULL,
 *					max_count bigint DEFAULT NULL) RETURNS void
 *
 * Sets the category's retention policy (both NULL: removes it).  The first
 * role to set one owns it; changing or removing it needs membership in
 * that role.
 */
Datum
es_set_retention(PG_FUNCTION_ARGS)
{
	text	   *category;
	char	   *what;
	Oid			owner = InvalidOid;
	EsSavedUser saved;
	Oid			types[4] = {TEXTOID, INTERVALOID, INT8OID, OIDOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};

	es_check_not_null(fcinfo, 0, "category");
	category = PG_GETARG_TEXT_PP(0);
	es_check_category(category);
	what = psprintf("retention policy of category \"%s\"", text_to_cstring(category));
	if (!PG_ARGISNULL(1))
	{
		Interval   *zero = palloc0(sizeof(Interval));

		if (!DatumGetBool(DirectFunctionCall2(interval_gt, PG_GETARG_DATUM(1),
											  IntervalPGetDatum(zero))))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_age must be positive"),
					 errhint("Pass NULL for no age limit.")));
	}
	if (!PG_ARGISNULL(2) && PG_GETARG_INT64(2) < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_count must be 1 or greater"),
				 errdetail("max_count was " INT64_FORMAT "; a stream's newest event is always kept.",
						   PG_GETARG_INT64(2)),
				 errhint("Pass NULL for no count limit.")));
	PreventCommandIfReadOnly("es_set_retention()");

	/* the existing policy's owner, locked against a concurrent change */
	values[0] = PointerGetDatum(category);
	es_become_owner(&saved);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args(psprintf("SELECT owner::pg_catalog.oid FROM %s WHERE category OPERATOR(pg_catalog.=) $1 FOR UPDATE",
									   es_qualified_name("es_retention_policies")),
							  1, types, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "reading the retention policy failed");
	if (SPI_processed > 0)
	{
		bool		isnull;

		owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
											   1, &isnull));
	}
	SPI_finish();
	es_restore_user(&saved);
	if (OidIsValid(owner))
		es_check_member(owner, what);

	values[1] = PG_GETARG_DATUM(1);
	nulls[1] = PG_ARGISNULL(1) ? 'n' : ' ';
	values[2] = PG_GETARG_DATUM(2);
	nulls[2] = PG_ARGISNULL(2) ? 'n' : ' ';
	values[3] = ObjectIdGetDatum(GetUserId());
	if (PG_ARGISNULL(1) && PG_ARGISNULL(2))
		(void) es_execute_as_owner(psprintf("DELETE FROM %s WHERE category OPERATOR(pg_catalog.=) $1",
											es_qualified_name("es_retention_policies")),
								   1, types, values, nulls, SPI_OK_DELETE);
	else
		(void) es_execute_as_owner(psprintf("INSERT INTO %s AS p (category, max_age, max_count, owner) "
											"VALUES ($1, $2, $3, $4::pg_catalog.regrole) "
											"ON CONFLICT (category) DO UPDATE SET max_age = EXCLUDED.max_age, "
											"max_count = EXCLUDED.max_count, updated_at = pg_catalog.now()",
											es_qualified_name("es_retention_policies")),
								   4, types, values, nulls, SPI_OK_INSERT);
	PG_RETURN_VOID();
}
