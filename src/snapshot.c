/*-------------------------------------------------------------------------
 *
 * snapshot.c
 *	  Snapshot storage and definition fingerprints.
 *
 * A snapshot is a stream's folded state at one version.  Each one records the
 * fingerprint of the aggregate definition that produced it: a hash of the
 * definition's id (new on every es_define_aggregate), its owner and
 * search_path (evolve runs as that role with that path), of the evolve
 * function's source, language and settings, and of the upcaster registry.  A fold only starts from a
 * snapshot whose fingerprint matches the definition as it is now, so
 * redefining the aggregate or replacing its evolve function (CREATE OR
 * REPLACE FUNCTION) makes older snapshots unusable without any manual step.
 * Snapshots saved for a category that has no aggregate carry fingerprint 0.
 * (The fingerprint a stream's snapshots need now comes from aggregate.c's
 * cached definition: es_stream_fingerprint.)
 *
 * Snapshots have an owner: the aggregate's owner for those a fold stores,
 * the saving role for those es_snapshot_save stores for a category without
 * aggregate.  Saving one by hand needs membership in the aggregate's owner,
 * or in the owner of the snapshot it would replace: nobody else's state can
 * be planted where a fold or another application would start from it.
 *
 * Several snapshots per stream may exist (a fold to an older version starts
 * from an older snapshot).  event_sourcing.snapshots_to_keep bounds them.
 *
 * Reads are direct index scans; writes go through SPI with a kept plan
 * (INSERT ... ON CONFLICT), since two folds may store the same snapshot
 * concurrently.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "compat.h"
#include "event_sourcing.h"

/* event_sourcing.snapshots_to_keep: newest snapshots kept per stream (default 3), 0 = all */
int			es_snapshots_to_keep = 3;

/* kept SPI plans, and the catalog generation they were prepared in */
static SPIPlanPtr store_plan = NULL;
static SPIPlanPtr prune_plan = NULL;
static uint64 plans_generation = 0;

/* columns of es_snapshots */
#define Anum_es_snapshots_stream_id		1
#define Anum_es_snapshots_version		2
#define Anum_es_snapshots_fingerprint	3
#define Anum_es_snapshots_state			4

/* the kept store plan was made for a schema with (true) or without owners */
static bool store_plan_owners = false;

/*
 * es_fingerprint
 *		The fingerprint of a definition: its id, owner and search_path, its
 *		evolve function, and the upcasters (a fold sees events as they
 *		upcast).
 */
int64
es_fingerprint(int64 definition_id, Oid evolve, Oid owner, const char *search_path)
{
	uint64		h = es_function_fingerprint(evolve);

	h = hash_combine64(h, (uint64) definition_id);
	h = hash_combine64(h, (uint64) owner);
	h = hash_combine64(h, hash_bytes_extended((const unsigned char *) search_path,
											  strlen(search_path), 0));
	h = hash_combine64(h, es_upcast_fingerprint());
	/* 0 means "no aggregate"; never produce it for a real definition */
	return h == 0 ? 1 : (int64) h;
}

/*
 * es_snapshot_find
 *		The newest snapshot of the stream with this fingerprint at or below
 *		max_version.  On success *version and *state (a copy in the current
 *		memory context) are set.
 */
bool
es_snapshot_find(text *stream_id, int64 fingerprint, int64 max_version,
				 int64 *version, Jsonb **state)
{
	const EsCatalog *cat = es_catalog();
	Relation	rel;
	Relation	index;
	SysScanDesc scan;
	ScanKeyData keys[3];
	HeapTuple	tup;
	bool		found = false;

	rel = table_open(cat->snapshots, AccessShareLock);
	index = index_open(cat->snapshots_pkey, AccessShareLock);
	/* systable scans take heap attribute numbers */
	ScanKeyInit(&keys[0], Anum_es_snapshots_stream_id, BTEqualStrategyNumber,
				F_TEXTEQ, PointerGetDatum(stream_id));
	ScanKeyInit(&keys[1], Anum_es_snapshots_fingerprint, BTEqualStrategyNumber,
				F_INT8EQ, Int64GetDatum(fingerprint));
	ScanKeyInit(&keys[2], Anum_es_snapshots_version, BTLessEqualStrategyNumber,
				F_INT8LE, Int64GetDatum(max_version));
	scan = systable_beginscan_ordered(rel, index, GetActiveSnapshot(), 3, keys);
	tup = systable_getnext_ordered(scan, BackwardScanDirection);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;

		*version = DatumGetInt64(heap_getattr(tup, Anum_es_snapshots_version,
											  RelationGetDescr(rel), &isnull));
		*state = DatumGetJsonbPCopy(heap_getattr(tup, Anum_es_snapshots_state,
												 RelationGetDescr(rel), &isnull));
		found = true;
	}
	systable_endscan_ordered(scan);
	index_close(index, AccessShareLock);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * prepare_plans
 *		Prepare (once per catalog generation) the statements that write.
 *
 * The relation names are qualified with the extension's schema and every
 * operator with pg_catalog, so search_path plays no part.
 */
static void
prepare_plans(void)
{
	char	   *rel;
	char	   *sql;
	Oid			store_types[6] = {TEXTOID, INT8OID, INT8OID, JSONBOID, OIDOID, OIDOID};
	bool		owners = es_catalog()->owners;
	Oid			prune_types[3] = {TEXTOID, INT4OID, INT8OID};

	if (store_plan != NULL && plans_generation == es_catalog_generation() &&
		store_plan_owners == es_catalog()->owners)
		return;
	if (store_plan != NULL)
	{
		SPI_freeplan(store_plan);
		SPI_freeplan(prune_plan);
		store_plan = prune_plan = NULL;
	}

	rel = es_qualified_name("es_snapshots");
	/*
	 * $5: the owner to record; $6: the role storing it, who must have the
	 * privileges of the owner of a snapshot it replaces (one saved before
	 * 1.2 has none).
	 */
	if (owners)
		sql = psprintf("INSERT INTO %s AS s (stream_id, version, fingerprint, state, owner) "
					   "VALUES ($1, $2, $3, $4, $5::pg_catalog.regrole) "
					   "ON CONFLICT (stream_id, fingerprint, version) "
					   "DO UPDATE SET state = EXCLUDED.state, created_at = EXCLUDED.created_at, "
					   "owner = EXCLUDED.owner "
					   "WHERE s.owner IS NULL "
					   "   OR pg_catalog.pg_has_role($6, s.owner::pg_catalog.oid, 'USAGE')",
					   rel);
	else
		sql = psprintf("INSERT INTO %s AS s (stream_id, version, fingerprint, state) "
					   "VALUES ($1, $2, $3, $4) "
					   "ON CONFLICT (stream_id, fingerprint, version) "
					   "DO UPDATE SET state = EXCLUDED.state, created_at = EXCLUDED.created_at",
					   rel);
	store_plan = SPI_prepare(sql, 6, store_types);
	if (store_plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql, SPI_result_code_string(SPI_result));
	SPI_keepplan(store_plan);

	/* unusable snapshots first, then all but the newest usable ones */
	sql = psprintf("DELETE FROM %s d WHERE d.stream_id OPERATOR(pg_catalog.=) $1 "
				   "AND (d.fingerprint OPERATOR(pg_catalog.<>) $3 "
				   "  OR d.version OPERATOR(pg_catalog.<) "
				   "  (SELECT k.version FROM %s k "
				   "    WHERE k.stream_id OPERATOR(pg_catalog.=) $1 "
				   "      AND k.fingerprint OPERATOR(pg_catalog.=) $3 "
				   "    ORDER BY k.version DESC OFFSET $2 OPERATOR(pg_catalog.-) 1 LIMIT 1))",
				   rel, rel);
	prune_plan = SPI_prepare(sql, 3, prune_types);
	if (prune_plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql, SPI_result_code_string(SPI_result));
	SPI_keepplan(prune_plan);

	plans_generation = es_catalog_generation();
	store_plan_owners = owners;
}

/*
 * es_snapshot_store
 *		Store (or replace) a snapshot owned by 'owner'; then, when
 *		event_sourcing.snapshots_to_keep is set, drop the stream's snapshots
 *		of other fingerprints (no current fold can use them) and all but the
 *		newest N of this one.  A snapshot owned by a role whose privileges
 *		the current user lacks is not replaced (42501).
 */
void
es_snapshot_store(text *stream_id, int64 version, int64 fingerprint, Oid owner,
				  Jsonb *state)
{
	Datum		values[6];
	int			rc;
	EsSavedUser saved_user;
	Oid			actor = GetUserId();

	es_become_owner(&saved_user);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	prepare_plans();

	values[0] = PointerGetDatum(stream_id);
	values[1] = Int64GetDatum(version);
	values[2] = Int64GetDatum(fingerprint);
	values[3] = JsonbPGetDatum(state);
	values[4] = ObjectIdGetDatum(owner);
	values[5] = ObjectIdGetDatum(actor);
	rc = SPI_execute_plan(store_plan, values, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "storing a snapshot failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to replace the snapshot of stream \"%s\" at version " INT64_FORMAT,
						text_to_cstring(stream_id), version),
				 errdetail("That snapshot belongs to another role."),
				 errhint("Only members of the role that saved a snapshot may replace it.")));

	if (es_snapshots_to_keep > 0)
	{
		Datum		pvalues[3];

		pvalues[0] = PointerGetDatum(stream_id);
		pvalues[1] = Int32GetDatum(es_snapshots_to_keep);
		pvalues[2] = Int64GetDatum(fingerprint);
		rc = SPI_execute_plan(prune_plan, pvalues, NULL, false, 0);
		if (rc != SPI_OK_DELETE)
			elog(ERROR, "pruning snapshots failed: %s", SPI_result_code_string(rc));
	}

	SPI_finish();
	es_restore_user(&saved_user);
}

PG_FUNCTION_INFO_V1(es_stream_fingerprint_sql);

/*
 * _es_stream_fingerprint(stream_id text) RETURNS bigint
 *		The fingerprint snapshots of this stream must have to be used now
 *		(for es_snapshot_prune).
 */
Datum
es_stream_fingerprint_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(es_stream_fingerprint(PG_GETARG_TEXT_PP(0)));
}

PG_FUNCTION_INFO_V1(es_snapshot_save);

/*
 * es_snapshot_save(stream_id text, version bigint, state jsonb) RETURNS void
 *
 * Stores a snapshot taken by the application.  The version must exist in the
 * stream.  It is tagged with the fingerprint of the category's current
 * aggregate definition, so es_aggregate may start from it: that needs
 * membership in the aggregate's owner (whose snapshot it then is).  For a
 * category without aggregate the caller becomes the snapshot's owner.
 */
Datum
es_snapshot_save(PG_FUNCTION_ARGS)
{
	text	   *stream_id;
	int64		version;
	int64		current;
	int64		fingerprint;
	Oid			owner;

	es_check_not_null(fcinfo, 0, "stream_id");
	es_check_not_null(fcinfo, 1, "version");
	es_check_not_null(fcinfo, 2, "state");
	stream_id = PG_GETARG_TEXT_PP(0);
	es_check_stream_id(stream_id);
	version = PG_GETARG_INT64(1);

	PreventCommandIfReadOnly("es_snapshot_save()");
	fingerprint = es_stream_aggregate(stream_id, &owner);
	if (fingerprint != 0)
		es_check_member(owner, psprintf("aggregate of category \"%.*s\"",
										es_category_len(stream_id),
										VARDATA_ANY(stream_id)));
	else
		owner = GetUserId();
	current = es_stream_head(stream_id, NULL);
	if (version < 1 || version > current)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stream \"%s\" has no version " INT64_FORMAT,
						text_to_cstring(stream_id), version),
				 current == 0 ?
				 errdetail("The stream has no events.") :
				 errdetail("The stream's versions are 1 to " INT64_FORMAT ".", current),
				 errhint("A snapshot is the state after a version the stream has.")));

	es_snapshot_store(stream_id, version, fingerprint, owner, PG_GETARG_JSONB_P(2));
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(es_snapshot_load);

/*
 * es_snapshot_load(stream_id text, max_version bigint DEFAULT NULL)
 *		RETURNS TABLE(version bigint, state jsonb)
 *
 * The newest usable snapshot at or below max_version (NULL: any); no row if
 * there is none.  Usable: made by the category's current definition (or, for
 * a category without aggregate, saved with es_snapshot_save).
 */
Datum
es_snapshot_load(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	text	   *stream_id;
	int64		max_version = PG_INT64_MAX;
	int64		version;
	Jsonb	   *state;

	es_check_not_null(fcinfo, 0, "stream_id");
	stream_id = PG_GETARG_TEXT_PP(0);
	es_check_stream_id(stream_id);
	if (!PG_ARGISNULL(1))
		max_version = PG_GETARG_INT64(1);

	InitMaterializedSRF(fcinfo, 0);
	if (es_snapshot_find(stream_id, es_stream_fingerprint(stream_id),
						 max_version, &version, &state))
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = Int64GetDatum(version);
		values[1] = JsonbPGetDatum(state);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(es_snapshot_prune);

/*
 * es_snapshot_prune(keep int DEFAULT 1, stream_id text DEFAULT NULL)
 *		RETURNS bigint
 *
 * Deletes the snapshots of one stream (NULL: of every stream) that the
 * current aggregate definition cannot use, and all but the newest 'keep'
 * of those it can; returns how many were deleted.
 */
Datum
es_snapshot_prune(PG_FUNCTION_ARGS)
{
	const EsCatalog *cat = es_catalog();
	int32		keep;
	char	   *rel;
	char	   *sql;
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	Oid			types[2] = {INT4OID, TEXTOID};

	es_check_not_null(fcinfo, 0, "keep");
	keep = PG_GETARG_INT32(0);
	if (keep < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("keep must not be negative"),
				 errdetail("keep was %d.", keep)));
	PreventCommandIfReadOnly("es_snapshot_prune()");

	rel = es_qualified_name("es_snapshots");
	sql = psprintf("WITH ranked AS ("
				   "  SELECT s.ctid AS row_id, "
				   "         s.fingerprint OPERATOR(pg_catalog.<>) %s._es_stream_fingerprint(s.stream_id) AS unusable, "
				   "         pg_catalog.row_number() OVER "
				   "           (PARTITION BY s.stream_id, s.fingerprint ORDER BY s.version DESC) AS n "
				   "  FROM %s s WHERE $2 IS NULL OR s.stream_id OPERATOR(pg_catalog.=) $2) "
				   "DELETE FROM %s d USING ranked r "
				   "WHERE d.ctid OPERATOR(pg_catalog.=) r.row_id "
				   "  AND (r.unusable OR r.n OPERATOR(pg_catalog.>) $1)",
				   quote_identifier(get_namespace_name(cat->namespace)), rel, rel);

	values[0] = Int32GetDatum(keep);
	if (PG_ARGISNULL(1))
	{
		values[1] = (Datum) 0;
		nulls[1] = 'n';
	}
	else
		values[1] = PG_GETARG_DATUM(1);

	PG_RETURN_INT64((int64) es_execute_as_owner(sql, 2, types, values, nulls, SPI_OK_DELETE));
}
