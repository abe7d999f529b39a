/*-------------------------------------------------------------------------
 *
 * lifecycle.c
 *	  Removing and rewriting stored events: es_delete_stream,
 *	  es_truncate_stream, es_redact_event, and the erasure audit.
 *
 * Events are immutable for every role: a statement-level trigger refuses
 * every UPDATE, DELETE and TRUNCATE of es_events (immutable.c).  The
 * functions here are the only way around it, and they do not go around it
 * with anything a session can set: they delete and update heap tuples
 * directly (table_tuple_delete / table_tuple_update plus index insertion, as
 * logical replication's apply worker does), which fires no statement
 * trigger.  No user code runs while they do, except the inline projections
 * fired by the system events they append, which run as their owners through
 * callback.c like every other handler call.
 *
 * Every operation takes the stream's lock (the lock es_append takes), so it
 * is serialised with appends, with the others, and with retention passes
 * (retention.c), and reads the stream's head under it: a deleted stream
 * refuses all of them with es_stream_deleted.  A stream's newest event is
 * never removed (es_truncate_stream stops below it, retention too), so the
 * head -- and es_append's version check -- survive every operation.
 *
 * Each operation records one row in es_erasures: when, which role, what
 * (stream, event, versions, count, paths) and why, never the removed data.
 * Deletion and redaction also append a system event ($StreamDeleted,
 * $EventRedacted) to the stream, so the global log, projections and
 * readers learn of them as of any event.  All of it happens in the caller's
 * transaction: a rollback restores every row.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "compat.h"
#include "event_sourcing.h"

/*
 * es_lifecycle_prepare
 *		What every removal needs before it starts: a writable primary whose
 *		global log is its own.  Raises 25006 in a read-only transaction and
 *		on a hot standby.
 */
void
es_lifecycle_prepare(const char *fname)
{
	PreventCommandIfReadOnly(fname);
	PreventCommandIfParallelMode(fname);
	es_check_log_writable();
}

/*
 * es_erasure_record
 *		Add one row to the erasure audit, as the extension owner (the table
 *		refuses UPDATE and DELETE; nobody but the owner may INSERT).  NULL
 *		pointers and negative numbers are stored as NULL.  The role is the
 *		current user of the caller, captured before becoming the owner (a
 *		SECURITY DEFINER wrapper's owner, when called through one); the
 *		session role is who logged in (or SET SESSION AUTHORIZATION).
 */
void
es_erasure_record(const char *operation, text *stream_id, pg_uuid_t *event_id,
				  const char *category, int64 from_version, int64 to_version,
				  int64 event_count, ArrayType *paths, text *reason)
{
	Oid			types[11] = {TEXTOID, NAMEOID, TEXTOID, UUIDOID, TEXTOID,
	INT8OID, INT8OID, INT8OID, TEXTARRAYOID, TEXTOID, NAMEOID};
	Datum		values[11];
	char		nulls[11];

	memset(nulls, ' ', sizeof(nulls));
	values[0] = CStringGetTextDatum(operation);
	values[1] = CStringGetDatum(GetUserNameFromId(GetUserId(), false));
	values[10] = CStringGetDatum(GetUserNameFromId(GetSessionUserId(), false));
	values[2] = PointerGetDatum(stream_id);
	nulls[2] = stream_id ? ' ' : 'n';
	values[3] = UUIDPGetDatum(event_id);
	nulls[3] = event_id ? ' ' : 'n';
	values[4] = category ? CStringGetTextDatum(category) : (Datum) 0;
	nulls[4] = category ? ' ' : 'n';
	values[5] = Int64GetDatum(from_version);
	nulls[5] = from_version >= 0 ? ' ' : 'n';
	values[6] = Int64GetDatum(to_version);
	nulls[6] = to_version >= 0 ? ' ' : 'n';
	values[7] = Int64GetDatum(event_count);
	values[8] = PointerGetDatum(paths);
	nulls[8] = paths ? ' ' : 'n';
	values[9] = PointerGetDatum(reason);
	nulls[9] = reason ? ' ' : 'n';

	(void) es_execute_as_owner(psprintf("INSERT INTO %s (operation, role, stream_id, event_id, "
										"category, from_version, to_version, event_count, paths, reason, session_role) "
										"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
										es_qualified_name("es_erasures")),
							   11, types, values, nulls, SPI_OK_INSERT);
}

/*
 * es_delete_versions
 *		Delete the stream's events with versions from..to whose recorded_at
 *		is before 'before' (DT_NOEND: all of them), at most 'limit' (< 0: no
 *		limit); returns how many were deleted.  Called with the stream
 *		locked, so no other writer touches its rows.
 *
 * The rows are found through the (stream_id, stream_version) index with a
 * dirty snapshot (every committed row, and this transaction's own) and
 * deleted in place: no statement, hence no trigger.
 */
int64
es_delete_versions(EsAppendState *st, text *stream_id, int64 from, int64 to,
				   TimestampTz before, int64 limit)
{
	SnapshotData dirty;
	ScanKeyData keys[3];
	IndexScanDesc scan;
	int64		deleted = 0;
	Snapshot	snap = GetActiveSnapshot();

	if (from > to || limit == 0)
		return 0;
	InitDirtySnapshot(dirty);
	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_TEXTEQ,
				PointerGetDatum(stream_id));
	ScanKeyInit(&keys[1], 2, BTGreaterEqualStrategyNumber, F_INT8GE,
				Int64GetDatum(from));
	ScanKeyInit(&keys[2], 2, BTLessEqualStrategyNumber, F_INT8LE,
				Int64GetDatum(to));
	scan = index_beginscan(st->rel, st->stream_index, &dirty, 3, 0);
	index_rescan(scan, keys, 3, NULL, 0);
	while (index_getnext_slot(scan, ForwardScanDirection, st->slot))
	{
		bool		isnull;

		CHECK_FOR_INTERRUPTS();
		if (before != DT_NOEND &&
			DatumGetTimestampTz(slot_getattr(st->slot, Anum_es_events_recorded_at,
											 &isnull)) >= before)
			continue;
		simple_table_tuple_delete(st->rel, &st->slot->tts_tid, snap);
		if (++deleted == limit)
			break;
	}
	index_endscan(scan);
	ExecClearTuple(st->slot);
	return deleted;
}

/*
 * es_delete_snapshots
 *		Remove the stream's snapshots (of every definition) with versions in
 *		from..to: they hold state derived from removed or rewritten events.
 */
void
es_delete_snapshots(text *stream_id, int64 from, int64 to)
{
	Oid			types[3] = {TEXTOID, INT8OID, INT8OID};
	Datum		values[3];

	values[0] = PointerGetDatum(stream_id);
	values[1] = Int64GetDatum(from);
	values[2] = Int64GetDatum(to);
	(void) es_execute_as_owner(psprintf("DELETE FROM %s WHERE stream_id OPERATOR(pg_catalog.=) $1 "
										"AND version OPERATOR(pg_catalog.>=) $2 "
										"AND version OPERATOR(pg_catalog.<=) $3",
										es_qualified_name("es_snapshots")),
							   3, types, values, NULL, SPI_OK_DELETE);
}

/*
 * json_string
 *		Append a JSON string (or null) to buf.
 */
static void
json_string(StringInfo buf, const char *s)
{
	if (s == NULL)
		appendStringInfoString(buf, "null");
	else
		escape_json(buf, s);
}

/*
 * text_or_null
 *		A text argument, or NULL when it is SQL NULL.
 */
static text *
text_or_null(FunctionCallInfo fcinfo, int argno)
{
	return PG_ARGISNULL(argno) ? NULL : PG_GETARG_TEXT_PP(argno);
}

PG_FUNCTION_INFO_V1(es_delete_stream);

/*
 * es_delete_stream(stream_id text, expected_version bigint DEFAULT NULL,
 *					reason text DEFAULT NULL) RETURNS bigint
 *
 * Removes every event and snapshot of the stream and stores the tombstone
 * $StreamDeleted ({"last_version": n, "reason": ...}) as its only event, at
 * version n + 1; returns n.  expected_version as for es_append.
 */
Datum
es_delete_stream(PG_FUNCTION_ARGS)
{
	text	   *stream_id;
	text	   *reason;
	bool		any_version = PG_ARGISNULL(1);
	int64		expected = any_version ? 0 : PG_GETARG_INT64(1);
	EsAppendState st;
	EsEventInput ev;
	int64		current;
	int64		removed;
	TimestampTz last_recorded;
	TimestampTz recorded_at;
	StringInfoData data;

	es_check_not_null(fcinfo, 0, "stream_id");
	stream_id = PG_GETARG_TEXT_PP(0);
	es_check_stream_id(stream_id);
	if (!any_version)
		es_check_expected_range(expected);
	reason = text_or_null(fcinfo, 2);
	es_lifecycle_prepare("es_delete_stream()");

	es_store_open(&st);
	es_store_lock_stream(stream_id);
	current = es_store_head(&st, stream_id, &last_recorded);
	es_check_expected_version(st.rel, stream_id, any_version, expected, current);

	/* no entry may survive that names the old head (head_cache.c) */
	es_head_cache_forget(stream_id);
	removed = es_delete_versions(&st, stream_id, 1, current, DT_NOEND, -1);
	es_delete_snapshots(stream_id, 0, PG_INT64_MAX);

	initStringInfo(&data);
	appendStringInfo(&data, "{\"last_version\": " INT64_FORMAT ", \"reason\": ", current);
	json_string(&data, reason ? text_to_cstring(reason) : NULL);
	appendStringInfoChar(&data, '}');

	memset(&ev, 0, sizeof(ev));
	ev.type = cstring_to_text(ES_TYPE_STREAM_DELETED);
	ev.data = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(data.data)));
	ev.metadata = es_empty_object();
	ev.original_metadata = ev.metadata;
	/* as es_append's: never earlier than the last event's */
	recorded_at = Max(GetCurrentTimestamp(), last_recorded);
	es_store_insert(&st, stream_id, current + 1, &ev, recorded_at, 0,
					es_catalog()->position_seq);
	ResetPerTupleExprContext(st.estate);
	/* inline projections see the tombstone here, in this transaction */
	es_store_close(&st);

	es_erasure_record("delete_stream", stream_id, NULL, NULL,
					  current > 0 ? 1 : -1, current > 0 ? current : -1,
					  removed, NULL, reason);
	es_notify_append(stream_id);
	es_note_append();
	PG_RETURN_INT64(current);
}

PG_FUNCTION_INFO_V1(es_truncate_stream);

/*
 * es_truncate_stream(stream_id text, before_version bigint,
 *					  reason text DEFAULT NULL) RETURNS bigint
 *
 * Removes the stream's events with versions below before_version (at most
 * the stream's version: the newest event always stays) and the snapshots
 * that only those events could continue; returns how many events went.
 * For a category with an aggregate, a usable snapshot at or after
 * before_version - 1 must exist, or the aggregate's state would be lost.
 */
Datum
es_truncate_stream(PG_FUNCTION_ARGS)
{
	text	   *stream_id;
	int64		before;
	text	   *reason;
	EsAppendState st;
	int64		current;
	int64		removed;
	int64		fingerprint;
	TimestampTz last_recorded;

	es_check_not_null(fcinfo, 0, "stream_id");
	es_check_not_null(fcinfo, 1, "before_version");
	stream_id = PG_GETARG_TEXT_PP(0);
	es_check_stream_id(stream_id);
	before = PG_GETARG_INT64(1);
	reason = text_or_null(fcinfo, 2);
	if (before < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("before_version must be 1 or greater"),
				 errdetail("before_version was " INT64_FORMAT ".", before)));
	es_lifecycle_prepare("es_truncate_stream()");

	es_store_open(&st);
	es_store_lock_stream(stream_id);
	current = es_store_head(&st, stream_id, &last_recorded);
	if (before > current && before > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("before_version " INT64_FORMAT " is past the head of stream \"%s\"",
						before, text_to_cstring(stream_id)),
				 errdetail("The stream's version is " INT64_FORMAT "; its newest event is always kept, so that its version stays known.",
						   current),
				 errhint("Pass at most " INT64_FORMAT ", or delete the whole stream with es_delete_stream.",
						 current)));

	/* the aggregate must be able to fold on from what stays */
	fingerprint = es_stream_fingerprint(stream_id);
	if (fingerprint != 0 && before > 1)
	{
		int64		snap_version = -1;
		Jsonb	   *state;

		if (!es_snapshot_find(stream_id, fingerprint, current, &snap_version, &state))
			snap_version = -1;
		if (snap_version < before - 1)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot truncate stream \"%s\" before version " INT64_FORMAT,
							text_to_cstring(stream_id), before),
					 errdetail("Its category has an aggregate, whose newest usable snapshot of the stream is %s; without one at version " INT64_FORMAT " or later, the stream's state could not be folded any more.",
							   snap_version >= 0 ?
							   psprintf("at version " INT64_FORMAT, snap_version) : "none",
							   before - 1),
					 errhint("Take a snapshot first (fold once with es_aggregate, or es_snapshot_save), or truncate before an earlier version."),
					 errtableconstraint(st.rel, "es_stream_truncated")));
	}

	removed = es_delete_versions(&st, stream_id, 1, before - 1, DT_NOEND, -1);
	/* snapshots below before - 1 can no longer be folded on */
	if (before > 1)
		es_delete_snapshots(stream_id, 0, before - 2);
	es_store_close(&st);

	es_erasure_record("truncate_stream", stream_id, NULL, NULL,
					  before > 1 ? 1 : -1, before > 1 ? before - 1 : -1,
					  removed, NULL, reason);
	PG_RETURN_INT64(removed);
}

/*
 * redact_targets
 *		Split the paths of es_redact_event into those of data and those of
 *		metadata, each as a text[] for jsonb's #- (jsonb_delete_path).  A
 *		path is keys (or array indexes) joined by '.', such as
 *		"customer.email"; "metadata." before it means the event's metadata,
 *		"data." (optional) its data.  "data" or "metadata" alone means all of
 *		it (*all_data / *all_metadata).
 */
static void
redact_targets(ArrayType *paths, List **data_paths, List **meta_paths,
			   bool *all_data, bool *all_metadata)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	deconstruct_array(paths, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("paths must not be empty"),
				 errhint("Pass NULL to erase all of the event's data.")));
	for (int i = 0; i < n; i++)
	{
		char	   *path;
		char	   *p;
		List	  **target = data_paths;
		List	   *keys = NIL;
		Datum	   *kd;
		int			k = 0;
		ListCell   *lc;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("paths must not contain nulls")));
		path = TextDatumGetCString(elems[i]);
		if (strcmp(path, "data") == 0)
		{
			*all_data = true;
			continue;
		}
		if (strcmp(path, "metadata") == 0)
		{
			*all_metadata = true;
			continue;
		}
		if (strncmp(path, "metadata.", 9) == 0)
		{
			target = meta_paths;
			path += 9;
		}
		else if (strncmp(path, "data.", 5) == 0)
			path += 5;

		for (p = path;;)
		{
			char	   *dot = strchr(p, '.');
			int			len = dot ? (int) (dot - p) : (int) strlen(p);

			if (len == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("path \"%s\" has an empty key", TextDatumGetCString(elems[i])),
						 errdetail("A path is keys joined by \".\", such as \"customer.email\" or \"metadata.ip\".")));
			keys = lappend(keys, cstring_to_text_with_len(p, len));
			if (dot == NULL)
				break;
			p = dot + 1;
		}
		kd = palloc(sizeof(Datum) * list_length(keys));
		foreach(lc, keys)
			kd[k++] = PointerGetDatum(lfirst(lc));
		*target = lappend(*target,
						  construct_array(kd, k, TEXTOID, -1, false, TYPALIGN_INT));
	}
}

/*
 * redact_jsonb
 *		The object without the given paths (or {} when all goes).
 */
static Jsonb *
redact_jsonb(Jsonb *jb, List *paths, bool all)
{
	ListCell   *lc;

	if (all)
		return es_empty_object();
	foreach(lc, paths)
		jb = DatumGetJsonbP(DirectFunctionCall2(jsonb_delete_path, JsonbPGetDatum(jb),
												PointerGetDatum(lfirst(lc))));
	return jb;
}

/*
 * find_event
 *		Fetch the stored event with this id into st->slot (materialised),
 *		or return false.  Dirty snapshot: committed rows and our own.
 */
static bool
find_event(EsAppendState *st, pg_uuid_t *id)
{
	SnapshotData dirty;
	ScanKeyData key;
	IndexScanDesc scan;
	bool		found;

	InitDirtySnapshot(dirty);
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_UUID_EQ, UUIDPGetDatum(id));
	scan = index_beginscan(st->rel, st->event_id_index, &dirty, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, st->slot);
	if (found)
		ExecMaterializeSlot(st->slot);
	index_endscan(scan);
	return found;
}

/*
 * event_not_found
 *		42704 for an event id that is not stored.
 */
static void
event_not_found(pg_uuid_t *id)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("event %s does not exist",
					DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id)))),
			 errhint("Its stream may have been deleted or truncated, or retention removed it.")));
}

/*
 * update_event
 *		Replace the data and metadata of the row in st->slot, in place (a
 *		new row version, as an UPDATE makes, without the statement).
 */
static void
update_event(EsAppendState *st, Jsonb *data, Jsonb *metadata)
{
	TupleTableSlot *slot = st->slot;
	ItemPointerData tid = slot->tts_tid;
	Datum		values[Natts_es_events];
	bool		nulls[Natts_es_events];
	bool		update_indexes;
	bool		only_summarizing;

	slot_getallattrs(slot);
	memcpy(values, slot->tts_values, sizeof(values));
	memcpy(nulls, slot->tts_isnull, sizeof(nulls));
	values[Anum_es_events_data - 1] = JsonbPGetDatum(data);
	values[Anum_es_events_metadata - 1] = JsonbPGetDatum(metadata);

	/* the old row's values stay valid: the materialised copy is separate */
	slot = ExecStoreHeapTuple(heap_form_tuple(RelationGetDescr(st->rel), values, nulls),
							  MakeSingleTupleTableSlot(RelationGetDescr(st->rel), &TTSOpsHeapTuple),
							  true);
	es_simple_tuple_update(st->rel, &tid, slot, GetActiveSnapshot(),
						   &update_indexes, &only_summarizing);
	if (update_indexes)
		es_insert_index_tuples_upd(st->rri, slot, st->estate, only_summarizing);
	ExecDropSingleTupleTableSlot(slot);
}

PG_FUNCTION_INFO_V1(es_redact_event);

/*
 * es_redact_event(event_id uuid, paths text[] DEFAULT NULL,
 *				   reason text DEFAULT NULL) RETURNS void
 *
 * Erases personal data of one stored event in place (all of its data when
 * paths is NULL), removes the stream's snapshots at or after the event
 * (built from the erased data), and appends $EventRedacted
 * ({"event_id", "version", "paths", "reason"}) to the stream.
 */
Datum
es_redact_event(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *event_id;
	ArrayType  *paths = PG_ARGISNULL(1) ? NULL : PG_GETARG_ARRAYTYPE_P(1);
	text	   *reason = text_or_null(fcinfo, 2);
	List	   *data_paths = NIL;
	List	   *meta_paths = NIL;
	bool		all_data = (paths == NULL);
	bool		all_metadata = false;
	EsAppendState st;
	text	   *stream_id;
	int64		version;
	TimestampTz last_recorded;
	bool		isnull;
	Jsonb	   *data;
	Jsonb	   *metadata;
	StringInfoData notice;
	char	   *id_str;

	es_check_not_null(fcinfo, 0, "event_id");
	event_id = PG_GETARG_UUID_P(0);
	if (paths != NULL)
	{
		if (ARR_NDIM(paths) > 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("paths must be a one-dimensional array")));
		redact_targets(paths, &data_paths, &meta_paths, &all_data, &all_metadata);
	}
	es_lifecycle_prepare("es_redact_event()");

	es_store_open(&st);
	/* the stream first, then its lock, then the row again under it */
	if (!find_event(&st, event_id))
		event_not_found(event_id);
	stream_id = DatumGetTextPCopy(slot_getattr(st.slot, Anum_es_events_stream_id, &isnull));
	ExecClearTuple(st.slot);
	es_store_lock_stream(stream_id);
	(void) es_store_head(&st, stream_id, &last_recorded);
	if (!find_event(&st, event_id))
		event_not_found(event_id);

	version = DatumGetInt64(slot_getattr(st.slot, Anum_es_events_stream_version, &isnull));
	data = redact_jsonb(DatumGetJsonbP(slot_getattr(st.slot, Anum_es_events_data, &isnull)),
						data_paths, all_data);
	metadata = redact_jsonb(DatumGetJsonbP(slot_getattr(st.slot, Anum_es_events_metadata, &isnull)),
							meta_paths, all_metadata);
	update_event(&st, data, metadata);
	ExecClearTuple(st.slot);
	es_delete_snapshots(stream_id, version, PG_INT64_MAX);
	es_store_close(&st);

	es_erasure_record("redact_event", stream_id, event_id, NULL, version, version,
					  1, paths, reason);

	id_str = DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(event_id)));
	initStringInfo(&notice);
	appendStringInfo(&notice, "{\"event_id\": \"%s\", \"version\": " INT64_FORMAT ", \"paths\": ",
					 id_str, version);
	if (paths == NULL)
		appendStringInfoString(&notice, "null");
	else
	{
		Datum	   *elems;
		bool	   *nulls;
		int			n;

		deconstruct_array(paths, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
		appendStringInfoChar(&notice, '[');
		for (int i = 0; i < n; i++)
		{
			if (i > 0)
				appendStringInfoString(&notice, ", ");
			json_string(&notice, TextDatumGetCString(elems[i]));
		}
		appendStringInfoChar(&notice, ']');
	}
	appendStringInfoString(&notice, ", \"reason\": ");
	json_string(&notice, reason ? text_to_cstring(reason) : NULL);
	appendStringInfoChar(&notice, '}');
	(void) es_append_system(stream_id, ES_TYPE_EVENT_REDACTED,
							DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
															   CStringGetDatum(notice.data))));
	PG_RETURN_VOID();
}
