/*-------------------------------------------------------------------------
 *
 * catalog.c
 *	  Where the extension's objects are.
 *
 * The extension may be created in any schema, and the C code never relies on
 * search_path: it finds the schema through pg_extension and the relations by
 * name inside it.  The OIDs are cached for the life of the backend and
 * forgotten whenever a relcache invalidation names one of them (DROP
 * EXTENSION, or a full reset), so a dropped and recreated extension is found
 * again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "event_sourcing.h"

static EsCatalog cache;
static bool cache_valid = false;

/*
 * Bumped whenever something that caches derived state must start over: one
 * of our relations was invalidated (the extension was dropped, or
 * es_define_aggregate changed a definition), or any function changed
 * (CREATE OR REPLACE of an evolve function).  Caches elsewhere remember the
 * generation they were built in.
 */
static uint64 generation = 1;

/*
 * es_catalog_relcache_callback
 *		Forget the cached OIDs when one of our relations is invalidated.
 */
static void
es_catalog_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid ||
		relid == cache.events ||
		relid == cache.position_index ||
		relid == cache.stream_index ||
		relid == cache.event_id_index ||
		relid == cache.category_index ||
		relid == cache.position_seq ||
		relid == cache.aggregates ||
		relid == cache.aggregates_pkey ||
		relid == cache.snapshots ||
		relid == cache.snapshots_pkey ||
		relid == cache.aggregate_seq ||
		relid == cache.upcasters ||
		relid == cache.upcasters_pkey ||
		(OidIsValid(cache.projections) &&
		 (relid == cache.projections || relid == cache.dead_letters)) ||
		(OidIsValid(cache.log_mark) && relid == cache.log_mark))
	{
		cache_valid = false;
		generation++;
	}
}

/*
 * es_catalog_proc_callback
 *		A function was created, replaced or dropped: start caches over.
 */
static void
es_catalog_proc_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	generation++;
}

/*
 * es_catalog_generation
 *		Changes whenever cached definitions may be stale (see above).
 */
uint64
es_catalog_generation(void)
{
	return generation;
}

/*
 * es_catalog_init
 *		Register the invalidation callback; called once from _PG_init.
 */
void
es_catalog_init(void)
{
	CacheRegisterRelcacheCallback(es_catalog_relcache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(PROCOID, es_catalog_proc_callback, (Datum) 0);
}

/*
 * extension_schema
 *		The schema of the event_sourcing extension in this database.
 */
static Oid
extension_schema(void)
{
	Oid			extoid;
	Oid			result = InvalidOid;
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	extoid = get_extension_oid("event_sourcing", true);
	if (!OidIsValid(extoid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"event_sourcing\" is not installed in this database"),
				 errhint("Run CREATE EXTENSION event_sourcing.")));

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(extoid));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		result = ((Form_pg_extension) GETSTRUCT(tup))->extnamespace;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);

	if (!OidIsValid(result))
		elog(ERROR, "could not find the schema of extension \"event_sourcing\"");
	return result;
}

/*
 * lookup_relation
 *		OID of a relation of the extension, by name in its schema.
 */
static Oid
lookup_relation(const char *name, Oid namespace)
{
	Oid			relid = get_relname_relid(name, namespace);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("relation \"%s.%s\" of extension \"event_sourcing\" does not exist",
						get_namespace_name(namespace), name),
				 errhint("The extension's objects must not be dropped or renamed; recreate the extension.")));
	return relid;
}

/*
 * relation_owner
 *		The owner of a relation.
 */
static Oid
relation_owner(Oid relid)
{
	HeapTuple	tup;
	Oid			owner;

	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * es_become_owner
 *		Run what follows as the extension's owner, in a restricted security
 *		context and with search_path pinned to pg_catalog, until
 *		es_restore_user.
 *
 * The extension's internal SQL (storing snapshots and definitions) writes
 * tables that ordinary roles have no privileges on: like the rest of the
 * API, these functions are controlled by EXECUTE grants.  The statements
 * qualify every name, and the pinned search_path makes sure that nothing
 * they resolve comes from the caller's session.  An error in between needs
 * no cleanup: transaction abort restores the user and the settings.
 */
void
es_become_owner(EsSavedUser *saved)
{
	Oid			owner = es_catalog()->owner;

	GetUserIdAndSecContext(&saved->userid, &saved->sec_context);
	SetUserIdAndSecContext(owner, saved->sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	saved->guc_level = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

/*
 * es_restore_user
 *		Return to the user and settings saved by es_become_owner.
 */
void
es_restore_user(const EsSavedUser *saved)
{
	AtEOXact_GUC(false, saved->guc_level);
	SetUserIdAndSecContext(saved->userid, saved->sec_context);
}

/*
 * es_qualified_name
 *		A relation of the extension as a quoted, schema-qualified name, for
 *		internal SQL (which must not depend on search_path).
 */
char *
es_qualified_name(const char *relname)
{
	return quote_qualified_identifier(get_namespace_name(es_catalog()->namespace), relname);
}

/*
 * es_execute_as_owner
 *		Run one statement of the extension's internal SQL (writing its own
 *		tables) as the extension owner; 'expected' is its SPI result code.
 *		Returns the rows processed.
 */
uint64
es_execute_as_owner(const char *sql, int nargs, Oid *types, Datum *values,
					const char *nulls, int expected)
{
	EsSavedUser saved_user;
	uint64		processed;
	int			rc;

	es_become_owner(&saved_user);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);
	if (rc != expected)
		elog(ERROR, "internal statement failed (%s): %s", SPI_result_code_string(rc), sql);
	processed = SPI_processed;
	SPI_finish();
	es_restore_user(&saved_user);
	return processed;
}

/*
 * es_catalog
 *		The OIDs of the extension's objects, looked up on first use.
 *
 * The returned struct stays valid until the next catalog access that may
 * process invalidations; callers copy what they need or use it at once.
 */
const EsCatalog *
es_catalog(void)
{
	if (!cache_valid)
	{
		EsCatalog	c;

		c.namespace = extension_schema();
		c.events = lookup_relation("es_events", c.namespace);
		c.position_index = lookup_relation("es_events_pkey", c.namespace);
		c.stream_index = lookup_relation("es_events_stream_version_key", c.namespace);
		c.event_id_index = lookup_relation("es_events_event_id_key", c.namespace);
		c.category_index = lookup_relation("es_events_category_idx", c.namespace);
		c.position_seq = lookup_relation("es_events_global_position_seq", c.namespace);
		c.aggregates = lookup_relation("es_aggregates", c.namespace);
		c.aggregates_pkey = lookup_relation("es_aggregates_pkey", c.namespace);
		c.snapshots = lookup_relation("es_snapshots", c.namespace);
		c.snapshots_pkey = lookup_relation("es_snapshots_pkey", c.namespace);
		c.aggregate_seq = lookup_relation("es_aggregate_definition_seq", c.namespace);
		c.upcasters = lookup_relation("es_upcasters", c.namespace);
		c.upcasters_pkey = lookup_relation("es_upcasters_pkey", c.namespace);
		/* added in 1.1: absent until ALTER EXTENSION event_sourcing UPDATE */
		c.projections = get_relname_relid("es_projection_defs", c.namespace);
		c.dead_letters = get_relname_relid("es_dead_letters", c.namespace);
		/* added in 1.3 */
		c.log_mark = get_relname_relid("es_log_mark", c.namespace);
		c.owner = relation_owner(c.events);
		/* 1.2: definitions record their owner and search_path */
		c.owners = get_attnum(c.aggregates, "owner") != InvalidAttrNumber;
		cache = c;
		cache_valid = true;
	}
	return &cache;
}
