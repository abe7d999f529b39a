/*-------------------------------------------------------------------------
 *
 * audit.c
 *	  Audit metadata from session settings, and notifications on commit.
 *
 * event_sourcing.correlation_id, event_sourcing.causation_id and
 * event_sourcing.actor, when set (typically with SET LOCAL at the start of a
 * request's transaction), are added to the metadata of every event appended
 * while they are set, under the keys correlation_id, causation_id and
 * actor, unless the event's own metadata has the key.  When none is set an
 * append pays three string tests.
 *
 * event_sourcing.notify_channel, when set, makes every append NOTIFY that
 * channel with the stream's category as payload.  PostgreSQL folds identical
 * notifications of one transaction into one and delivers them at commit, so
 * a committed transaction sends one notification per category it appended
 * to, and a rolled-back one sends none.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/async.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"

#include "event_sourcing.h"

char	   *es_correlation_id = NULL;
char	   *es_causation_id = NULL;
char	   *es_actor = NULL;
char	   *es_notify_channel = NULL;

/*
 * push_pair
 *		Add "key": "value" to an object under construction.
 */
static void
push_pair(JsonbParseState **state, const char *key, const char *value)
{
	JsonbValue	k;
	JsonbValue	v;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v.type = jbvString;
	v.val.string.val = (char *) value;
	v.val.string.len = strlen(value);
	pushJsonbValue(state, WJB_KEY, &k);
	pushJsonbValue(state, WJB_VALUE, &v);
}

/*
 * es_audit_metadata
 *		The audit keys set in this session as a JSON object, or NULL when
 *		none is set.
 */
Jsonb *
es_audit_metadata(void)
{
	JsonbParseState *state = NULL;
	JsonbValue *result;

	if ((es_correlation_id == NULL || *es_correlation_id == '\0') &&
		(es_causation_id == NULL || *es_causation_id == '\0') &&
		(es_actor == NULL || *es_actor == '\0'))
		return NULL;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	if (es_correlation_id && *es_correlation_id)
		push_pair(&state, "correlation_id", es_correlation_id);
	if (es_causation_id && *es_causation_id)
		push_pair(&state, "causation_id", es_causation_id);
	if (es_actor && *es_actor)
		push_pair(&state, "actor", es_actor);
	result = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(result);
}

/*
 * es_merge_metadata
 *		The event's metadata with the audit keys it does not have itself.
 */
Jsonb *
es_merge_metadata(Jsonb *audit, Jsonb *metadata)
{
	if (JB_ROOT_COUNT(metadata) == 0)
		return audit;
	/* jsonb || jsonb: keys of the right operand win */
	return DatumGetJsonbP(DirectFunctionCall2(jsonb_concat,
											  JsonbPGetDatum(audit),
											  JsonbPGetDatum(metadata)));
}

/*
 * es_notify_append
 *		Queue the notification for an append to a stream (delivered at
 *		commit, once per channel and category).
 */
void
es_notify_append(text *stream_id)
{
	char	   *category;

	if (es_notify_channel == NULL || *es_notify_channel == '\0')
		return;
	category = pnstrdup(VARDATA_ANY(stream_id), es_category_len(stream_id));
	Async_Notify(es_notify_channel, category);
	pfree(category);
}

/*
 * check_notify_channel
 *		GUC check hook: a channel is an identifier, shorter than NAMEDATALEN.
 */
static bool
check_notify_channel(char **newval, void **extra, GucSource source)
{
	if (*newval != NULL && strlen(*newval) >= NAMEDATALEN)
	{
		GUC_check_errdetail("A channel name must be shorter than %d bytes.", NAMEDATALEN);
		return false;
	}
	return true;
}

/*
 * es_audit_init
 *		Define the settings; called from _PG_init.
 */
void
es_audit_init(void)
{
	DefineCustomStringVariable("event_sourcing.correlation_id",
							   "Added to the metadata of appended events as \"correlation_id\".",
							   "Set it with SET LOCAL at the start of a request's transaction. "
							   "An event whose own metadata has the key keeps its value.",
							   &es_correlation_id, "", PGC_USERSET, 0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("event_sourcing.causation_id",
							   "Added to the metadata of appended events as \"causation_id\".",
							   "Typically the id of the message or event that caused this one.",
							   &es_causation_id, "", PGC_USERSET, 0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("event_sourcing.actor",
							   "Added to the metadata of appended events as \"actor\".",
							   "Typically the application user on whose behalf the events are appended.",
							   &es_actor, "", PGC_USERSET, 0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("event_sourcing.notify_channel",
							   "NOTIFY this channel with the category when a transaction that appended commits.",
							   "One notification per category per transaction. Empty: no notifications.",
							   &es_notify_channel, "", PGC_USERSET, 0,
							   check_notify_channel, NULL, NULL);
}
