/*-------------------------------------------------------------------------
 *
 * batch.c
 *	  Parsing the batch form of es_append: a JSON array of events.
 *
 * Every element is checked before anything is appended, and a malformed
 * batch is 22023 with a DETAIL naming the element, so a client can find the
 * offending event in a batch of hundreds.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

#include "event_sourcing.h"

/*
 * es_empty_object
 *		The jsonb value {}.
 */
Jsonb *
es_empty_object(void)
{
	JsonbValue	v;

	v.type = jbvObject;
	v.val.object.nPairs = 0;
	v.val.object.pairs = NULL;
	return JsonbValueToJsonb(&v);
}

/*
 * batch_error
 *		Report a malformed batch: 22023 with the event's 1-based number.
 */
static void
batch_error(int i, const char *msg, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("malformed event batch: %s", msg),
			 errdetail("The problem is in event %d of the batch.", i + 1),
			 hint ? errhint("%s", hint) : 0));
}

/*
 * hex_value
 *		Value of one hexadecimal digit, -1 if c is not one.
 */
static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * parse_uuid
 *		Parse a UUID given as a JSON string: 32 hex digits, optionally with
 *		the standard hyphens and braces.  Returns false when malformed
 *		(uuid_in would raise 22P02; a malformed batch is 22023).
 */
static bool
parse_uuid(const char *s, int len, pg_uuid_t *uuid)
{
	int			pos = 0;
	int			digits = 0;
	bool		braces = (len > 0 && s[0] == '{');

	if (braces)
	{
		if (s[len - 1] != '}')
			return false;
		pos = 1;
		len--;
	}
	while (pos < len && digits < 32)
	{
		int			hi,
					lo;

		if (s[pos] == '-' && digits > 0 && digits % 4 == 0 && pos + 1 < len && s[pos + 1] != '-')
		{
			pos++;
			continue;
		}
		if (pos + 1 >= len)
			return false;
		hi = hex_value(s[pos]);
		lo = hex_value(s[pos + 1]);
		if (hi < 0 || lo < 0)
			return false;
		uuid->data[digits / 2] = (unsigned char) (hi << 4 | lo);
		digits += 2;
		pos += 2;
	}
	return digits == 32 && pos == len;
}

/*
 * is_object_value
 *		A JSON value taken from a container: is it an object?
 */
static bool
is_object_value(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

/*
 * parse_event
 *		One element of a batch: {"type", "data", "metadata"?, "id"?}.
 *
 * JSON null for metadata or id means absent, as SQL NULL does for the
 * single-event form.
 */
static void
parse_event(JsonbValue *elem, int i, EsEventInput *ev)
{
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	k;
	JsonbValue	v;
	bool		have_type = false;
	bool		have_data = false;

	if (!is_object_value(elem))
		batch_error(i, "an event must be a JSON object",
					"Each element is an object such as {\"type\": \"Deposited\", \"data\": {\"amount\": 10}}.");

	ev->metadata = NULL;
	ev->id_given = false;

	it = JsonbIteratorInit(elem->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *key;

		if (tok != WJB_KEY)
			continue;
		key = pnstrdup(k.val.string.val, k.val.string.len);
		tok = JsonbIteratorNext(&it, &v, true);
		Assert(tok == WJB_VALUE);

		if (strcmp(key, "type") == 0)
		{
			if (v.type != jbvString)
				batch_error(i, "\"type\" must be a string", NULL);
			es_check_name("event_type", v.val.string.len);
			ev->type = cstring_to_text_with_len(v.val.string.val, v.val.string.len);
			have_type = true;
		}
		else if (strcmp(key, "data") == 0)
		{
			if (!is_object_value(&v))
				batch_error(i, "\"data\" must be a JSON object", NULL);
			ev->data = JsonbValueToJsonb(&v);
			have_data = true;
		}
		else if (strcmp(key, "metadata") == 0)
		{
			if (v.type == jbvNull)
				continue;
			if (!is_object_value(&v))
				batch_error(i, "\"metadata\" must be a JSON object", NULL);
			ev->metadata = JsonbValueToJsonb(&v);
		}
		else if (strcmp(key, "id") == 0)
		{
			if (v.type == jbvNull)
				continue;
			if (v.type != jbvString ||
				!parse_uuid(v.val.string.val, v.val.string.len, &ev->id))
				batch_error(i, "\"id\" must be a UUID string", NULL);
			ev->id_given = true;
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("malformed event batch: unknown key \"%s\"", key),
					 errdetail("The problem is in event %d of the batch.", i + 1),
					 errhint("The keys of an event are \"type\", \"data\", \"metadata\" and \"id\".")));
	}

	if (!have_type)
		batch_error(i, "\"type\" is missing", NULL);
	if (!have_data)
		batch_error(i, "\"data\" is missing",
					"Give \"data\": {} for an event without data.");
	if (ev->metadata == NULL)
		ev->metadata = es_empty_object();
}

/*
 * uuid_cmp_qsort
 *		qsort comparator for pg_uuid_t.
 */
static int
uuid_cmp_qsort(const void *a, const void *b)
{
	return memcmp(a, b, UUID_LEN);
}

/*
 * check_duplicate_ids
 *		The same id twice in one batch is a malformed batch.
 */
static void
check_duplicate_ids(EsEventInput *ev, int n)
{
	pg_uuid_t  *ids = palloc(sizeof(pg_uuid_t) * n);
	int			m = 0;

	for (int i = 0; i < n; i++)
		if (ev[i].id_given)
			ids[m++] = ev[i].id;
	if (m < 2)
		return;
	qsort(ids, m, sizeof(pg_uuid_t), uuid_cmp_qsort);
	for (int i = 1; i < m; i++)
		if (memcmp(&ids[i - 1], &ids[i], UUID_LEN) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("malformed event batch: event id %s appears more than once",
							DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&ids[i])))),
					 errhint("Every event of a batch needs its own id.")));
}

/*
 * es_parse_batch
 *		Validate the batch form of es_append, a non-empty JSON array of
 *		{"type", "data", "metadata"?, "id"?}, into *n events.
 */
EsEventInput *
es_parse_batch(Jsonb *events, int *n)
{
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	v;
	EsEventInput *ev;
	int			i = 0;

	if (!JB_ROOT_IS_ARRAY(events) || JB_ROOT_IS_SCALAR(events))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("events must be a JSON array"),
				 errdetail("The value given is a JSON %s.", es_jsonb_kind(events)),
				 errhint("Pass [{\"type\": ..., \"data\": {...}}, ...], or use the single-event form of es_append.")));
	*n = JB_ROOT_COUNT(events);
	if (*n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("events must not be an empty array"),
				 errhint("An append stores at least one event.")));

	ev = palloc(sizeof(EsEventInput) * *n);
	it = JsonbIteratorInit(&events->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok != WJB_ELEM)
			continue;
		parse_event(&v, i, &ev[i]);
		i++;
	}
	Assert(i == *n);
	check_duplicate_ids(ev, *n);
	return ev;
}
