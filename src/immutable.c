/*-------------------------------------------------------------------------
 *
 * immutable.c
 *	  Stored events never change.
 *
 * A statement-level BEFORE UPDATE OR DELETE OR TRUNCATE trigger on
 * es_events, enabled ALWAYS (so session_replication_role = replica does not
 * silence it), refuses every such statement, whoever runs it, even one that
 * would touch no row.  Roles without the table privilege get 42501 from the
 * privilege check before the trigger runs.  The erasure audit (es_erasures)
 * is append-only by the same trigger.
 *
 * The extension's own maintenance (lifecycle.c, retention.c) deletes and
 * updates rows in place, without a statement, so this trigger never sees
 * it; nothing a session can set lets a statement through.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/rel.h"

#include "event_sourcing.h"

PG_FUNCTION_INFO_V1(es_refuse_change);

/*
 * es_refuse_change() RETURNS trigger
 *		Raise 55000 for any UPDATE, DELETE or TRUNCATE of the event store.
 */
Datum
es_refuse_change(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	const char *op;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("es_refuse_change() must be called as a trigger")));

	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		op = "UPDATE";
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		op = "DELETE";
	else
		op = "TRUNCATE";

	if (strcmp(RelationGetRelationName(trigdata->tg_relation), "es_erasures") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the erasure audit is append-only: %s of \"%s\" is not allowed",
						op, RelationGetRelationName(trigdata->tg_relation)),
				 errdetail("Every deletion, truncation, redaction and retention pass stays on record.")));
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("events are immutable: %s of \"%s\" is not allowed",
					op, RelationGetRelationName(trigdata->tg_relation)),
			 errdetail("Stored events are never changed or removed."),
			 errhint("Record a correction as a new event with es_append.")));
	PG_RETURN_NULL();
}
