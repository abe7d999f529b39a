/*-------------------------------------------------------------------------
 *
 * import.c
 *	  es_import: bulk import of historical events from a table or view.
 *
 * A migration brings an existing history in: rows of (stream_id,
 * stream_version, event_type, data[, metadata][, event_id][, recorded_at]
 * [, schema_version]) from a relation the caller can read.  They are read
 * with the caller's own privileges, through one query over the source
 * (SPI, a cursor fetched in batches), ordered by recorded_at, then stream_id
 * in byte order, then stream_version: that is the order in which they get
 * their global positions.  Each row is validated as es_append validates an
 * event, and against its stream: its version must be the stream's next one
 * (the stored version plus one for the first row of a stream) and its
 * recorded_at no earlier than the stream's last event's.  The rows are then
 * inserted a fetched batch at a time (see ImportState), with the row
 * es_append would store (append.c's es_store_fill) but the given event id
 * and recorded_at.  Any error
 * aborts the whole import with the caller's transaction: nothing is left
 * half-imported.
 *
 * Concurrency.  Per-stream locks, as es_append takes them, would mean one
 * lock per imported stream, far beyond the lock table for a migration of
 * millions of streams.  Instead the import holds an EXCLUSIVE lock on
 * es_events until the end of its transaction: appenders (ROW EXCLUSIVE) wait
 * for it, and it waits for appenders already in flight, so every stream's
 * head it reads is final; readers (ACCESS SHARE) are not delayed.  A
 * concurrent es_append then continues after the imported events, or fails
 * with 40001 when its expected version was taken.
 *
 * Positions are drawn with es_next_position, as es_append draws them, so
 * the log's safe bound (position.c) holds readers below the import's first
 * position until it commits: no reader skips an imported event.
 *
 * Inline projections are not dispatched (rebuild them afterwards; the
 * README says so): the inline projection trigger's events are not even
 * queued when it is the only row trigger of es_events, which keeps a
 * ten-million-row import from queueing ten million trigger events.  The
 * session's audit settings are not merged into the metadata: imported
 * events keep what they had.  One notification per category is queued, as
 * es_append queues it, and async projections and waiters are woken at
 * commit.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/relation.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "compat.h"
#include "event_sourcing.h"

/* rows fetched from the source per batch */
#define IMPORT_BATCH_ROWS	1000

/* The columns of the source, in the order of the import query. */
enum
{
	COL_STREAM_ID,
	COL_STREAM_VERSION,
	COL_EVENT_TYPE,
	COL_DATA,
	COL_METADATA,
	COL_EVENT_ID,
	COL_RECORDED_AT,
	COL_SCHEMA_VERSION,
	NUM_IMPORT_COLS
};

typedef struct ImportColumn
{
	const char *name;
	const char *type;			/* what the query casts it to */
	bool		required;
} ImportColumn;

static const ImportColumn import_columns[NUM_IMPORT_COLS] = {
	{"stream_id", "pg_catalog.text", true},
	{"stream_version", "pg_catalog.int8", true},
	{"event_type", "pg_catalog.text", true},
	{"data", "pg_catalog.jsonb", true},
	{"metadata", "pg_catalog.jsonb", false},
	{"event_id", "pg_catalog.uuid", false},
	{"recorded_at", "pg_catalog.timestamptz", false},
	{"schema_version", "pg_catalog.int4", false},
};

/* A stream seen by the import: where it stands now. */
typedef struct ImportStream
{
	text	   *stream_id;		/* hash key: a pointer to a copy */
	int64		version;
	TimestampTz last_recorded;
} ImportStream;

/* What the error context names: the source row being imported. */
typedef struct ImportErrorContext
{
	const char *source;			/* qualified name, computed beforehand */
	int64		row;			/* numbered from 1 in import order; 0: the
								 * source is being read */
	text	   *stream_id;		/* NULL until read */
	int64		version;
	bool		version_known;
} ImportErrorContext;

/*
 * One import: the store, the streams seen, and the rows validated but not
 * yet inserted.
 *
 * Rows are inserted a fetched batch at a time with the table AM's
 * multi-insert (as COPY does: one WAL record and one buffer lock per heap
 * page rather than per row, through a bulk-insert ring so the import does
 * not flush shared buffers), then their index entries one row at a time.
 * A batch is flushed before the source rows it points into are freed.
 * Row triggers other than the extension's own need the per-row path
 * (ExecSimpleRelationInsert), as in COPY.
 */
typedef struct ImportState
{
	EsAppendState st;
	HTAB	   *streams;
	MemoryContext streams_cxt;
	bool		has_recorded_at;
	TimestampTz now;
	Oid			seqoid;
	ImportErrorContext ectx;

	bool		multi;			/* multi-insert; else one row at a time */
	BulkInsertState bistate;
	int			nbuffered;
	TupleTableSlot *slots[IMPORT_BATCH_ROWS];
	EsEventInput events[IMPORT_BATCH_ROWS];	/* the slots point into them */
	int64		rows[IMPORT_BATCH_ROWS];	/* for the error context */
	text	   *stream_ids[IMPORT_BATCH_ROWS];
	int64		versions[IMPORT_BATCH_ROWS];
} ImportState;

/*
 * qualified_name
 *		The relation's name, schema-qualified and quoted as needed.
 */
static char *
qualified_name(Oid relid)
{
	char	   *rel = get_rel_name(relid);
	char	   *nsp = get_namespace_name(get_rel_namespace(relid));

	if (rel == NULL || nsp == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	return quote_qualified_identifier(nsp, rel);
}

/*
 * stream_hash
 *		dynahash hash function for a text * key: hashes the text's bytes.
 */
static uint32
stream_hash(const void *key, Size keysize)
{
	const text *t = *(text *const *) key;

	return hash_bytes((const unsigned char *) VARDATA_ANY(t),
					  VARSIZE_ANY_EXHDR(t));
}

/*
 * stream_match
 *		dynahash comparison for text * keys: 0 when the texts are equal.
 */
static int
stream_match(const void *key1, const void *key2, Size keysize)
{
	const text *a = *(text *const *) key1;
	const text *b = *(text *const *) key2;
	Size		len = VARSIZE_ANY_EXHDR(a);

	if (len != VARSIZE_ANY_EXHDR(b))
		return 1;
	return memcmp(VARDATA_ANY(a), VARDATA_ANY(b), len);
}

/*
 * import_error_callback
 *		Name the source row an error is about.
 */
static void
import_error_callback(void *arg)
{
	ImportErrorContext *ctx = (ImportErrorContext *) arg;

	if (ctx->row == 0)
		errcontext("es_import of %s, reading the source",
				   ctx->source);
	else if (ctx->stream_id == NULL)
		errcontext("es_import of %s, row %lld in import order",
				   ctx->source,
				   (long long) ctx->row);
	else if (!ctx->version_known)
		errcontext("es_import of %s, row %lld in import order (stream \"%s\")",
				   ctx->source,
				   (long long) ctx->row, text_to_cstring(ctx->stream_id));
	else
		errcontext("es_import of %s, row %lld in import order (stream \"%s\", version " INT64_FORMAT ")",
				   ctx->source,
				   (long long) ctx->row, text_to_cstring(ctx->stream_id),
				   ctx->version);
}

/*
 * source_columns
 *		Which of the import's columns the source has; errors for a missing
 *		required one.  Other columns of the source are ignored.
 */
static void
source_columns(Oid source, bool *present)
{
	Relation	rel;
	TupleDesc	desc;

	rel = relation_open(source, AccessShareLock);
	if (rel->rd_rel->relkind != RELKIND_RELATION &&
		rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE &&
		rel->rd_rel->relkind != RELKIND_VIEW &&
		rel->rd_rel->relkind != RELKIND_MATVIEW &&
		rel->rd_rel->relkind != RELKIND_FOREIGN_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" cannot be imported from",
						RelationGetRelationName(rel)),
				 errdetail("The source of es_import must be a table, a view, a materialized view or a foreign table.")));

	desc = RelationGetDescr(rel);
	for (int c = 0; c < NUM_IMPORT_COLS; c++)
	{
		present[c] = false;
		for (int i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);

			if (!att->attisdropped &&
				strcmp(NameStr(att->attname), import_columns[c].name) == 0)
			{
				present[c] = true;
				break;
			}
		}
		if (import_columns[c].required && !present[c])
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("the source of es_import has no column \"%s\"",
							import_columns[c].name),
					 errdetail("The source is %s.",
							   qualified_name(source)),
					 errhint("The source needs the columns stream_id, stream_version, event_type and data, and may have metadata, event_id, recorded_at and schema_version; a view can rename them.")));
	}
	relation_close(rel, AccessShareLock);
}

/*
 * import_query
 *		The query that reads the source, in import order.
 *
 * Every column is cast to the store's type (a cast the caller's session
 * resolves: the query is the caller's); absent optional columns are NULL.
 * Byte order ("C") for stream_id makes the order of equal timestamps
 * independent of the database's collation.
 */
static char *
import_query(Oid source, const bool *present)
{
	StringInfoData q;

	initStringInfo(&q);
	appendStringInfoString(&q, "SELECT ");
	for (int c = 0; c < NUM_IMPORT_COLS; c++)
	{
		if (c > 0)
			appendStringInfoString(&q, ", ");
		if (present[c])
			appendStringInfo(&q, "s.%s::%s",
							 quote_identifier(import_columns[c].name),
							 import_columns[c].type);
		else
			appendStringInfo(&q, "NULL::%s", import_columns[c].type);
	}
	appendStringInfo(&q, " FROM %s s ORDER BY ",
					 qualified_name(source));
	if (present[COL_RECORDED_AT])
		appendStringInfo(&q, "s.recorded_at::%s, ",
						 import_columns[COL_RECORDED_AT].type);
	appendStringInfo(&q, "s.stream_id::%s COLLATE pg_catalog.\"C\", s.stream_version::%s",
					 import_columns[COL_STREAM_ID].type,
					 import_columns[COL_STREAM_VERSION].type);
	return q.data;
}

/*
 * only_own_insert_triggers
 *		Are the inline projection dispatch trigger and the immutability
 *		trigger the only row triggers of es_events?  Then an import, which
 *		does not dispatch, need not queue an AFTER INSERT event per row.
 */
static bool
only_own_insert_triggers(Relation rel)
{
	TriggerDesc *td = rel->trigdesc;

	if (td == NULL)
		return true;
	for (int i = 0; i < td->numtriggers; i++)
	{
		const char *name = td->triggers[i].tgname;

		if (strcmp(name, "es_events_inline_projections") != 0 &&
			strcmp(name, "es_events_immutable") != 0)
			return false;
	}
	return true;
}

/*
 * column_null
 *		A required column is NULL: 22004, as for a NULL argument of es_append.
 */
static void
column_null(const char *column)
{
	ereport(ERROR,
			(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
			 errmsg("%s must not be null", column)));
}

/*
 * import_row
 *		Validate one source row against its stream and insert it.
 */
static void
import_row(ImportState *is, HeapTuple tuple, TupleDesc desc)
{
	EsAppendState *st = &is->st;
	ImportErrorContext *ectx = &is->ectx;
	Datum		v[NUM_IMPORT_COLS];
	bool		n[NUM_IMPORT_COLS];
	text	   *stream_id;
	int64		version;
	EsEventInput ev;
	TimestampTz recorded_at;
	int32		schema_version = 0;
	ImportStream *s;
	bool		found;

	heap_deform_tuple(tuple, desc, v, n);

	if (n[COL_STREAM_ID])
		column_null("stream_id");
	stream_id = DatumGetTextPP(v[COL_STREAM_ID]);
	ectx->stream_id = stream_id;
	es_check_stream_id(stream_id);
	if (n[COL_STREAM_VERSION])
		column_null("stream_version");
	version = DatumGetInt64(v[COL_STREAM_VERSION]);
	ectx->version = version;
	ectx->version_known = true;
	if (n[COL_EVENT_TYPE])
		column_null("event_type");
	ev.type = DatumGetTextPP(v[COL_EVENT_TYPE]);
	es_check_event_type("event_type", ev.type);
	if (n[COL_DATA])
		column_null("data");
	ev.data = DatumGetJsonbP(v[COL_DATA]);
	es_check_object(ev.data, "data");
	if (n[COL_METADATA])
		ev.metadata = es_empty_object();
	else
	{
		ev.metadata = DatumGetJsonbP(v[COL_METADATA]);
		es_check_object(ev.metadata, "metadata");
	}
	ev.original_metadata = ev.metadata;
	ev.id_given = !n[COL_EVENT_ID];
	if (ev.id_given)
		ev.id = *DatumGetUUIDP(v[COL_EVENT_ID]);
	if (!n[COL_SCHEMA_VERSION])
	{
		int32		current = es_current_schema(ev.type);

		schema_version = DatumGetInt32(v[COL_SCHEMA_VERSION]);
		if (schema_version < 1 || schema_version > current)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("schema_version %d is out of range for event type \"%s\"",
							schema_version, text_to_cstring(ev.type)),
					 errdetail("Events of this type are written in schema %d now; a stored event's schema is between 1 and that.",
							   current),
					 errhint("Leave schema_version NULL (or out of the source) to store the events in the current schema.")));
	}

	s = (ImportStream *) hash_search(is->streams, &stream_id, HASH_ENTER, &found);
	if (!found)
	{
		/* the key must outlive this row: point it at a copy */
		s->stream_id = (text *) MemoryContextAlloc(is->streams_cxt, VARSIZE_ANY(stream_id));
		memcpy(s->stream_id, stream_id, VARSIZE_ANY(stream_id));
		s->version = es_store_read_head(st, stream_id, &s->last_recorded);
		es_head_cache_forget(stream_id);
		es_notify_append(stream_id);
	}

	if (!is->has_recorded_at)
		recorded_at = Max(is->now, s->last_recorded);	/* as es_append's */
	else if (n[COL_RECORDED_AT])
		column_null("recorded_at");
	else
		recorded_at = DatumGetTimestampTz(v[COL_RECORDED_AT]);

	if (version != s->version + 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the source does not continue stream \"%s\" in order",
						text_to_cstring(stream_id)),
				 s->version == 0 ?
				 errdetail("The stream has no events; its first event in the source, in import order (recorded_at, then stream_version), has version " INT64_FORMAT " instead of 1.",
						   version) :
				 errdetail("The stream is at version " INT64_FORMAT "; its next event in the source, in import order (recorded_at, then stream_version), has version " INT64_FORMAT " instead of " INT64_FORMAT ".",
						   s->version, version, s->version + 1),
				 errhint("A stream's versions in the source must continue its stored version without gap or repeat, and its recorded_at must not decrease as its versions increase.")));
	if (recorded_at < s->last_recorded)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the source's event at version " INT64_FORMAT " of stream \"%s\" is older than the stream's last event",
						version, text_to_cstring(stream_id)),
				 errdetail("Version " INT64_FORMAT " was recorded at %s, version " INT64_FORMAT " at %s.",
						   s->version, pstrdup(timestamptz_to_str(s->last_recorded)),
						   version, pstrdup(timestamptz_to_str(recorded_at))),
				 errhint("A stream's recorded_at never decreases: events imported into a stream that has events must not be older than its last one.")));

	if (is->multi)
	{
		int			i = is->nbuffered;
		TupleTableSlot *slot = is->slots[i];

		if (slot == NULL)
		{
			/* in the executor state's memory: it outlives every batch */
			MemoryContext oldcxt = MemoryContextSwitchTo(st->estate->es_query_cxt);

			slot = is->slots[i] = table_slot_create(st->rel, &st->estate->es_tupleTable);
			MemoryContextSwitchTo(oldcxt);
		}
		is->events[i] = ev;
		es_store_fill(slot, s->stream_id, version, &is->events[i], recorded_at,
					  schema_version, es_next_position(is->seqoid));
		if (st->rel->rd_att->constr != NULL)
			ExecConstraints(st->rri, slot, st->estate);
		is->rows[i] = ectx->row;
		is->stream_ids[i] = s->stream_id;
		is->versions[i] = version;
		is->nbuffered++;
	}
	else
	{
		es_store_insert(st, s->stream_id, version, &ev, recorded_at,
						schema_version, is->seqoid);
		ResetPerTupleExprContext(st->estate);
	}
	s->version = version;
	s->last_recorded = recorded_at;
}

/*
 * import_flush
 *		Insert the buffered rows into the heap, then their index entries.
 */
static void
import_flush(ImportState *is)
{
	EsAppendState *st = &is->st;

	if (is->nbuffered == 0)
		return;
	is->ectx.row = is->rows[is->nbuffered - 1];
	is->ectx.stream_id = NULL;
	table_multi_insert(st->rel, is->slots, is->nbuffered,
					   st->estate->es_output_cid, 0, is->bistate);
	for (int i = 0; i < is->nbuffered; i++)
	{
		List	   *recheck;

		CHECK_FOR_INTERRUPTS();
		/* a unique violation names its row */
		is->ectx.row = is->rows[i];
		is->ectx.stream_id = is->stream_ids[i];
		is->ectx.version = is->versions[i];
		is->ectx.version_known = true;
		recheck = es_insert_index_tuples(st->rri, is->slots[i], st->estate);
		list_free(recheck);
		ResetPerTupleExprContext(st->estate);
		ExecClearTuple(is->slots[i]);
	}
	is->nbuffered = 0;
}

PG_FUNCTION_INFO_V1(es_import);

/*
 * es_import(source regclass) RETURNS bigint
 *
 * Imports the rows of 'source' as events, in order of recorded_at, stream_id
 * and stream_version; returns the number of events imported.
 */
Datum
es_import(PG_FUNCTION_ARGS)
{
	Oid			source;
	bool		present[NUM_IMPORT_COLS];
	char	   *query;
	const EsCatalog *cat;
	ImportState *is;
	HASHCTL		hctl;
	MemoryContext batch_cxt;
	MemoryContext oldcxt;
	Portal		portal;
	SPIPlanPtr	plan;
	int64		imported = 0;
	ErrorContextCallback errcb;

	es_check_not_null(fcinfo, 0, "source");
	source = PG_GETARG_OID(0);

	PreventCommandIfReadOnly("es_import()");
	PreventCommandIfParallelMode("es_import()");
	es_check_log_writable();

	cat = es_catalog();
	source_columns(source, present);
	query = import_query(source, present);

	/*
	 * Appenders wait for the import and the import for appenders in flight:
	 * taken before the source is read, so the heads read below are final.
	 */
	LockRelationOid(cat->events, ExclusiveLock);

	is = (ImportState *) palloc0(sizeof(ImportState));
	is->seqoid = cat->position_seq;
	is->has_recorded_at = present[COL_RECORDED_AT];
	is->now = GetCurrentTimestamp();
	is->streams_cxt = AllocSetContextCreate(CurrentMemoryContext,
											"es_import streams",
											ALLOCSET_DEFAULT_SIZES);
	batch_cxt = AllocSetContextCreate(CurrentMemoryContext,
									  "es_import batch",
									  ALLOCSET_DEFAULT_SIZES);
	hctl.keysize = sizeof(text *);
	hctl.entrysize = sizeof(ImportStream);
	hctl.hash = stream_hash;
	hctl.match = stream_match;
	hctl.hcxt = is->streams_cxt;
	is->streams = hash_create("es_import streams", 1024, &hctl,
							  HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	is->ectx.source = qualified_name(source);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	plan = SPI_prepare_cursor(query, 0, NULL, CURSOR_OPT_NO_SCROLL);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare_cursor failed for \"%s\": %s",
			 query, SPI_result_code_string(SPI_result));
	portal = SPI_cursor_open(NULL, plan, NULL, NULL, false);

	es_store_open(&is->st);
	is->st.dispatch_inline = false;
	if (only_own_insert_triggers(is->st.rel))
		is->st.rri->ri_TrigDesc = NULL;
	is->multi = is->st.rri->ri_TrigDesc == NULL &&
		!(is->st.rel->rd_att->constr != NULL &&
		  is->st.rel->rd_att->constr->has_generated_stored);
	if (is->multi)
		is->bistate = GetBulkInsertState();

	errcb.callback = import_error_callback;
	errcb.arg = &is->ectx;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	for (;;)
	{
		SPITupleTable *tt;
		uint64		nrows;

		is->ectx.row = 0;
		SPI_cursor_fetch(portal, true, IMPORT_BATCH_ROWS);
		nrows = SPI_processed;
		if (nrows == 0)
			break;
		tt = SPI_tuptable;

		oldcxt = MemoryContextSwitchTo(batch_cxt);
		for (uint64 i = 0; i < nrows; i++)
		{
			CHECK_FOR_INTERRUPTS();
			is->ectx.row = imported + 1;
			is->ectx.stream_id = NULL;
			is->ectx.version_known = false;
			import_row(is, tt->vals[i], tt->tupdesc);
			imported++;
		}
		/* before the rows the slots point into are freed */
		import_flush(is);
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(batch_cxt);
		SPI_freetuptable(tt);
	}
	error_context_stack = errcb.previous;

	if (is->multi)
	{
		FreeBulkInsertState(is->bistate);
		table_finish_bulk_insert(is->st.rel, 0);
	}
	es_store_close(&is->st);
	SPI_cursor_close(portal);
	SPI_finish();

	hash_destroy(is->streams);
	MemoryContextDelete(is->streams_cxt);
	MemoryContextDelete(batch_cxt);
	pfree(is);

	if (imported > 0)
		es_note_append();
	PG_RETURN_INT64(imported);
}
