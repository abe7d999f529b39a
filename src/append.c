/*-------------------------------------------------------------------------
 *
 * append.c
 *	  es_append: the only writer of the event store.
 *
 * An append checks its input, locks the stream, reads the stream's head,
 * recognises an idempotent retry, checks the expected version, and inserts
 * the events with positions from the global position sequence.  All of it
 * happens in the caller's transaction, so any error leaves the store as it
 * was.
 *
 * Concurrency.  Appenders to one stream are serialised by a transaction-level
 * lock on the stream (an advisory lock keyed by a 64-bit hash of the stream
 * id, class ES_STREAM_LOCK_CLASS, visible in pg_locks).  The head is read
 * after the lock is granted, with a dirty snapshot, so it includes every
 * committed event and this transaction's own earlier appends whatever the
 * isolation level.  Two appenders with the same expected version therefore
 * never both pass the check and never reach the unique index on
 * (stream_id, stream_version): the second one waits for the first and then
 * fails the check with 40001, the SQLSTATE every driver retries.
 *
 * With the library preloaded, the head usually comes from a shared cache of
 * stream heads instead (head_cache.c), written by every append under the
 * stream lock and trusted only when the (sub)transaction that wrote it
 * committed or is this transaction's own.
 *
 * The rows are inserted through the executor's simple insert path
 * (ExecSimpleRelationInsert, as logical replication's apply worker does):
 * constraints, index insertion and row triggers behave as for an INSERT,
 * without planning a statement per call.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "event_sourcing.h"

/* field4 of the advisory lock tag that locks a stream ("ES") */
#define ES_STREAM_LOCK_CLASS	0x4553
/* seed of the stream id hash behind that lock */
#define ES_STREAM_LOCK_SEED		UINT64CONST(0x6576656e74730001)

/*
 * describe_expected
 *		The expected version as words, for the DETAIL of a failed check.
 */
static char *
describe_expected(int64 expected)
{
	if (expected == 0)
		return psprintf("0 (the stream must not exist)");
	if (expected == -1)
		return psprintf("-1 (the stream must exist)");
	return psprintf(INT64_FORMAT, expected);
}

/*
 * es_check_expected_range
 *		expected_version is NULL, -1, 0 or a positive version.
 */
void
es_check_expected_range(int64 expected)
{
	if (expected < -1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("expected_version must be -1 or greater"),
				 errdetail("expected_version was " INT64_FORMAT ".", expected),
				 errhint("Use NULL for any version, 0 for a stream that must not exist, -1 for one that must exist, or the stream's current version.")));
}

/*
 * es_store_lock_stream
 *		Serialise appenders to one stream until the end of the transaction.
 *
 * Distinct streams whose hashes collide merely share a lock.
 */
void
es_store_lock_stream(text *stream_id)
{
	(void) es_store_try_lock_stream(stream_id, false);
}

/*
 * es_store_try_lock_stream
 *		es_store_lock_stream, or with dont_wait, false at once when another
 *		transaction holds the lock (retention skips such streams rather than
 *		wait, so it never deadlocks with an appender of several streams).
 */
bool
es_store_try_lock_stream(text *stream_id, bool dont_wait)
{
	LOCKTAG		tag;
	uint64		h;

	h = DatumGetUInt64(hash_any_extended((const unsigned char *) VARDATA_ANY(stream_id),
										 VARSIZE_ANY_EXHDR(stream_id),
										 ES_STREAM_LOCK_SEED));
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (h >> 32), (uint32) h,
						 ES_STREAM_LOCK_CLASS);
	return LockAcquire(&tag, ExclusiveLock, false, dont_wait) != LOCKACQUIRE_NOT_AVAIL;
}

/*
 * find_index
 *		The opened index with the given OID among the result relation's.
 */
static Relation
find_index(ResultRelInfo *rri, Oid indexoid)
{
	for (int i = 0; i < rri->ri_NumIndices; i++)
	{
		if (RelationGetRelid(rri->ri_IndexRelationDescs[i]) == indexoid)
			return rri->ri_IndexRelationDescs[i];
	}
	elog(ERROR, "index %u of the event store is not open", indexoid);
	return NULL;				/* keep compiler quiet */
}

/*
 * True while es_append fires the row triggers of the events it inserted:
 * the inline projection trigger dispatches only then, so rows inserted any
 * other way (pg_restore's COPY) are not dispatched.
 */
static bool firing = false;

/*
 * es_append_firing
 *		Is es_append firing the row triggers of its own inserts?
 */
bool
es_append_firing(void)
{
	return firing;
}

/*
 * es_append_firing_suspend
 *		Called around handler calls: an INSERT a handler runs is not ours.
 *		(An error in between needs no cleanup: es_store_close restores.)
 */
void
es_append_firing_suspend(void)
{
	firing = false;
}

/*
 * es_append_firing_resume
 *		Back to dispatching after es_append_firing_suspend.
 */
void
es_append_firing_resume(void)
{
	firing = true;
}

/*
 * es_store_open
 *		Open es_events for insertion, with an executor state to insert through.
 *		Row triggers fire at es_store_close, the inline projection trigger
 *		dispatching unless the caller clears st->dispatch_inline.
 */
void
es_store_open(EsAppendState *st)
{
	const EsCatalog *cat = es_catalog();
	Oid			stream_index = cat->stream_index;
	Oid			event_id_index = cat->event_id_index;
	RangeTblEntry *rte;

	st->rel = table_open(cat->events, RowExclusiveLock);
	st->estate = CreateExecutorState();

	rte = makeNode(RangeTblEntry);
	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(st->rel);
	rte->relkind = st->rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
#if PG_VERSION_NUM >= 160000
	ExecInitRangeTable(st->estate, list_make1(rte), NIL);
#else
	ExecInitRangeTable(st->estate, list_make1(rte));
#endif

	st->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(st->rri, st->rel, 1, NULL, 0);
	st->estate->es_opened_result_relations = list_make1(st->rri);
	st->estate->es_output_cid = GetCurrentCommandId(true);
	ExecOpenIndices(st->rri, false);

	st->slot = table_slot_create(st->rel, &st->estate->es_tupleTable);
	st->stream_index = find_index(st->rri, stream_index);
	st->event_id_index = find_index(st->rri, event_id_index);
	st->dispatch_inline = true;

	AfterTriggerBeginQuery();
}

/*
 * es_store_close
 *		Fire queued row triggers and release the executor state.
 */
void
es_store_close(EsAppendState *st)
{
	bool		save_firing = firing;

	/* the queued AFTER INSERT triggers fire here: let inline dispatch run */
	firing = st->dispatch_inline;
	PG_TRY();
	{
		AfterTriggerEndQuery(st->estate);
	}
	PG_FINALLY();
	{
		firing = save_firing;
	}
	PG_END_TRY();
	ExecCloseIndices(st->rri);
	ExecResetTupleTable(st->estate->es_tupleTable, false);
	FreeExecutorState(st->estate);
	table_close(st->rel, NoLock);
}

/*
 * es_store_peek_head
 *		The stream's current version and the recorded_at of its last event;
 *		*deleted says whether that event is a tombstone.
 *
 * Called with the stream locked.  The dirty snapshot sees every committed
 * event and this transaction's own, including those of the current command.
 */
int64
es_store_peek_head(EsAppendState *st, text *stream_id, TimestampTz *last_recorded,
				   bool *deleted)
{
	SnapshotData dirty;
	ScanKeyData key;
	IndexScanDesc scan;
	int64		version = 0;
	bool		isnull;

	InitDirtySnapshot(dirty);
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_TEXTEQ,
				PointerGetDatum(stream_id));
	scan = index_beginscan(st->rel, st->stream_index, &dirty, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	*last_recorded = DT_NOBEGIN;
	*deleted = false;
	if (index_getnext_slot(scan, BackwardScanDirection, st->slot))
	{
		version = DatumGetInt64(slot_getattr(st->slot, Anum_es_events_stream_version, &isnull));
		*last_recorded = DatumGetTimestampTz(slot_getattr(st->slot, Anum_es_events_recorded_at, &isnull));
		*deleted = es_is_tombstone(DatumGetTextPP(slot_getattr(st->slot, Anum_es_events_event_type, &isnull)));
	}
	index_endscan(scan);
	ExecClearTuple(st->slot);
	return version;
}

/*
 * es_store_read_head
 *		es_store_peek_head for a writer: raises es_stream_deleted when the
 *		stream is deleted.
 */
int64
es_store_read_head(EsAppendState *st, text *stream_id, TimestampTz *last_recorded)
{
	bool		deleted;
	int64		version;

	version = es_store_peek_head(st, stream_id, last_recorded, &deleted);
	if (deleted)
		es_stream_deleted_error(st->rel, stream_id, version, *last_recorded);
	return version;
}

/*
 * es_is_tombstone
 *		Is this event type the tombstone of a deleted stream?
 */
bool
es_is_tombstone(text *type)
{
	return VARSIZE_ANY_EXHDR(type) == strlen(ES_TYPE_STREAM_DELETED) &&
		memcmp(VARDATA_ANY(type), ES_TYPE_STREAM_DELETED,
			   strlen(ES_TYPE_STREAM_DELETED)) == 0;
}

/*
 * es_stream_deleted_error
 *		Refuse to change a deleted stream: 55000 with the constraint name
 *		es_stream_deleted, so a client can tell it from other errors.
 */
void
es_stream_deleted_error(Relation rel, text *stream_id, int64 tombstone_version,
						TimestampTz deleted_at)
{
	char	   *stream = text_to_cstring(stream_id);

	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("stream \"%s\" is deleted", stream),
			 errdetail("Stream \"%s\" was deleted at %s; its tombstone is version " INT64_FORMAT ".",
					   stream, timestamptz_to_str(deleted_at), tombstone_version),
			 errhint("A deleted stream takes no more events. Use another stream id."),
			 errtableconstraint(rel, "es_stream_deleted")));
}

/*
 * es_store_head
 *		The stream's head, with the stream locked: from the shared cache
 *		when it is known to be the head (head_cache.c), else from the index.
 *		Raises es_stream_deleted for a deleted stream (a tombstone head is
 *		never cached: es_delete_stream forgets the entry).
 */
int64
es_store_head(EsAppendState *st, text *stream_id, TimestampTz *last_recorded)
{
	int64		current;

	if (!es_head_cache_get(RelationGetRelid(st->rel), stream_id, &current,
						   last_recorded))
		current = es_store_read_head(st, stream_id, last_recorded);
	return current;
}

/*
 * find_event_id
 *		Where an event id is stored, if it is.
 *
 * Waits for an in-progress inserter of the same id, as a unique index check
 * would, so the answer is final.  On success *same_stream says whether the
 * stored event is in stream_id, *version is its version, and, when stream
 * is not NULL, *stream its stream's name.  (The name is copied only when
 * asked for: a replay of a large batch looks up every event.)
 */
static bool
find_event_id(EsAppendState *st, pg_uuid_t *id, text *stream_id,
			  bool *same_stream, int64 *version, char **stream)
{
	for (;;)
	{
		SnapshotData dirty;
		ScanKeyData key;
		IndexScanDesc scan;
		TransactionId xwait = InvalidTransactionId;
		bool		found;
		bool		isnull;

		InitDirtySnapshot(dirty);
		ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_UUID_EQ,
					UUIDPGetDatum(id));
		scan = index_beginscan(st->rel, st->event_id_index, &dirty, 1, 0);
		index_rescan(scan, &key, 1, NULL, 0);
		found = index_getnext_slot(scan, ForwardScanDirection, st->slot);
		if (found)
		{
			xwait = TransactionIdIsValid(dirty.xmin) ? dirty.xmin : dirty.xmax;
			if (!TransactionIdIsValid(xwait))
			{
				text	   *found = DatumGetTextPP(slot_getattr(st->slot, Anum_es_events_stream_id, &isnull));

				*same_stream = VARSIZE_ANY_EXHDR(found) == VARSIZE_ANY_EXHDR(stream_id) &&
					memcmp(VARDATA_ANY(found), VARDATA_ANY(stream_id),
						   VARSIZE_ANY_EXHDR(stream_id)) == 0;
				*version = DatumGetInt64(slot_getattr(st->slot, Anum_es_events_stream_version, &isnull));
				if (stream != NULL)
					*stream = text_to_cstring(found);
			}
		}
		index_endscan(scan);

		if (found && TransactionIdIsValid(xwait))
		{
			ItemPointerData tid = st->slot->tts_tid;

			ExecClearTuple(st->slot);
			XactLockTableWait(xwait, st->rel, &tid, XLTW_InsertIndexUnique);
			continue;
		}
		ExecClearTuple(st->slot);
		return found;
	}
}

/*
 * expected_matches
 *		Does a stream at version 'version' satisfy the expected version?
 */
static bool
expected_matches(bool any_version, int64 expected, int64 version)
{
	if (any_version)
		return true;
	if (expected == -1)
		return version > 0;
	return version == expected;
}

/*
 * es_check_expected_version
 *		Raise 40001 (constraint es_wrong_expected_version) when a stream at
 *		version 'current' does not satisfy the expected version.
 */
void
es_check_expected_version(Relation rel, text *stream_id, bool any_version,
						  int64 expected, int64 current)
{
	char	   *stream;

	if (expected_matches(any_version, expected, current))
		return;
	stream = text_to_cstring(stream_id);
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("wrong expected version for stream \"%s\"", stream),
			 errdetail("Stream \"%s\": expected version %s, actual version " INT64_FORMAT ".",
					   stream, describe_expected(expected), current),
			 errhint("Load the stream again and retry the command, or pass NULL as expected_version to append at any version."),
			 errtableconstraint(rel, "es_wrong_expected_version")));
}

/*
 * check_replay
 *		Recognise a retry of an append that is already stored.
 *
 * Returns the version the events were stored at when every event of the
 * call carries an id, all of them are stored in this stream at consecutive
 * versions, and the expected version admits the version before the first of
 * them: the call would have produced exactly these rows.  Returns -1 when
 * none of the ids is stored.  Any other overlap with stored ids is a unique
 * violation, whose DETAIL names the event of the batch when 'batch'.
 *
 * One index probe per event, with a check for interrupts in between: the
 * retry of a batch of a million events can be cancelled.
 */
static int64
check_replay(EsAppendState *st, text *stream_id, bool any_version,
			 int64 expected, EsEventInput *ev, int n, bool batch)
{
	int			nfound = 0;
	bool		replay = true;
	int64		base = 0;
	int			conflict = -1;
	char	   *conflict_stream = NULL;
	int64		conflict_version = 0;

	for (int i = 0; i < n; i++)
	{
		bool		same_stream;
		int64		found_version;

		CHECK_FOR_INTERRUPTS();
		if (!ev[i].id_given)
		{
			replay = false;
			continue;
		}
		if (!find_event_id(st, &ev[i].id, stream_id, &same_stream, &found_version,
						   nfound == 0 ? &conflict_stream : NULL))
		{
			replay = false;
			continue;
		}
		if (nfound++ == 0)
		{
			base = found_version - i - 1;
			conflict = i;
			conflict_version = found_version;
		}
		if (!same_stream || found_version != base + i + 1)
			replay = false;
	}

	if (nfound == 0)
		return -1;

	if (replay && expected_matches(any_version, expected, base))
		return base + n;

	ereport(ERROR,
			(errcode(ERRCODE_UNIQUE_VIOLATION),
			 errmsg("event id %s is already stored",
					DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&ev[conflict].id)))),
			 batch ?
			 errdetail("The problem is in event %d of the batch (numbered from 1), whose id is stored in stream \"%s\" at version " INT64_FORMAT ".",
					   conflict + 1, conflict_stream, conflict_version) :
			 errdetail("It is stored in stream \"%s\" at version " INT64_FORMAT ".",
					   conflict_stream, conflict_version),
			 errhint("Event ids are unique across the store. A retry is recognised only when it repeats the whole append, with the same ids, stream and expected version."),
			 errtableconstraint(st->rel, "es_events_event_id_key")));
	return -1;					/* keep compiler quiet */
}

/*
 * es_store_fill
 *		Put one event row into a slot of es_events: the stream, version,
 *		time, position and schema given (schema_version 0: the schema the
 *		event's type is written in now).  A generated event id is stored in
 *		ev->id, which the slot points to: ev must outlive the slot's use.
 */
void
es_store_fill(TupleTableSlot *slot, text *stream_id, int64 version,
			  EsEventInput *ev, TimestampTz recorded_at,
			  int32 schema_version, int64 position)
{
	Datum	   *values = slot->tts_values;
	bool	   *nulls = slot->tts_isnull;

	ExecClearTuple(slot);
	if (!ev->id_given)
		es_uuidv7(&ev->id);

	values[Anum_es_events_global_position - 1] = Int64GetDatum(position);
	values[Anum_es_events_stream_id - 1] = PointerGetDatum(stream_id);
	values[Anum_es_events_stream_version - 1] = Int64GetDatum(version);
	values[Anum_es_events_event_id - 1] = UUIDPGetDatum(&ev->id);
	values[Anum_es_events_event_type - 1] = PointerGetDatum(ev->type);
	values[Anum_es_events_data - 1] = JsonbPGetDatum(ev->data);
	values[Anum_es_events_metadata - 1] = JsonbPGetDatum(ev->metadata);
	values[Anum_es_events_recorded_at - 1] = TimestampTzGetDatum(recorded_at);
	values[Anum_es_events_schema_version - 1] =
		Int32GetDatum(schema_version != 0 ? schema_version : es_current_schema(ev->type));
	memset(nulls, false, Natts_es_events * sizeof(bool));
	ExecStoreVirtualTuple(slot);
}

/*
 * es_store_insert
 *		Insert one row at the given version, taking the next global position.
 *		A generated event id is stored in ev->id.  schema_version 0 means the
 *		schema the event's type is written in now.
 */
void
es_store_insert(EsAppendState *st, text *stream_id, int64 version,
				EsEventInput *ev, TimestampTz recorded_at,
				int32 schema_version, Oid seqoid)
{
	es_store_fill(st->slot, stream_id, version, ev, recorded_at,
				  schema_version, es_next_position(seqoid));
	ExecSimpleRelationInsert(st->rri, st->estate, st->slot);
}

/*
 * append_events
 *		Append validated events to a stream; returns the stream's new version.
 *		'batch': the events come from the batch form (errors name the event).
 *
 * Every loop over the events checks for interrupts once per event, so that
 * query cancel, statement_timeout and pg_terminate_backend are answered
 * promptly whatever the size of the batch; the transaction's abort then
 * removes whatever was inserted.
 */
static int64
append_events(text *stream_id, bool any_version, int64 expected,
			  EsEventInput *ev, int n, bool batch)
{
	EsAppendState st;
	Oid			seqoid;
	int64		current;
	int64		replayed;
	TimestampTz last_recorded;
	TimestampTz recorded_at;
	Jsonb	   *audit;

	PreventCommandIfReadOnly("es_append()");
	PreventCommandIfParallelMode("es_append()");

	seqoid = es_catalog()->position_seq;
	es_store_open(&st);
	es_store_lock_stream(stream_id);

	/* a deleted stream raises here, before an idempotent retry is looked for */
	current = es_store_head(&st, stream_id, &last_recorded);

	replayed = check_replay(&st, stream_id, any_version, expected, ev, n, batch);
	if (replayed >= 0)
	{
		es_store_close(&st);
		return replayed;
	}

	es_check_expected_version(st.rel, stream_id, any_version, expected, current);

	/* taken under the stream lock: never earlier than the last event's */
	recorded_at = GetCurrentTimestamp();
	if (recorded_at < last_recorded)
		recorded_at = last_recorded;

	/* audit keys from the session's settings, unless the event has them */
	audit = es_audit_metadata();
	if (audit != NULL)
	{
		for (int i = 0; i < n; i++)
		{
			CHECK_FOR_INTERRUPTS();
			/* events of a batch often share their metadata: merge it once */
			if (i > 0 && VARSIZE(ev[i].metadata) == VARSIZE(ev[i - 1].original_metadata) &&
				memcmp(ev[i].metadata, ev[i - 1].original_metadata, VARSIZE(ev[i].metadata)) == 0)
			{
				ev[i].original_metadata = ev[i].metadata;
				ev[i].metadata = ev[i - 1].metadata;
				continue;
			}
			ev[i].original_metadata = ev[i].metadata;
			ev[i].metadata = es_merge_metadata(audit, ev[i].metadata);
		}
	}

	for (int i = 0; i < n; i++)
	{
		CHECK_FOR_INTERRUPTS();
		es_store_insert(&st, stream_id, current + i + 1, &ev[i], recorded_at, 0,
						seqoid);
		/* what the index expressions computed for this row */
		ResetPerTupleExprContext(st.estate);
	}

	/*
	 * The new head, for the next append to the stream: written under the
	 * stream lock, after the rows and before the row triggers fire (a
	 * trigger that appends to the same stream must find it, and its own
	 * entry must not be overwritten by this one).  An idempotent retry
	 * returned above without writing.
	 */
	if (n > 0)
		es_head_cache_put(RelationGetRelid(st.rel), stream_id, current + n,
						  recorded_at);

	es_store_close(&st);
	es_notify_append(stream_id);
	es_note_append();
	return current + n;
}

/*
 * es_append_system
 *		Append one of the extension's own events ('$' types, which users
 *		cannot append) at any version; returns the stream's new version.
 *		Inline projections see it as any other event.
 */
int64
es_append_system(text *stream_id, const char *type, Jsonb *data)
{
	EsEventInput ev;

	memset(&ev, 0, sizeof(ev));
	ev.type = cstring_to_text(type);
	ev.data = data;
	ev.metadata = es_empty_object();
	ev.original_metadata = ev.metadata;
	ev.id_given = false;
	return append_events(stream_id, true, 0, &ev, 1, false);
}

PG_FUNCTION_INFO_V1(es_append);

/*
 * es_append(stream_id text, expected_version bigint, event_type text,
 *			 data jsonb, metadata jsonb DEFAULT '{}', event_id uuid DEFAULT NULL)
 *		RETURNS bigint
 *
 * Appends one event; returns the stream's new version.
 */
Datum
es_append(PG_FUNCTION_ARGS)
{
	text	   *stream_id;
	EsEventInput ev;

	es_check_not_null(fcinfo, 0, "stream_id");
	es_check_not_null(fcinfo, 2, "event_type");
	es_check_not_null(fcinfo, 3, "data");

	stream_id = PG_GETARG_TEXT_PP(0);
	es_check_stream_id(stream_id);
	if (!PG_ARGISNULL(1))
		es_check_expected_range(PG_GETARG_INT64(1));

	ev.type = PG_GETARG_TEXT_PP(2);
	es_check_event_type("event_type", ev.type);
	ev.data = PG_GETARG_JSONB_P(3);
	es_check_object(ev.data, "data");
	if (PG_ARGISNULL(4))
		ev.metadata = es_empty_object();
	else
	{
		ev.metadata = PG_GETARG_JSONB_P(4);
		es_check_object(ev.metadata, "metadata");
	}
	ev.id_given = !PG_ARGISNULL(5);
	if (ev.id_given)
		ev.id = *PG_GETARG_UUID_P(5);

	PG_RETURN_INT64(append_events(stream_id, PG_ARGISNULL(1),
								  PG_ARGISNULL(1) ? 0 : PG_GETARG_INT64(1),
								  &ev, 1, false));
}

/*
 * es_append_batch_jsonb
 *		Validate a JSON array of events (batch.c) and append it; returns
 *		the stream's new version.  Shared by the batch form of es_append and
 *		es_execute, which passes a command id: events without an "id" then
 *		get ids derived from it (uuidv7.c), so a resent command is an
 *		idempotent retry.
 */
int64
es_append_batch_jsonb(text *stream_id, bool any_version, int64 expected,
					  Jsonb *events, const pg_uuid_t *command_id)
{
	EsEventInput *ev;
	int			n;

	ev = es_parse_batch(events, &n);
	if (command_id != NULL)
	{
		for (int i = 0; i < n; i++)
		{
			if (ev[i].id_given)
				continue;
			es_uuid_for_command(command_id, i, &ev[i].id);
			ev[i].id_given = true;
		}
	}
	return append_events(stream_id, any_version, expected, ev, n, true);
}

PG_FUNCTION_INFO_V1(es_append_batch);

/*
 * es_append(stream_id text, expected_version bigint, events jsonb)
 *		RETURNS bigint
 *
 * Appends a JSON array of events atomically, at consecutive versions.
 */
Datum
es_append_batch(PG_FUNCTION_ARGS)
{
	text	   *stream_id;

	es_check_not_null(fcinfo, 0, "stream_id");
	es_check_not_null(fcinfo, 2, "events");

	stream_id = PG_GETARG_TEXT_PP(0);
	es_check_stream_id(stream_id);
	if (!PG_ARGISNULL(1))
		es_check_expected_range(PG_GETARG_INT64(1));

	PG_RETURN_INT64(es_append_batch_jsonb(stream_id, PG_ARGISNULL(1),
										  PG_ARGISNULL(1) ? 0 : PG_GETARG_INT64(1),
										  PG_GETARG_JSONB_P(2), NULL));
}
