/*-------------------------------------------------------------------------
 *
 * read.c
 *	  es_load, es_stream_version, es_read_all, es_read_category.
 *
 * Stream reads (es_load, es_stream_version) see the stream as the caller's
 * snapshot does: a stream's events commit in version order, since appenders
 * to one stream are serialised, so any snapshot sees a prefix of a stream.
 *
 * Log reads (es_read_all, es_read_category) return only positions at or
 * below the high-water mark of position.c, read with a snapshot taken after
 * the mark is known, so a reader that pages with the last position it saw
 * never skips an event that commits late.  Under REPEATABLE READ and
 * SERIALIZABLE the transaction's snapshot is fixed and may miss events below
 * the mark that committed after it was taken; there the result is cut at the
 * first event that the transaction snapshot cannot see, so the reader gets
 * a gap-free prefix that is consistent with its snapshot.  SERIALIZABLE
 * readers also take a predicate lock on the store, so appends concurrent
 * with a read-write serializable transaction that read the log are
 * serialisation conflicts, as for any other read of a table.
 *
 * All four scan one B-tree index of es_events directly and return rows of
 * the es_events row type through a tuplestore (materialize mode), each event
 * passed through the upcasting step of upcast.c on the way.
 *
 * The result tuplestores of es_load, es_read_all and es_read_category live
 * in one memory context per backend (the result arena) instead of the
 * query's: a page of 1,000 events is some 500 kB, and allocating it afresh
 * in every query let glibc hand back new pages (mmap, or the heap grown and
 * trimmed again), ~25 minor page faults per page and ~650 per 10,000-event
 * es_load.  The executor frees each result with tuplestore_end, whose
 * pfree's put the chunks on the arena's free lists for the next call.  The
 * arena is only reset when no query that may still read a result in it is
 * alive (each such query's context gets a reset callback) and either it
 * grew beyond twice work_mem or a (sub)transaction aborted while such a
 * query was alive (an aborted query's result is never ended, so its chunks
 * would otherwise stay).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/predicate.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "compat.h"
#include "event_sourcing.h"

/*
 * emit
 *		Add the row in slot to the function's result.
 *
 * A stored tuple that has every column of the current row type is copied as
 * it is (a memcpy into the tuplestore).  One written before a column was
 * added by an upgrade is deformed through the slot instead, which fills in
 * the column's default, so results always match the current row type.
 */
static inline void
emit(ReturnSetInfo *rsinfo, TupleTableSlot *slot)
{
	HeapTuple	tuple = ExecFetchSlotHeapTuple(slot, false, NULL);

	if (HeapTupleHeaderGetNatts(tuple->t_data) == rsinfo->setDesc->natts)
		tuplestore_puttuple(rsinfo->setResult, tuple);
	else
	{
		slot_getallattrs(slot);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc,
							 slot->tts_values, slot->tts_isnull);
	}
}

/* The result arena, and the live queries that may read results in it. */
#define ES_MAX_LIVE_QUERIES 16

typedef struct ResultQuery
{
	MemoryContext query;		/* NULL: a free entry */
	MemoryContextCallback callback; /* on query's reset or deletion */
} ResultQuery;

static MemoryContext result_arena = NULL;
static ResultQuery live_queries[ES_MAX_LIVE_QUERIES];
static int	n_live_queries = 0;
static bool result_arena_dirty = false;

/*
 * result_arena_trim
 *		Reset the arena when no live query can read a result in it any more
 *		and it may hold leaked results (after an abort) or grew large.
 *
 * Resetting returns all but the first block to malloc: a steady reader
 * keeps what its pages need, a one-off huge read does not pin its memory.
 */
static void
result_arena_trim(void)
{
	if (result_arena == NULL || n_live_queries > 0)
		return;
	if (result_arena_dirty ||
		MemoryContextMemAllocated(result_arena, false) > (Size) work_mem * 2048)
	{
		MemoryContextReset(result_arena);
		result_arena_dirty = false;
	}
}

/*
 * result_query_gone
 *		Reset callback of a query context that has results in the arena: the
 *		query has ended (its results were ended with it) or failed.
 */
static void
result_query_gone(void *arg)
{
	ResultQuery *rq = (ResultQuery *) arg;

	rq->query = NULL;
	n_live_queries--;
	/* outside a running transaction: an abort, results perhaps not ended */
	if (!IsTransactionState())
		result_arena_dirty = true;
	result_arena_trim();
}

/*
 * result_xact_callback, result_subxact_callback
 *		An abort while queries with results in the arena are alive may leave
 *		results that no tuplestore_end will free: reset the arena once those
 *		queries are gone.  (A query whose context goes away during the abort
 *		itself is caught by result_query_gone.)  Aborts while no result is
 *		alive leave the arena as it is.
 */
static void
result_xact_callback(XactEvent event, void *arg)
{
	if ((event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT) &&
		n_live_queries > 0)
		result_arena_dirty = true;
}

static void
result_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB && n_live_queries > 0)
		result_arena_dirty = true;
}

/*
 * result_context
 *		The context a result tuplestore of the query with context 'query'
 *		lives in: the arena, with the query registered as live; the query's
 *		own context when too many queries are live at once.
 */
static MemoryContext
result_context(MemoryContext query)
{
	int			free_slot = -1;

	if (result_arena == NULL)
	{
		result_arena = AllocSetContextCreate(TopMemoryContext,
											 "event_sourcing read results",
											 ALLOCSET_DEFAULT_SIZES);
		RegisterXactCallback(result_xact_callback, NULL);
		RegisterSubXactCallback(result_subxact_callback, NULL);
	}
	for (int i = 0; i < ES_MAX_LIVE_QUERIES; i++)
	{
		if (live_queries[i].query == query)
			return result_arena;
		if (live_queries[i].query == NULL && free_slot < 0)
			free_slot = i;
	}
	if (free_slot < 0)
		return query;

	live_queries[free_slot].query = query;
	live_queries[free_slot].callback.func = result_query_gone;
	live_queries[free_slot].callback.arg = &live_queries[free_slot];
	MemoryContextRegisterResetCallback(query, &live_queries[free_slot].callback);
	n_live_queries++;
	return result_arena;
}

/*
 * begin_result
 *		Set up a materialize-mode result (as InitMaterializedSRF), its
 *		tuplestore in the result arena.
 */
static void
begin_result(FunctionCallInfo fcinfo)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext query;
	MemoryContext old;
	TupleDesc	tupdesc;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-valued function called in context that cannot accept a set")));
	if (!(rsinfo->allowedModes & SFRM_Materialize))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("materialize mode required, but it is not allowed in this context")));

	query = rsinfo->econtext->ecxt_per_query_memory;
	old = MemoryContextSwitchTo(query);
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	rsinfo->setDesc = tupdesc;
	rsinfo->returnMode = SFRM_Materialize;

	MemoryContextSwitchTo(result_context(query));
	rsinfo->setResult =
		tuplestore_begin_heap((rsinfo->allowedModes & SFRM_Materialize_Random) != 0,
							  false, work_mem);
	MemoryContextSwitchTo(old);
}

/*
 * es_begin_result, es_result_put
 *		begin_result and emit, for other readers of the log that return
 *		es_events rows (subscription_read.c).
 */
void
es_begin_result(FunctionCallInfo fcinfo)
{
	begin_result(fcinfo);
}

void
es_result_put(ReturnSetInfo *rsinfo, TupleTableSlot *slot)
{
	emit(rsinfo, slot);
}

/*
 * check_max_count
 *		max_count is a LIMIT: 0 returns nothing, negative is an error.
 */
static void
check_max_count(int32 max_count)
{
	if (max_count < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_count must not be negative"),
				 errdetail("max_count was %d.", max_count)));
}

/*
 * check_after_position
 *		after_position is 0 (the start) or a position seen before.
 */
static void
check_after_position(int64 after)
{
	if (after < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("after_position must not be negative"),
				 errdetail("after_position was " INT64_FORMAT ".", after),
				 errhint("Pass 0 to read from the start of the log.")));
}

/*
 * es_stream_scan_begin
 *		Start reading one stream's events from version 'from' to 'to'
 *		(inclusive; to < 0: to the end) in version order, with 'snapshot'.
 */
EsStreamScan *
es_stream_scan_begin(text *stream_id, int64 from, int64 to, Snapshot snapshot)
{
	const EsCatalog *cat = es_catalog();
	EsStreamScan *s = palloc0(sizeof(EsStreamScan));
	int			nkeys = 2;

	s->rel = table_open(cat->events, AccessShareLock);
	s->index = index_open(cat->stream_index, AccessShareLock);
	s->slot = table_slot_create(s->rel, NULL);

	ScanKeyInit(&s->keys[0], 1, BTEqualStrategyNumber, F_TEXTEQ,
				PointerGetDatum(stream_id));
	ScanKeyInit(&s->keys[1], 2, BTGreaterEqualStrategyNumber, F_INT8GE,
				Int64GetDatum(from));
	if (to >= 0)
		ScanKeyInit(&s->keys[nkeys++], 2, BTLessEqualStrategyNumber, F_INT8LE,
					Int64GetDatum(to));

	s->scan = index_beginscan(s->rel, s->index, snapshot, nkeys, 0);
	index_rescan(s->scan, s->keys, nkeys, NULL, 0);
	return s;
}

/*
 * es_stream_scan_next
 *		The next event as a slot of es_events, or NULL at the end.
 */
TupleTableSlot *
es_stream_scan_next(EsStreamScan *s)
{
	if (index_getnext_slot(s->scan, ForwardScanDirection, s->slot))
		return s->slot;
	return NULL;
}

/*
 * es_stream_scan_end
 *		Release what es_stream_scan_begin acquired (locks stay until commit).
 */
void
es_stream_scan_end(EsStreamScan *s)
{
	index_endscan(s->scan);
	ExecDropSingleTupleTableSlot(s->slot);
	index_close(s->index, AccessShareLock);
	table_close(s->rel, AccessShareLock);
	pfree(s);
}

PG_FUNCTION_INFO_V1(es_load);

/*
 * es_load(stream_id text, from_version bigint DEFAULT 1,
 *		   to_version bigint DEFAULT NULL) RETURNS SETOF es_events
 *
 * The stream's events in version order, bounds inclusive.
 */
Datum
es_load(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	text	   *stream_id;
	int64		from;
	int64		to = -1;
	EsStreamScan *scan;
	TupleTableSlot *slot;
	EsUpcaster *upcaster;
	EsScopeHold hold = ES_SCOPE_HOLD_INIT;

	es_check_not_null(fcinfo, 0, "stream_id");
	es_check_not_null(fcinfo, 1, "from_version");
	stream_id = PG_GETARG_TEXT_PP(0);
	es_check_stream_id(stream_id);
	from = PG_GETARG_INT64(1);
	if (from < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("from_version must be at least 1"),
				 errdetail("from_version was " INT64_FORMAT ".", from),
				 errhint("Versions count from 1.")));

	begin_result(fcinfo);

	if (!PG_ARGISNULL(2))
	{
		to = PG_GETARG_INT64(2);
		if (to < from)
			return (Datum) 0;
	}

	upcaster = es_upcast_begin();
	scan = es_stream_scan_begin(stream_id, from, to, GetActiveSnapshot());
	/* the upcasters' scope is held across events (callback.c) */
	while ((slot = es_stream_scan_next(scan)) != NULL)
	{
		/* an upcast event goes straight into the result: its row made once */
		if (!es_upcast_put(upcaster, slot, &hold, rsinfo->setResult, rsinfo->setDesc))
			emit(rsinfo, slot);
	}
	es_scope_hold_release(&hold);
	es_stream_scan_end(scan);
	es_upcast_end(upcaster);
	return (Datum) 0;
}

/*
 * recorded_at_of
 *		recorded_at of one version of the stream, by a rescan of 'scan'.
 */
static bool
recorded_at_of(IndexScanDesc scan, ScanKey keys, TupleTableSlot *slot,
			   int64 version, TimestampTz *ts)
{
	bool		found;
	bool		isnull;

	keys[1].sk_argument = Int64GetDatum(version);
	index_rescan(scan, keys, 2, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	if (found)
		*ts = DatumGetTimestampTz(slot_getattr(slot, Anum_es_events_recorded_at, &isnull));
	ExecClearTuple(slot);
	return found;
}

/*
 * es_stream_head
 *		The stream's current version in the caller's snapshot, or with
 *		as_of (not NULL) the highest version recorded at or before *as_of;
 *		0 when there is none.
 *
 * recorded_at never decreases within a stream, so as_of is a binary search
 * over versions: O(log n) index probes and no index on recorded_at.
 */
int64
es_stream_head(text *stream_id, const TimestampTz *as_of)
{
	const EsCatalog *cat = es_catalog();
	Relation	rel;
	Relation	index;
	TupleTableSlot *slot;
	IndexScanDesc scan;
	ScanKeyData keys[2];
	int64		current = 0;
	bool		isnull;

	rel = table_open(cat->events, AccessShareLock);
	index = index_open(cat->stream_index, AccessShareLock);
	slot = table_slot_create(rel, NULL);

	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_TEXTEQ,
				PointerGetDatum(stream_id));
	scan = index_beginscan(rel, index, GetActiveSnapshot(), 1, 0);
	index_rescan(scan, keys, 1, NULL, 0);
	if (index_getnext_slot(scan, BackwardScanDirection, slot))
		current = DatumGetInt64(slot_getattr(slot, Anum_es_events_stream_version, &isnull));
	ExecClearTuple(slot);
	index_endscan(scan);

	if (as_of != NULL && current > 0)
	{
		int64		lo = 0;
		int64		hi = current;

		/* invariant: versions <= lo are at or before as_of; > hi after it */
		ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(0));
		scan = index_beginscan(rel, index, GetActiveSnapshot(), 2, 0);
		while (lo < hi)
		{
			int64		mid = lo + (hi - lo + 1) / 2;
			TimestampTz ts;

			/*
			 * A missing version was removed (es_truncate_stream, retention,
			 * es_delete_stream): they remove a prefix of the stream, recorded
			 * no later than what stays, so count it as at or before as_of.
			 * A fold to such a version then fails loudly (aggregate.c).
			 */
			if (!recorded_at_of(scan, keys, slot, mid, &ts) || ts <= *as_of)
				lo = mid;
			else
				hi = mid - 1;
		}
		index_endscan(scan);
		current = lo;
	}

	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
	table_close(rel, AccessShareLock);
	return current;
}

PG_FUNCTION_INFO_V1(es_stream_version);

/*
 * es_stream_version(stream_id text, as_of timestamptz DEFAULT NULL)
 *		RETURNS bigint
 *
 * The stream's current version, or with as_of the highest version recorded
 * at or before that time; 0 when there is none.
 */
Datum
es_stream_version(PG_FUNCTION_ARGS)
{
	text	   *stream_id;
	TimestampTz as_of;

	es_check_not_null(fcinfo, 0, "stream_id");
	stream_id = PG_GETARG_TEXT_PP(0);
	es_check_stream_id(stream_id);
	if (PG_ARGISNULL(1))
		PG_RETURN_INT64(es_stream_head(stream_id, NULL));
	as_of = PG_GETARG_TIMESTAMPTZ(1);
	PG_RETURN_INT64(es_stream_head(stream_id, &as_of));
}

/*
 * es_latest_lookup
 *		The first event the latest snapshot sees through an index of
 *		es_events with these scan keys: true, with *stream (a copy) and
 *		*version when asked for, or false.  For one-off probes outside a
 *		read (es_wait's "is there an event after", es_execute's command ids).
 */
bool
es_latest_lookup(Oid indexoid, ScanKey keys, int nkeys, text **stream, int64 *version)
{
	Relation	rel;
	Relation	index;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	Snapshot	snap;
	bool		found;
	bool		isnull;

	rel = table_open(es_catalog()->events, AccessShareLock);
	index = index_open(indexoid, AccessShareLock);
	slot = table_slot_create(rel, NULL);
	snap = RegisterSnapshot(GetLatestSnapshot());
	scan = index_beginscan(rel, index, snap, nkeys, 0);
	index_rescan(scan, keys, nkeys, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	if (found && stream != NULL)
		*stream = DatumGetTextPCopy(slot_getattr(slot, Anum_es_events_stream_id, &isnull));
	if (found && version != NULL)
		*version = DatumGetInt64(slot_getattr(slot, Anum_es_events_stream_version, &isnull));
	index_endscan(scan);
	UnregisterSnapshot(snap);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * es_event_location
 *		Where the latest snapshot sees an event id stored: true with *stream
 *		(a copy) and *version, or false.  (es_execute's command ids.)
 */
bool
es_event_location(const pg_uuid_t *id, text **stream, int64 *version)
{
	ScanKeyData key;

	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_UUID_EQ, UUIDPGetDatum(id));
	return es_latest_lookup(es_catalog()->event_id_index, &key, 1, stream, version);
}

/*
 * es_log_scan_begin
 *		Start reading the global log after position 'after', in global order
 *		and never past the high-water mark; of one category when category is
 *		not NULL.  Each event comes out of es_log_scan_next upcast.
 *
 * This is the one reader of the global log: es_read_all, es_read_category
 * and async projections all go through it.
 */
EsLogScan *
es_log_scan_begin(text *category, int64 after)
{
	const EsCatalog *cat = es_catalog();
	Oid			events = cat->events;
	Oid			indexoid = category ? cat->category_index : cat->position_index;
	EsLogScan  *s = palloc0(sizeof(EsLogScan));
	int			nkeys = 0;
	AttrNumber	posattr = category ? 2 : 1;

	s->mcxt = CurrentMemoryContext;
	s->last_seen = after;
	s->high = es_high_water_mark(cat, after);
	if (s->high <= after)
	{
		s->complete = true;
		return s;
	}

	s->rel = table_open(events, AccessShareLock);
	s->index = index_open(indexoid, AccessShareLock);
	s->slot = table_slot_create(s->rel, NULL);

	/* taken after the mark: every position <= high has ended by now */
	s->latest = RegisterSnapshot(GetLatestSnapshot());
	if (IsolationUsesXactSnapshot())
	{
		s->xact = GetTransactionSnapshot();
		PredicateLockRelation(s->rel, s->xact);
	}

	if (category)
		ScanKeyInit(&s->keys[nkeys++], 1, BTEqualStrategyNumber, F_TEXTEQ,
					PointerGetDatum(category));
	ScanKeyInit(&s->keys[nkeys++], posattr, BTGreaterStrategyNumber, F_INT8GT,
				Int64GetDatum(after));

	s->upcaster = es_upcast_begin();
	s->scan = index_beginscan(s->rel, s->index, s->latest, nkeys, 0);
	index_rescan(s->scan, s->keys, nkeys, NULL, 0);
	return s;
}

/*
 * es_log_scan_next
 *		The next event (upcast) as a slot of es_events, or NULL at the end.
 *
 * At the end, s->complete says whether every event up to s->high was
 * returned (false: the transaction snapshot cannot see the next one, so a
 * reader must continue from the last event it got, not from s->high).
 */
TupleTableSlot *
es_log_scan_next(EsLogScan *s)
{
	bool		isnull;
	int64		pos;
	bool		found;
	bool		visible = true;
	MemoryContext old;

	if (s->scan == NULL || s->done)
		return NULL;

	for (;;)
	{
		/*
		 * The index scan allocates state that must live as long as the scan
		 * (btree remembers dead entries to mark them at the next page), so
		 * it runs in the context the scan began in, not in the caller's
		 * per-event context.
		 */
		old = MemoryContextSwitchTo(s->mcxt);
		found = index_getnext_slot(s->scan, ForwardScanDirection, s->slot);
		if (found)
		{
			pos = DatumGetInt64(slot_getattr(s->slot, Anum_es_events_global_position, &isnull));
			/* the transaction snapshot cannot see this one: stop before it */
			if (pos <= s->high && s->xact)
				visible = table_tuple_satisfies_snapshot(s->rel, s->slot, s->xact);
		}
		MemoryContextSwitchTo(old);

		if (!found || pos > s->high)
		{
			s->done = true;
			s->complete = true;
			return NULL;
		}
		if (!visible)
		{
			s->done = true;
			return NULL;
		}
		s->last_seen = pos;
		if (s->accept == NULL || s->accept(s->slot, s->accept_arg))
			break;
		CHECK_FOR_INTERRUPTS();
	}
	/* upcasting allocates in the caller's context: per event */
	es_upcast_slot_held(s->upcaster, s->slot, s->hold);
	return s->slot;
}

/*
 * es_log_scan_end
 *		Release what es_log_scan_begin acquired (locks stay until commit).
 */
void
es_log_scan_end(EsLogScan *s)
{
	if (s->scan != NULL)
	{
		index_endscan(s->scan);
		es_upcast_end(s->upcaster);
		UnregisterSnapshot(s->latest);
		ExecDropSingleTupleTableSlot(s->slot);
		index_close(s->index, AccessShareLock);
		table_close(s->rel, AccessShareLock);
	}
	pfree(s);
}

/*
 * read_log
 *		Events after 'after' in global order, up to max_count and never
 *		past the high-water mark; of one category when category is not NULL.
 */
static void
read_log(FunctionCallInfo fcinfo, text *category, int64 after, int32 max_count)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	EsLogScan  *scan;
	TupleTableSlot *slot;
	int32		count = 0;
	EsScopeHold hold = ES_SCOPE_HOLD_INIT;

	begin_result(fcinfo);
	if (max_count == 0)
		return;

	scan = es_log_scan_begin(category, after);
	/* the upcasters' scope is held across events (callback.c) */
	scan->hold = &hold;
	while (count < max_count && (slot = es_log_scan_next(scan)) != NULL)
	{
		emit(rsinfo, slot);
		count++;
	}
	es_scope_hold_release(&hold);
	es_log_scan_end(scan);
}

PG_FUNCTION_INFO_V1(es_read_all);

/*
 * es_read_all(after_position bigint DEFAULT 0, max_count int DEFAULT 1000)
 *		RETURNS SETOF es_events
 */
Datum
es_read_all(PG_FUNCTION_ARGS)
{
	es_check_not_null(fcinfo, 0, "after_position");
	es_check_not_null(fcinfo, 1, "max_count");
	check_after_position(PG_GETARG_INT64(0));
	check_max_count(PG_GETARG_INT32(1));

	read_log(fcinfo, NULL, PG_GETARG_INT64(0), PG_GETARG_INT32(1));
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(es_read_category);

/*
 * es_read_category(category text, after_position bigint DEFAULT 0,
 *					max_count int DEFAULT 1000) RETURNS SETOF es_events
 *
 * A category is the part of stream_id before the first '-'.
 */
Datum
es_read_category(PG_FUNCTION_ARGS)
{
	text	   *category;
	const char *dash;

	es_check_not_null(fcinfo, 0, "category");
	es_check_not_null(fcinfo, 1, "after_position");
	es_check_not_null(fcinfo, 2, "max_count");
	category = PG_GETARG_TEXT_PP(0);
	dash = memchr(VARDATA_ANY(category), '-', VARSIZE_ANY_EXHDR(category));
	if (dash != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a category cannot contain \"-\""),
				 errdetail("The category of a stream is the part of its stream_id before the first \"-\"."),
				 errhint("Pass \"%s\" to read the category of stream \"%s\".",
						 pnstrdup(VARDATA_ANY(category), dash - VARDATA_ANY(category)),
						 text_to_cstring(category))));
	check_after_position(PG_GETARG_INT64(1));
	check_max_count(PG_GETARG_INT32(2));

	read_log(fcinfo, category, PG_GETARG_INT64(1), PG_GETARG_INT32(2));
	return (Datum) 0;
}
