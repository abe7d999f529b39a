/*-------------------------------------------------------------------------
 *
 * projection_def.c
 *	  Projection definitions by name: es_define_projection,
 *	  es_drop_projection, reading (and locking) one definition, the owner
 *	  check, and the head of the log for the es_projections view.
 *
 * Definitions live in es_projection_defs, written only here and by
 * projection_run.c, as the extension owner.  Defining records the caller as
 * the owner and its search_path (callback.c); only members of the owner may
 * drop, run, skip or rebuild a projection, checked before its row is
 * locked.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"

#include "compat.h"
#include "event_sourcing.h"

/*
 * es_projection_read
 *		Read (and optionally lock) one definition into *p, in the caller's
 *		memory context.  The statements run as the extension owner.
 */
EsFound
es_projection_read(const char *name, EsLockMode lock, EsProjection *p)
{
	MemoryContext caller = CurrentMemoryContext;
	EsSavedUser saved_user;
	Datum		values[1];
	Oid			types[1] = {TEXTOID};
	EsFound		found = ES_FOUND;
	const char *defs = es_qualified_name("es_projection_defs");
	const char *suffix;

	suffix = lock == ES_LOCK_WAIT ? " FOR UPDATE" :
		lock == ES_LOCK_SKIP ? " FOR UPDATE SKIP LOCKED" : "";
	values[0] = CStringGetTextDatum(name);

	es_become_owner(&saved_user);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args(psprintf("SELECT * FROM %s WHERE name OPERATOR(pg_catalog.=) $1%s",
									   defs, suffix),
							  1, types, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "reading the projection definition failed");
	if (SPI_processed == 1)
		es_projection_from_tuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, p, caller);
	else if (lock == ES_LOCK_SKIP &&
			 SPI_execute_with_args(psprintf("SELECT 1 FROM %s WHERE name OPERATOR(pg_catalog.=) $1",
											defs),
								   1, types, values, NULL, false, 0) == SPI_OK_SELECT &&
			 SPI_processed == 1)
		found = ES_LOCKED;
	else
		found = ES_MISSING;
	SPI_finish();
	es_restore_user(&saved_user);
	return found;
}

/*
 * es_projection_check_owner
 *		Only members of a projection's owner role may drop, rebuild or skip it.
 */
void
es_projection_check_owner(const char *name, Oid owner)
{
	if (!has_privs_of_role(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be a member of role \"%s\" to change projection \"%s\"",
						GetUserNameFromId(owner, true) ? GetUserNameFromId(owner, true) : "?",
						name),
				 errdetail("Projection \"%s\" belongs to the role that defined it.", name)));
}

/*
 * es_projection_read_owned
 *		Read and lock (FOR UPDATE) a definition the caller may change: 42704
 *		when it does not exist, 42501 unless the caller is a member of its
 *		owner.  The owner is checked before the row is locked (a non-owner
 *		never waits for a run in progress), and again after.
 */
void
es_projection_read_owned(const char *name, EsProjection *p)
{
	if (es_projection_read(name, ES_LOCK_NONE, p) != ES_FOUND)
		es_projection_not_found(name);
	es_projection_check_owner(name, p->owner);
	if (es_projection_read(name, ES_LOCK_WAIT, p) != ES_FOUND)
		es_projection_not_found(name);
	es_projection_check_owner(name, p->owner);
}

/*
 * es_projection_not_found
 *		The 42704 error for an unknown projection name.
 */
void
es_projection_not_found(const char *name)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("projection \"%s\" does not exist", name),
			 errhint("The es_projections view lists the defined projections.")));
}

/*
 * projection_name
 *		The name argument as a C string, checked.
 */
char *
es_projection_name_arg(FunctionCallInfo fcinfo, int argno)
{
	text	   *name;

	es_check_not_null(fcinfo, argno, "name");
	name = PG_GETARG_TEXT_PP(argno);
	es_check_name("projection name", VARSIZE_ANY_EXHDR(name));
	return text_to_cstring(name);
}

PG_FUNCTION_INFO_V1(es_define_projection);

/*
 * es_define_projection(name text, handler regprocedure,
 *						event_types text[] DEFAULT NULL,
 *						mode text DEFAULT 'inline',
 *						reset regprocedure DEFAULT NULL) RETURNS void
 *
 * Checks the handler's signature, (es_events) RETURNS void, and reset's,
 * () RETURNS void, and the caller's EXECUTE privilege on them; the caller
 * becomes the projection's owner.  An inline projection applies to events
 * appended from now on (es_projection_rebuild applies the history); an
 * async one starts from the beginning of the log.
 */
Datum
es_define_projection(PG_FUNCTION_ARGS)
{
	const EsCatalog *cat;
	char	   *name;
	Oid			handler;
	Oid			handler_args[1];
	char	   *mode;
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	Oid			types[7] = {TEXTOID, REGPROCEDUREOID, TEXTARRAYOID, TEXTOID, REGPROCEDUREOID, REGROLEOID,
	TEXTOID};

	name = es_projection_name_arg(fcinfo, 0);
	es_check_not_null(fcinfo, 1, "handler");
	es_check_not_null(fcinfo, 3, "mode");
	mode = text_to_cstring(PG_GETARG_TEXT_PP(3));
	if (strcmp(mode, "inline") != 0 && strcmp(mode, "async") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid projection mode \"%s\"", mode),
				 errhint("The mode is 'inline' (in the appending transaction) or 'async' (from a checkpoint).")));
	if (!PG_ARGISNULL(2))
	{
		int			n;

		(void) es_check_type_array(PG_GETARG_ARRAYTYPE_P(2),
								   "Pass NULL for a projection of every event type.", &n);
	}
	PreventCommandIfReadOnly("es_define_projection()");

	cat = es_projections_available();
	handler = PG_GETARG_OID(1);
	handler_args[0] = get_rel_type_id(cat->events);
	es_check_callback(handler, "handler", 1, handler_args, VOIDOID);
	if (!PG_ARGISNULL(4))
		es_check_callback(PG_GETARG_OID(4), "reset", 0, NULL, VOIDOID);

	values[0] = CStringGetTextDatum(name);
	values[1] = ObjectIdGetDatum(handler);
	values[2] = PG_GETARG_DATUM(2);
	if (PG_ARGISNULL(2))
		nulls[2] = 'n';
	values[3] = CStringGetTextDatum(mode);
	values[4] = PG_GETARG_DATUM(4);
	if (PG_ARGISNULL(4))
		nulls[4] = 'n';
	values[5] = ObjectIdGetDatum(GetUserId());
	values[6] = CStringGetTextDatum(es_capture_search_path());

	/* before 1.2 there is no search_path column: the update fills it in */
	if (es_execute_as_owner(psprintf("INSERT INTO %s (name, handler, event_types, mode, reset, owner%s) "
									   "VALUES ($1, $2, $3, $4, $5, $6%s) ON CONFLICT (name) DO NOTHING",
									   es_qualified_name("es_projection_defs"),
									   cat->owners ? ", search_path" : "",
									   cat->owners ? ", $7" : ""),
							  cat->owners ? 7 : 6, types, values, nulls, SPI_OK_INSERT) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("projection \"%s\" already exists", name),
				 errhint("Drop it first with es_drop_projection(%s).", quote_literal_cstr(name))));

	/* every backend (this one at the next command) reloads its definitions */
	CacheInvalidateRelcacheByRelid(cat->projections);
	/* wake the background worker at commit: a new async projection has work */
	es_note_projection_change();
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(es_drop_projection);

/*
 * es_drop_projection(name text) RETURNS void
 *
 * Removes the definition (waiting for a run in progress) and its dead
 * letters.  The read model's tables are the user's and stay as they are.
 */
Datum
es_drop_projection(PG_FUNCTION_ARGS)
{
	const EsCatalog *cat;
	char	   *name;
	EsProjection p;
	Datum		values[1];
	Oid			types[1] = {TEXTOID};

	name = es_projection_name_arg(fcinfo, 0);
	PreventCommandIfReadOnly("es_drop_projection()");
	cat = es_projections_available();
	es_projection_read_owned(name, &p);

	values[0] = CStringGetTextDatum(name);
	(void) es_execute_as_owner(psprintf("DELETE FROM %s WHERE projection OPERATOR(pg_catalog.=) $1",
										  es_qualified_name("es_dead_letters")),
								 1, types, values, NULL, SPI_OK_DELETE);
	(void) es_execute_as_owner(psprintf("DELETE FROM %s WHERE name OPERATOR(pg_catalog.=) $1",
										  es_qualified_name("es_projection_defs")),
								 1, types, values, NULL, SPI_OK_DELETE);

	CacheInvalidateRelcacheByRelid(cat->projections);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(es_projection_head);

/*
 * _es_projection_head() RETURNS bigint
 *
 * The safe end of the global log, for the es_projections view; NULL on a
 * hot standby, where the high-water mark cannot be computed.
 */
Datum
es_projection_head(PG_FUNCTION_ARGS)
{
	if (RecoveryInProgress())
		PG_RETURN_NULL();
	PG_RETURN_INT64(es_high_water_mark(es_catalog(), 0));
}
